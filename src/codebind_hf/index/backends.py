"""Storage and search kernels behind [`~codebind_hf.index.core.CodeBindIndex`].

- Codes are bit-packed: ``bits = ceil(log2 K)`` bits per sub-vector (10 for K = 1024), code ``h`` of an item
  in bits ``[h * bits, (h + 1) * bits)`` of its byte string, least significant bit first. This is also the
  layout of faiss' ``ProductQuantizer`` codes, so the faiss backend receives our bytes unchanged.
- The torch backend scores coded items against float queries with one lookup table per sub-vector
  (``T[h, k] = <q_h, e_k>``), summed over an item's codes by ``F.embedding_bag`` (one bag per item, all the
  queries of a block as the embedding width), chunked over items with a running top-k.
- The faiss backend is an ``IndexPQ`` (inner product) whose ``m`` sub-quantizers all hold the shared codebook,
  filled with ``add_sa_codes`` — nothing is trained and nothing is re-encoded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math

import numpy as np
import torch
import torch.nn.functional as F

# Items scored per step of the torch backend; the (items, queries) score block stays a few MiB.
_ITEM_CHUNK = 16384
# Queries per lookup-table block (the permuted table is (m * K, block) floats), at most 64 and within 32 MiB.
_QUERY_BLOCK = 64
_TABLE_BYTES = 32 << 20
# Blocks whose tables are held at once; each item chunk is unpacked once per group of blocks.
_BLOCKS_PER_GROUP = 4


def faiss_available() -> bool:
    """Whether ``faiss`` (the ``faiss-cpu`` package, extra ``[index]``) can be imported."""
    return importlib.util.find_spec("faiss") is not None


def codebook_fingerprint(codebook: torch.Tensor) -> str:
    """sha256 (hex) of the codebook's bytes as contiguous float32 on CPU: which codebook an index was built with.

    Args:
        codebook (`torch.Tensor` of shape `(K, d*)`): the shared codebook.

    Example:

    ```python
    >>> import torch
    >>> len(codebook_fingerprint(torch.eye(4)))
    64

    ```
    """
    return hashlib.sha256(codebook.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def bits_per_code(codebook_size: int) -> int:
    """Bits that hold one code of a ``codebook_size``-entry codebook: ``ceil(log2 K)`` (at least 1, at most 16)."""
    if not 1 <= codebook_size <= 1 << 16:
        raise ValueError(f"codebook_size must lie in [1, 65536] (codes are at most 16 bits), got {codebook_size}")
    return max(1, math.ceil(math.log2(codebook_size)))


def packed_width(num_subvectors: int, bits: int) -> int:
    """Bytes per item of ``num_subvectors`` packed codes of ``bits`` bits."""
    return (num_subvectors * bits + 7) // 8


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes `(N, m)` into `(N, ceil(m * bits / 8))` uint8, ``bits`` bits each, least significant bit first.

    Example:

    ```python
    >>> import torch
    >>> packed = pack_codes(torch.tensor([[1, 1023, 0, 512]]), bits=10)
    >>> packed.shape, unpack_codes(packed, 4, 10).tolist()
    (torch.Size([1, 5]), [[1, 1023, 0, 512]])

    ```
    """
    if codes.ndim != 2:
        raise ValueError(f"codes must have shape (N, m), got {tuple(codes.shape)}")
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must lie in [1, 16], got {bits}")
    n, m = codes.shape
    values = codes.detach().cpu().numpy().astype(np.uint32)
    if values.size and int(values.max()) >> bits:
        raise ValueError(f"codes must lie in [0, {1 << bits}) to fit {bits} bits; got max {int(values.max())}")
    # Two spare bytes so a code starting in the last byte can spill over; they stay zero and are cut.
    out = np.zeros((n, packed_width(m, bits) + 2), dtype=np.uint32)
    for h in range(m):
        start, shift = divmod(h * bits, 8)
        shifted = values[:, h] << shift  # at most 16 + 7 bits: spans three bytes
        out[:, start] |= shifted & 0xFF
        out[:, start + 1] |= (shifted >> 8) & 0xFF
        out[:, start + 2] |= shifted >> 16
    return torch.from_numpy(out[:, :-2].astype(np.uint8))


