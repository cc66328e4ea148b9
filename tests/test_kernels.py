"""The fused CUDA nearest-code kernel agrees with the torch reference (GPU only)."""

import pytest
import torch

from codebind_hf.quantization.kernels import fused_nearest_code, fused_nearest_code_available

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_fused_kernel_picks_a_maximal_code():
    torch.manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(100_003, 8, device="cuda"), dim=-1)
    codes = torch.nn.functional.normalize(torch.randn(1000, 8, device="cuda"), dim=-1)  # K not a tile multiple
    assert fused_nearest_code_available(rows, codes)
    got = fused_nearest_code(rows, codes)
    exact = rows.double() @ codes.double().t()
    best = exact.max(-1).values
    chosen = exact.gather(1, got[:, None]).squeeze(1)
    assert (best - chosen).abs().max() < 1e-6  # fp32 rounding only, never a TF32-sized error
    assert (got == exact.argmax(-1)).float().mean() > 0.999


def test_fused_kernel_gathers_the_chosen_codevectors():
    torch.manual_seed(1)
    rows = torch.nn.functional.normalize(torch.randn(5000, 8, device="cuda"), dim=-1)
    codes = torch.nn.functional.normalize(torch.randn(300, 8, device="cuda"), dim=-1)
    indices, vectors = fused_nearest_code(rows, codes, return_vectors=True)
    assert torch.equal(vectors, codes[indices])
    assert torch.equal(indices, fused_nearest_code(rows, codes))
