"""Fused nearest-codevector search for CUDA (Triton), used by `CompositionalQuantizer` when available.

With ``d* = 8`` the score matrix ``rows @ codebook.T`` has an inner dimension of 8, so a matmul spends its
time writing ``(rows, K)`` scores to memory and the argmax reading them back. This kernel keeps a block of
rows and one tile of the codebook in registers and carries a running max, so only the indices are written.
Falls back to the chunked torch path (CPU, no Triton, other dtypes) — the torch path is the reference.
"""

from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of torch only.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU wheels
    triton = None


if triton is not None:

    @triton.jit
    def _nearest_code_kernel(
        rows_ptr,
        codes_ptr,
        out_ptr,
        vectors_ptr,
        num_rows,
        K: tl.constexpr,
        D: tl.constexpr,
        D_PAD: tl.constexpr,
        BLOCK_R: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr,
        WRITE_VECTORS: tl.constexpr,
    ):
        pid = tl.program_id(0)
        offs_r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
        offs_d = tl.arange(0, D_PAD)
        mask_r = offs_r < num_rows
        mask_d = offs_d < D
        # Rows are zero-padded to D_PAD >= 16, the smallest inner size tl.dot takes.
        x = tl.load(rows_ptr + offs_r[:, None] * D + offs_d[None, :], mask=mask_r[:, None] & mask_d[None, :], other=0.0)
        best = tl.full((BLOCK_R,), float("-inf"), tl.float32)
        best_idx = tl.zeros((BLOCK_R,), tl.int64)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < K
            c = tl.load(codes_ptr + offs_k[None, :] * D + offs_d[:, None], mask=mask_k[None, :] & mask_d[:, None], other=0.0)
            # "ieee"/"tf32x3" keep fp32 accuracy: plain TF32 changes about 0.2% of assignments.
            scores = tl.dot(x, c, input_precision=PRECISION)
            scores = tl.where(mask_k[None, :], scores, float("-inf"))
            tile_best = tl.max(scores, axis=1)
            tile_idx = tl.argmax(scores, axis=1).to(tl.int64) + k0
            better = tile_best > best  # strict: the first maximum wins, as in a left-to-right scan
            best = tl.where(better, tile_best, best)
            best_idx = tl.where(better, tile_idx, best_idx)
        tl.store(out_ptr + offs_r, best_idx, mask=mask_r)
        if WRITE_VECTORS:
            # Fused gather of the chosen codevectors: torch's gather is slow for 8-wide rows.
            mask_rd = mask_r[:, None] & mask_d[None, :]
            chosen = tl.load(codes_ptr + best_idx[:, None] * D + offs_d[None, :], mask=mask_rd, other=0.0)
            tl.store(vectors_ptr + offs_r[:, None] * D + offs_d[None, :], chosen, mask=mask_rd)


def fused_nearest_code_available(rows: torch.Tensor, centers: torch.Tensor) -> bool:
    dim = rows.shape[-1]
    return (
        triton is not None
        and rows.is_cuda
        and rows.dtype == torch.float32
        and centers.dtype == torch.float32
        and dim >= 2
        and dim & (dim - 1) == 0
        and dim <= 64
    )


def fused_nearest_code(
    rows: torch.Tensor,
    centers: torch.Tensor,
    block_rows: int = 128,
    block_codes: int = 128,
    precision: str = "tf32x3",
    return_vectors: bool = False,
):
    """Index of the max-dot-product row of ``centers`` `(K, D)` for each row of ``rows`` `(R, D)` (CUDA, fp32).

    With ``return_vectors`` also returns the chosen centres `(R, D)`, gathered inside the kernel.
    """
    rows = rows.contiguous()
    centers = centers.contiguous()
    out = torch.empty(rows.shape[0], dtype=torch.long, device=rows.device)
    vectors = torch.empty_like(rows) if return_vectors else out
    grid = (triton.cdiv(rows.shape[0], block_rows),)
    _nearest_code_kernel[grid](
        rows,
        centers,
        out,
        vectors,
        rows.shape[0],
        K=centers.shape[0],
        D=rows.shape[1],
        D_PAD=max(16, rows.shape[1]),
        BLOCK_R=block_rows,
        BLOCK_K=block_codes,
        PRECISION=precision,
        WRITE_VECTORS=return_vectors,
    )
    return (out, vectors) if return_vectors else out


__all__ = ["fused_nearest_code", "fused_nearest_code_available"]
