"""Coarse quantizer and search kernels behind [`~codebind_hf.index.ivf.CodeBindIVFIndex`].

- ``spherical_kmeans``: the coarse centroids, k-means by cosine over decoded (unit) shared embeddings, fed in
  chunks so a large training sample never exists as floats all at once.
- ``ivf_torch_search``: the inverted-list search in torch. Queries probe their ``nprobe`` nearest centroids; the
  work is then done list by list: a list's codes are decoded once and scored by a matmul against all the
  queries probing it, and each (query, probe) pair keeps its top ``k``; a last top-``k`` merges a query's probes.
- ``FaissIVFBackend``: a faiss ``IndexIVFPQ`` with ``by_residual = False`` (codes encode the vectors themselves,
  not residuals to the centroid), the same centroids in its ``IndexFlatIP`` coarse quantizer and the shared
  codebook in all ``m`` PQ sub-quantizers; items enter through ``add_sa_codes`` as their list number followed by
  our packed codes, so nothing is trained or re-encoded by faiss.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..quantization.quantizer import nearest_codes
from .backends import _merge_topk, _unpack

# Rows decoded to floats at a time by search (4096 x 1024 floats = 16 MiB).
_DECODE_CHUNK = 4096
# ... and by k-means and list assignment: a build's transients sit beside all its codes, so they are kept small
# (decoded rows, their normalised copy and their centroid scores: 3 x 4 MiB at 1024 x 1024); with more lists
# fewer rows a chunk, so the scores stay at 4 MiB.
_ASSIGN_CHUNK = 1024
_ASSIGN_SCORES = 1 << 20


def _assign_rows(num_lists: int) -> int:
    return max(64, min(_ASSIGN_CHUNK, _ASSIGN_SCORES // num_lists))


def assign_lists(decode: Callable[[int, int], torch.Tensor], count: int, centroids: torch.Tensor) -> torch.Tensor:
    """List (nearest centroid by inner product, first on ties) of rows ``0 .. count-1``; ``decode(start, stop)``
    gives their unit vectors `(stop - start, d)`."""
    lists, step = torch.empty(count, dtype=torch.long), _assign_rows(centroids.shape[0])
    for start in range(0, count, step):
        stop = min(start + step, count)
        lists[start:stop] = nearest_codes(decode(start, stop), centroids)
    return lists


def spherical_kmeans(
    decode: Callable[[int, int], torch.Tensor], count: int, num_lists: int, iters: int = 10, seed: int = 0
) -> torch.Tensor:
    """Unit centroids `(num_lists, d)`: spherical k-means over ``count`` unit vectors given by ``decode(start, stop)``.

    Seeded with ``num_lists`` distinct rows drawn by a ``seed``-ed generator; each iteration assigns every row to
    its nearest centroid and moves the centroid to the normalised mean; a centroid left without rows keeps its
    place. Deterministic for a given sample and seed.
    """
    if count < num_lists:
        raise ValueError(f"training the coarse quantizer needs at least num_lists={num_lists} items, got {count}")
    picks = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:num_lists].sort().values
    centroids = torch.cat([decode(i, i + 1) for i in picks.tolist()])
    step = _assign_rows(num_lists)
    for _ in range(iters):
        sums = torch.zeros_like(centroids)
        counts = torch.zeros(num_lists, dtype=torch.long)
        for start in range(0, count, step):
            stop = min(start + step, count)
            vectors = decode(start, stop)
            lists = nearest_codes(vectors, centroids)
            sums.index_add_(0, lists, vectors)
            counts += torch.bincount(lists, minlength=num_lists)
        centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), centroids)
    return centroids.contiguous()


def probe_lists(queries: torch.Tensor, centroids: torch.Tensor, nprobe: int) -> torch.Tensor:
    """The ``nprobe`` lists of each query `(Q, nprobe)`: its nearest centroids by inner product."""
    return (queries @ centroids.t()).topk(nprobe, dim=1).indices


def ivf_torch_search(
    queries: torch.Tensor,
    probes: torch.Tensor,
    packed: torch.Tensor,
    offsets: torch.Tensor,
    codebook: torch.Tensor,
    bits: int,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``Σ_h <queries_h, codebook[code_h]>`` over the items of each query's probed lists.

    Work goes list by list: a list's items are decoded once (``codebook[code_h]`` concatenated, not normalised) and
    scored by one matmul against all the queries probing it. A probe touches a few hundred items, too few for
    lookup tables (``m * K`` entries per query and probe) to pay off, and dense matmuls beat table gathers per
    score; the sums are the tables' up to float rounding.

    Args:
        queries (`torch.FloatTensor` of shape `(Q, m * d*)`)
        probes (`torch.LongTensor` of shape `(Q, P)`): the lists each query scans (see :func:`probe_lists`).
        packed (`torch.ByteTensor` of shape `(N, B)`): bit-packed codes grouped by list: list ``l`` holds rows
            ``offsets[l] .. offsets[l + 1] - 1``.
        offsets (`torch.LongTensor` of shape `(L + 1,)`)
        codebook (`torch.FloatTensor` of shape `(K, d*)`)
        bits (`int`): bits per code.
        k (`int`): hits per query.

    Returns:
        `(scores, rows)`: `(Q, k)` float32 sums, best first, and rows of ``packed``; ``-inf`` and ``-1`` pad the
        hits of a query whose probed lists hold fewer than ``k`` items.
    """
    num_queries, num_probes = probes.shape
    dim = queries.shape[1]
    m = dim // codebook.shape[1]
    best_scores = torch.full((num_queries * num_probes, k), float("-inf"))
    best_rows = torch.full((num_queries * num_probes, k), -1, dtype=torch.long)
    pair_lists = probes.reshape(-1)  # pair p = (query p // P, its probe p % P)
    order = pair_lists.argsort(stable=True)
    lists, counts = torch.unique_consecutive(pair_lists[order], return_counts=True)
    bounds = torch.stack([offsets[lists], offsets[lists + 1]], 1).tolist()
    for pairs, (start, stop) in zip(order.split(counts.tolist()), bounds):
        if stop == start:
            continue
        probing = queries[pairs // num_probes]
        best = None
        for i_start in range(start, stop, _DECODE_CHUNK):
            i_stop = min(i_start + _DECODE_CHUNK, stop)
            codes = _unpack(packed[i_start:i_stop], m, bits).reshape(-1).int()  # int32: index_select ~2x faster
            vectors = codebook.index_select(0, codes).view(i_stop - i_start, dim)
            scores = probing @ vectors.t()  # (pairs, items)
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            best = _merge_topk(best, top.values, top.indices + i_start, min(k, i_stop - start))
        width = best[0].shape[1]
        best_scores[pairs, :width] = best[0]
        best_rows[pairs, :width] = best[1]
    merged = best_scores.view(num_queries, num_probes * k).topk(k, dim=1)
    rows = best_rows.view(num_queries, num_probes * k).gather(1, merged.indices)
    return merged.values, rows


class FaissIVFBackend:
    """A faiss ``IndexIVFPQ`` over the index's own lists and packed codes (see the module doc).

    Args:
        codebook (`torch.FloatTensor` of shape `(K, d*)`)
        centroids (`torch.FloatTensor` of shape `(L, d)`): the coarse centroids.
        num_subvectors (`int`): ``m``.
        bits (`int`): bits per code.
    """

    def __init__(self, codebook: torch.Tensor, centroids: torch.Tensor, num_subvectors: int, bits: int):
        import faiss

        size, sub_dim = codebook.shape
        num_lists, dim = centroids.shape
        self.coarse = faiss.IndexFlatIP(dim)
        self.coarse.add(np.ascontiguousarray(centroids.numpy()))
        self.index = faiss.IndexIVFPQ(self.coarse, dim, num_lists, num_subvectors, bits, faiss.METRIC_INNER_PRODUCT)
        self.index.by_residual = False  # our codes encode the vectors, not residuals to their centroid
        table = np.zeros((num_subvectors, 1 << bits, sub_dim), dtype=np.float32)
        table[:, :size] = codebook.numpy()
        faiss.copy_array_to_vector(table.ravel(), self.index.pq.centroids)
        self.index.is_trained = True  # centroids and codebook are the training result; faiss must not re-train
        self.list_bytes = self.index.coarse_code_size()

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, packed: torch.Tensor, lists: torch.Tensor, rows: torch.Tensor) -> None:
        """Add items by packed codes `(N, B)`, list numbers `(N,)` and the row numbers faiss returns for them."""
        if not packed.shape[0]:
            return
        # faiss' standalone code: the list number, little endian in `list_bytes` bytes, then the PQ code.
        listno = lists.numpy().astype("<u8").view(np.uint8).reshape(-1, 8)[:, : self.list_bytes]
        codes = np.ascontiguousarray(np.concatenate([listno, packed.numpy()], axis=1))
        self.index.add_sa_codes(codes, np.ascontiguousarray(rows.numpy().astype(np.int64)))

    def search(self, queries: torch.Tensor, k: int, nprobe: int) -> tuple[torch.Tensor, torch.Tensor]:
        import faiss

        params = faiss.SearchParametersIVF(nprobe=nprobe)
        scores, rows = self.index.search(np.ascontiguousarray(queries.numpy()), k, params=params)
        return torch.from_numpy(scores), torch.from_numpy(rows).long()


__all__ = ["FaissIVFBackend", "assign_lists", "ivf_torch_search", "probe_lists", "spherical_kmeans"]
