"""The CPU nearest-code kernel returns exactly the torch path's indices (ties, near ties, NaN included)."""

import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CompositionalQuantizer
from codebind_hf.quantization import cpu_kernel
from codebind_hf.quantization import quantizer as quantizer_module
from codebind_hf.quantization.quantizer import _nearest_codes_torch

pytestmark = pytest.mark.skipif(cpu_kernel._load() is None, reason="the CPU kernel needs a C++ compiler and ninja")


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


class _Settle:
    """The reference search, counting the rows it is asked to settle."""

    def __init__(self):
        self.rows = 0

    def __call__(self, rows, centers):
        self.rows += rows.shape[0]
        return _nearest_codes_torch(rows, centers)


@pytest.mark.parametrize(("dim", "size"), [(8, 1024), (8, 1000), (4, 37), (12, 300), (16, 1)])
def test_kernel_equals_torch_path(dim, size):
    # K not a multiple of the 16-code tile exercises the padded lanes; d != 8 the generic loop.
    rows, centers = _unit(20_003, dim, 0), _unit(size, dim, 1)
    settle = _Settle()
    got = cpu_kernel.cpu_nearest_code(rows, centers, settle)
    assert torch.equal(got, _nearest_codes_torch(rows, centers))
    assert settle.rows < 20  # near ties are rare (~1e-4 of random rows): the kernel decides almost every row


def test_ties_and_non_finite_rows_go_to_the_torch_path():
    centers = _unit(64, 8, 2)
    centers[40] = centers[3]  # an exact tie: the torch path keeps the first code (3)
    rows = torch.cat([centers[3:4].repeat(5, 1), torch.zeros(2, 8), _unit(500, 8, 3)])
    rows[1, 0] = float("nan")
    settle = _Settle()
    got = cpu_kernel.cpu_nearest_code(rows, centers, settle)
    expected = _nearest_codes_torch(rows, centers)
    assert torch.equal(got, expected)
    assert got[[0, 2, 3, 4]].tolist() == [3, 3, 3, 3] and got[5:7].tolist() == [0, 0]
    assert settle.rows >= 7  # 4 tied rows, the NaN row and the 2 zero rows (all scores equal)


def test_threads_split_rows_without_changing_results(monkeypatch):
    monkeypatch.setattr(cpu_kernel, "_ROWS_PER_TASK", 1000)
    rows, centers = _unit(7_777, 8, 4), _unit(256, 8, 5)
    one = cpu_kernel.cpu_nearest_code(rows, centers, _nearest_codes_torch, num_threads=1)
    three = cpu_kernel.cpu_nearest_code(rows, centers, _nearest_codes_torch, num_threads=3)
    assert torch.equal(one, three) and torch.equal(one, _nearest_codes_torch(rows, centers))


def test_quantizer_uses_the_kernel_and_keeps_its_indices(monkeypatch):
    quantizer = CompositionalQuantizer(codebook_size=512, codevector_dim=8)
    z = torch.randn(300, 64, generator=torch.Generator().manual_seed(6))
    rows = F.normalize(z.reshape(-1, 8), dim=-1)
    assert cpu_kernel.cpu_nearest_code_available(rows, quantizer.codebook, min_scores=0)
    calls = []
    original = cpu_kernel.cpu_nearest_code
    monkeypatch.setattr(quantizer_module, "cpu_nearest_code", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(quantizer_module, "cpu_nearest_code_available", lambda r, c: True)
    with_kernel = quantizer(z).indices
    assert calls, "the quantizer did not dispatch to the CPU kernel"
    monkeypatch.setenv("CODEBIND_CPU_KERNEL", "0")
    assert not cpu_kernel.cpu_nearest_code_available(rows, quantizer.codebook, min_scores=0)
    assert torch.equal(with_kernel.reshape(-1), _nearest_codes_torch(rows, quantizer.codebook))


def test_availability_checks_device_dtype_and_size():
    rows, centers = _unit(4096, 8, 7), _unit(1024, 8, 8)
    assert cpu_kernel.cpu_nearest_code_available(rows, centers)
    assert not cpu_kernel.cpu_nearest_code_available(rows.double(), centers.double())
    assert not cpu_kernel.cpu_nearest_code_available(rows[:10], centers)  # below MIN_SCORES: torch path
    assert not cpu_kernel.cpu_nearest_code_available(rows[:, :4], centers)
    wide = _unit(4096, 64, 9)  # wide rows: BLAS is efficient there, the torch path stays
    assert not cpu_kernel.cpu_nearest_code_available(wide, _unit(1024, 64, 10))