def unpack_codes(packed: torch.Tensor, num_subvectors: int, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: `(N, B)` uint8 -> `(N, num_subvectors)` int64."""
    return _unpack(packed, num_subvectors, bits).long()


def _unpack(packed: torch.Tensor, num_subvectors: int, bits: int) -> torch.Tensor:
    """:func:`unpack_codes` in the narrowest integer type that holds the work (int32 or int64)."""
    if packed.dtype != torch.uint8 or packed.ndim != 2:
        raise ValueError(f"packed codes must be a 2-d uint8 tensor, got {packed.dtype} of shape {tuple(packed.shape)}")
    width = packed_width(num_subvectors, bits)
    if packed.shape[1] != width:
        raise ValueError(f"packed codes of {num_subvectors} x {bits} bits need {width} bytes per item, got {packed.shape[1]}")
    n, mask = packed.shape[0], (1 << bits) - 1
    # Codes repeat their byte alignment every lcm(bits, 8) bits: a group of `group_bytes` bytes holds
    # `group_codes` whole codes. Groups of up to 8 bytes (every width but 9, 11, 13, 15) unpack as one integer.
    group_bytes, group_codes = bits // math.gcd(bits, 8), 8 // math.gcd(bits, 8)
    if group_bytes <= 8:
        groups = -(-width // group_bytes)
        grouped = F.pad(packed, (0, groups * group_bytes - width)).view(n, groups, group_bytes)
        dtype = torch.int32 if group_bytes <= 3 else torch.int64
        word = grouped[..., 0].to(dtype)
        for j in range(1, group_bytes):
            word |= grouped[..., j].to(dtype) << (8 * j)
        codes = (word[..., None] >> (torch.arange(group_codes, dtype=dtype) * bits)) & mask
        return codes.reshape(n, groups * group_codes)[:, :num_subvectors]
    # Otherwise gather the (at most three) bytes each code touches.
    padded = F.pad(packed.to(torch.int32), (0, 2))
    offsets = torch.arange(num_subvectors) * bits
    start, shift = offsets // 8, offsets % 8
    word = padded[:, start] | (padded[:, start + 1] << 8) | (padded[:, start + 2] << 16)
    return (word >> shift) & mask


def lookup_tables(queries: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Per-sub-vector inner products `(Q, m, K)`: ``T[q, h, k] = <queries[q, h*d*:(h+1)*d*], codebook[k]>``."""
    num, dim = queries.shape
    return queries.reshape(num, dim // codebook.shape[1], codebook.shape[1]) @ codebook.t()


def _merge_topk(best: tuple | None, scores: torch.Tensor, rows: torch.Tensor, k: int) -> tuple:
    if best is None:
        return scores, rows
    merged = torch.cat([best[0], scores], 1).topk(k, dim=1)
    return merged.values, torch.cat([best[1], rows], 1).gather(1, merged.indices)


def torch_search(
    queries: torch.Tensor, packed: torch.Tensor, codebook: torch.Tensor, bits: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``Σ_h <queries_h, codebook[code_h]>`` over the coded items (asymmetric distance).

    Args:
        queries (`torch.FloatTensor` of shape `(Q, m * d*)`): float queries (normalise them first for cosines).
        packed (`torch.ByteTensor` of shape `(N, B)`): bit-packed codes (see :func:`pack_codes`).
        codebook (`torch.FloatTensor` of shape `(K, d*)`)
        bits (`int`): bits per code.
        k (`int`): hits per query, ``1 <= k <= N``.

    Returns:
        `(scores, rows)`: `(Q, k)` float32 sums, best first, and the item rows (int64).
    """
    size, sub_dim = codebook.shape
    m = queries.shape[1] // sub_dim
    offsets = (torch.arange(m) * size).int()  # code h of an item is row h * K + code of the flattened tables
    block = max(1, min(_QUERY_BLOCK, _TABLE_BYTES // (4 * m * size)))
    group_size = block * _BLOCKS_PER_GROUP
    all_scores, all_rows = [], []
    for group in range(0, queries.shape[0], group_size):
        # Tables of a group of queries, in blocks: each block's (m * K, block) table is one embedding_bag weight.
        weights = []
        for start in range(group, min(group + group_size, queries.shape[0]), block):
            tables = lookup_tables(queries[start : start + block], codebook)  # (block, m, K)
            weights.append(tables.permute(1, 2, 0).reshape(m * size, -1).contiguous())
        best = [None] * len(weights)
        for i_start in range(0, packed.shape[0], _ITEM_CHUNK):
            # Unpacked once per item chunk and query group; bags of int32 row numbers, one bag per item.
            bags = _unpack(packed[i_start : i_start + _ITEM_CHUNK], m, bits).int() + offsets
            for b, weight in enumerate(weights):
                scores = F.embedding_bag(bags, weight, mode="sum").t()  # (block, items)
                top = scores.topk(min(k, scores.shape[1]), dim=1)
                best[b] = _merge_topk(best[b], top.values, top.indices + i_start, k)
        all_scores += [b[0] for b in best]
        all_rows += [b[1] for b in best]
    return torch.cat(all_scores), torch.cat(all_rows)


class FaissPQBackend:
    """A faiss ``IndexPQ`` over the index's own packed codes.

    All ``m`` sub-quantizers hold the shared codebook (rows ``K .. 2**bits - 1`` are zero padding that no code
    refers to); the metric is inner product, so faiss' distances are ``Σ_h <q_h, e_{code_h}>``.

    Args:
        codebook (`torch.FloatTensor` of shape `(K, d*)`)
        num_subvectors (`int`): ``m``.
        bits (`int`): bits per code (``ceil(log2 K)``).
    """

    def __init__(self, codebook: torch.Tensor, num_subvectors: int, bits: int):
        import faiss

        size, sub_dim = codebook.shape
        self.index = faiss.IndexPQ(num_subvectors * sub_dim, num_subvectors, bits, faiss.METRIC_INNER_PRODUCT)
        centroids = np.zeros((num_subvectors, 1 << bits, sub_dim), dtype=np.float32)
        centroids[:, :size] = codebook.detach().cpu().float().numpy()
        faiss.copy_array_to_vector(centroids.ravel(), self.index.pq.centroids)
        self.index.is_trained = True  # the codebook is the training result; faiss must not re-train it

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, packed: torch.Tensor) -> None:
        """Append items by their packed codes `(N, B)` uint8 (the same bytes the index stores)."""
        if packed.shape[0]:
            self.index.add_sa_codes(np.ascontiguousarray(packed.numpy()))

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, rows = self.index.search(np.ascontiguousarray(queries.detach().cpu().float().numpy()), k)
        return torch.from_numpy(scores), torch.from_numpy(rows).long()


__all__ = [
    "FaissPQBackend",
    "bits_per_code",
    "codebook_fingerprint",
    "faiss_available",
    "lookup_tables",
    "pack_codes",
    "packed_width",
    "torch_search",
    "unpack_codes",
]
