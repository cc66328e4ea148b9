"""`CodeBindIndex`: store shared embeddings as compositional codes and search them without floats.

A shared embedding is the normalised concatenation of ``m`` codevectors of one codebook, so an item is
``m`` integers (10 bits each for K = 1024: 160 bytes for a 1024-d embedding instead of 4096). Search is
asymmetric: the float query ``q`` (normalised as a whole) is cut into ``m`` sub-vectors, one lookup table
``T[h, k] = <q_h, e_k>`` per position is built, and an item's score is ``Σ_h T[h, code_h] / sqrt(m)`` —
exactly its cosine with the decoded (normalised) item vector, so the ranking equals brute force over the
decoded vectors. With ``faiss-cpu`` installed, an ``IndexPQ`` whose sub-quantizers all hold the shared
codebook gives the same neighbours (``backend="faiss"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .quantization import nearest_codes

INDEX_CONFIG = "index.json"
CODES_FILE = "codes.safetensors"
CODEBOOK_FILE = "codebook.safetensors"


def codebook_fingerprint(codebook: torch.Tensor) -> str:
    """sha256 of the codebook's float32 bytes: identifies the codebook an index was built with."""
    return hashlib.sha256(codebook.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack `(N, m)` codes of ``bits`` bits each into `(N, ceil(m * bits / 8))` uint8 (little-endian bit order)."""
    n, m = codes.shape
    values = codes.to(torch.int64).cpu().numpy()
    bit_array = ((values[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(n, m * bits)
    return torch.from_numpy(np.packbits(bit_array, axis=1, bitorder="little"))


def unpack_codes(packed: torch.Tensor, m: int, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: `(N, m)` int64."""
    bit_array = np.unpackbits(packed.cpu().numpy(), axis=1, bitorder="little")[:, : m * bits].reshape(-1, m, bits)
    return torch.from_numpy((bit_array.astype(np.int64) << np.arange(bits)).sum(-1))


def _atomic_dir_write(target: Path, write) -> None:
    """Write a folder through ``write(staging_dir)``, then swap it in; the old folder stays until the swap."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


class CodeBindIndex:
    """Items stored as shared-codebook codes; searched by asymmetric distance.

    Args:
        codebook (`torch.Tensor` of shape `(K, d*)`): the shared codebook (unit codevectors).
        embed_dim (`int`): width of the embeddings (a multiple of ``d*``).
        backend (`str`, *optional*, defaults to `"auto"`): ``"torch"``, ``"faiss"`` or ``"auto"`` (faiss when installed
            and K is a power of two).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf import CompositionalQuantizer
    >>> from codebind_hf.index import CodeBindIndex
    >>> quantizer = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    >>> index = CodeBindIndex(quantizer.codebook, embed_dim=32, backend="torch")
    >>> index.add(torch.randn(100, 32), ids=[f"item{i}" for i in range(100)])
    >>> scores, ids = index.search(torch.randn(2, 32), k=5)
    >>> scores.shape, len(ids[0])
    (torch.Size([2, 5]), 5)

    ```
    """

    def __init__(self, codebook: torch.Tensor, embed_dim: int, backend: str = "auto", normalize: bool = True):
        if codebook.ndim != 2:
            raise ValueError(f"codebook must have shape (K, d*), got {tuple(codebook.shape)}")
        codebook = codebook.detach().float().cpu()
        # Stored codebooks are already unit: re-normalising could flip last bits and change the fingerprint.
        self.codebook = F.normalize(codebook, dim=-1) if normalize else codebook.contiguous()
        self.codebook_size, self.codevector_dim = self.codebook.shape
        if embed_dim % self.codevector_dim:
            raise ValueError(f"embed_dim={embed_dim} must be a multiple of the codevector dim {self.codevector_dim}")
        if self.codebook_size > 65536:
            raise ValueError(f"codes are stored as uint16; K={self.codebook_size} > 65536 is not supported")
        self.embed_dim = embed_dim
        self.num_subvectors = embed_dim // self.codevector_dim
        self.fingerprint = codebook_fingerprint(self.codebook)
        self.codes = torch.zeros(0, self.num_subvectors, dtype=torch.int32)
        self.ids: list[str] = []
        self.metadata: list[dict] = []
        self.backend = self._choose_backend(backend)
        self._faiss = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model, modality: str | None = None, path: str | None = None, **kwargs) -> CodeBindIndex:
        """An empty index over ``model``'s shared codebook of ``path`` (default: the path of ``modality``, or the only path)."""
        if path is None:
            path = model.resolve_path(modality) if modality is not None else (list(model.quantizers)[0] if len(model.quantizers) == 1 else None)
        if path is None:
            raise ValueError(f"the model has several paths {sorted(model.quantizers)}; pass path= or modality=")
        return cls(model.quantizers[path].shared.codebook, model.config.embed_dim, **kwargs)

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def bytes_per_item(self) -> float:
        """Stored bytes per item (bit-packed codes), without ids and metadata."""
        return math.ceil(self.num_subvectors * self.bits_per_code / 8)

    def __len__(self) -> int:
        return len(self.ids)

    def _choose_backend(self, backend: str) -> str:
        if backend not in ("auto", "torch", "faiss"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
        power_of_two = self.codebook_size & (self.codebook_size - 1) == 0
        try:
            import faiss  # noqa: F401

            available = True
        except ImportError:
            available = False
        if backend == "faiss" and not (available and power_of_two):
            raise ValueError("backend='faiss' needs faiss-cpu installed (pip install 'codebind-hf[index]') and K a power of two")
        if backend == "auto":
            return "faiss" if available and power_of_two else "torch"
        return backend

    # ------------------------------------------------------------------ adding and removing
    def _check_embeddings(self, embeddings: torch.Tensor, what: str) -> torch.Tensor:
        embeddings = torch.as_tensor(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"{what} must have shape (N, {self.embed_dim}); got {tuple(embeddings.shape)}")
        if not embeddings.is_floating_point() or not torch.isfinite(embeddings).all():
            raise ValueError(f"{what} must be finite floating point values")
        return embeddings.detach().float().cpu()

    def encode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Codes `(N, m)` of embeddings `(N, d)`: nearest codevector (cosine) of each sub-vector, as the quantizer."""
        embeddings = self._check_embeddings(embeddings, "embeddings")
        sub = F.normalize(embeddings.reshape(-1, self.codevector_dim), dim=-1)
        codes = nearest_codes(sub, self.codebook)
        return codes.reshape(-1, self.num_subvectors).to(torch.int32)

    def add(self, embeddings: torch.Tensor, ids: list[str] | None = None, metadata: list[dict] | None = None) -> None:
        """Encode and append embeddings `(N, d)` (shared embeddings, quantised or not)."""
        self.add_codes(self.encode(embeddings), ids, metadata)

    def add_codes(self, codes: torch.Tensor, ids: list[str] | None = None, metadata: list[dict] | None = None) -> None:
        """Append precomputed codes `(N, m)` (e.g. ``CodeBindOutput.codes[modality]``)."""
        codes = torch.as_tensor(codes)
        if codes.ndim != 2 or codes.shape[1] != self.num_subvectors:
            raise ValueError(f"codes must have shape (N, {self.num_subvectors}); got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        n = codes.shape[0]
        ids = [str(len(self.ids) + i) for i in range(n)] if ids is None else [str(i) for i in ids]
        metadata = [{} for _ in range(n)] if metadata is None else list(metadata)
        if len(ids) != n or len(metadata) != n:
            raise ValueError(f"got {n} items but {len(ids)} ids and {len(metadata)} metadata entries")
        clash = set(ids) & set(self.ids) or (len(set(ids)) != len(ids))
        if clash:
            raise ValueError(f"ids must be unique; duplicates: {sorted(set(ids) & set(self.ids))[:5] or 'within the new batch'}")
        self.codes = torch.cat([self.codes, codes.to(torch.int32).cpu()])
        self.ids.extend(ids)
        self.metadata.extend(metadata)
        self._faiss = None

    def remove(self, ids: list[str]) -> int:
        """Remove items by id; returns how many were removed. Unknown ids are an error naming them."""
        ids = {str(i) for i in ids}
        unknown = ids - set(self.ids)
        if unknown:
            raise KeyError(f"ids not in the index: {sorted(unknown)[:10]}")
        keep = [i for i, item in enumerate(self.ids) if item not in ids]
        self.codes = self.codes[keep]
        self.ids = [self.ids[i] for i in keep]
        self.metadata = [self.metadata[i] for i in keep]
        self._faiss = None
        return len(ids)

    # ------------------------------------------------------------------ decoding and search
    def decode(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Unit embeddings `(N, d)` of codes (default: all items): the normalised concatenation of codevectors."""
        codes = self.codes if codes is None else torch.as_tensor(codes)
        vectors = self.codebook.index_select(0, codes.reshape(-1).long()).reshape(codes.shape[0], self.embed_dim)
        return vectors / math.sqrt(self.num_subvectors)

    def search(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, list[list[str]]]:
        """Top-``k`` items by cosine between each (normalised) query `(Q, d)` and the decoded items.

        Returns scores `(Q, k)` and the ids of the hits, best first.
        """
        queries = self._check_embeddings(queries, "queries")
        if len(self) == 0:
            raise ValueError("the index is empty; add items before searching")
        if not 1 <= k <= len(self):
            raise ValueError(f"k must lie in [1, {len(self)}] (the number of items), got {k}")
        queries = F.normalize(queries, dim=-1)
        if self.backend == "faiss":
            scores, rows = self._faiss_search(queries, k)
        else:
            scores, rows = self._torch_search(queries, k)
        return scores, [[self.ids[r] for r in row] for row in rows.tolist()]

    def _torch_search(self, queries: torch.Tensor, k: int, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        tables = queries.reshape(-1, self.num_subvectors, self.codevector_dim) @ self.codebook.t()  # (Q, m, K)
        tables = tables / math.sqrt(self.num_subvectors)
        best_scores, best_rows = None, None
        for start in range(0, len(self), chunk):
            codes = self.codes[start : start + chunk].long()
            scores = torch.zeros(queries.shape[0], codes.shape[0])
            for h in range(self.num_subvectors):
                scores += tables[:, h].index_select(1, codes[:, h])
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            rows = top.indices + start
            if best_scores is None:
                best_scores, best_rows = top.values, rows
            else:
                merged = torch.cat([best_scores, top.values], 1).topk(k, dim=1)
                best_rows = torch.cat([best_rows, rows], 1).gather(1, merged.indices)
                best_scores = merged.values
        return best_scores, best_rows

    def _faiss_search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        import faiss

        if self._faiss is None:
            index = faiss.IndexPQ(self.embed_dim, self.num_subvectors, self.bits_per_code, faiss.METRIC_INNER_PRODUCT)
            centroids = np.tile(self.codebook.numpy()[None], (self.num_subvectors, 1, 1)).astype(np.float32)
            faiss.copy_array_to_vector(centroids.ravel(), index.pq.centroids)
            index.is_trained = True
            # The raw concatenation of each item's codevectors re-encodes to exactly its own codes.
            index.add(np.ascontiguousarray((self.decode() * math.sqrt(self.num_subvectors)).numpy()))
            self._faiss = index
        scores, rows = self._faiss.search(np.ascontiguousarray(queries.numpy()), k)
        return torch.from_numpy(scores) / math.sqrt(self.num_subvectors), torch.from_numpy(rows).long()

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {
            "format": "codebind-index",
            "version": 1,
            "embed_dim": self.embed_dim,
            "codebook_size": self.codebook_size,
            "codevector_dim": self.codevector_dim,
            "bits_per_code": self.bits_per_code,
            "count": len(self),
            "codebook_sha256": self.fingerprint,
            "ids": self.ids,
            "metadata": self.metadata,
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``index.json`` + bit-packed ``codes.safetensors`` + ``codebook.safetensors`` atomically."""

        def write(staging: Path) -> None:
            save_file({"codes": pack_codes(self.codes, self.bits_per_code)}, staging / CODES_FILE)
            save_file({"codebook": self.codebook.contiguous()}, staging / CODEBOOK_FILE)
            (staging / INDEX_CONFIG).write_text(json.dumps(self._config()))

        _atomic_dir_write(Path(directory), write)

    @classmethod
    def load(cls, directory: str | os.PathLike, backend: str = "auto") -> CodeBindIndex:
        directory = Path(directory)
        for name in (INDEX_CONFIG, CODES_FILE, CODEBOOK_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} is missing; not a CodeBindIndex folder")
        config = json.loads((directory / INDEX_CONFIG).read_text())
        codebook = load_file(directory / CODEBOOK_FILE)["codebook"]
        index = cls(codebook, config["embed_dim"], backend=backend, normalize=False)
        if index.fingerprint != config["codebook_sha256"]:
            raise ValueError(f"{directory}: codebook.safetensors does not match the fingerprint in index.json (corrupted?)")
        codes = unpack_codes(load_file(directory / CODES_FILE)["codes"], index.num_subvectors, config["bits_per_code"])
        if codes.shape[0] != config["count"]:
            raise ValueError(f"{directory}: {codes.shape[0]} coded items but index.json says {config['count']}")
        index.add_codes(codes, config["ids"], config["metadata"])
        return index

    def check_codebook(self, codebook: torch.Tensor) -> None:
        """Raise if ``codebook`` is not the one this index was built with (both fingerprints named)."""
        other = codebook_fingerprint(F.normalize(codebook.detach().float().cpu(), dim=-1))
        if other != self.fingerprint:
            raise ValueError(f"codebook mismatch: index built with {self.fingerprint[:12]}…, model codebook is {other[:12]}…")

    def push_to_hub(self, repo_id: str, private: bool | None = None, commit_message: str = "Upload CodeBind index", token=None) -> str:
        """Save to a temporary folder and upload it as one commit to a Hub model repo."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save(Path(tmp) / "index")
            info = api.upload_folder(repo_id=repo_id, folder_path=Path(tmp) / "index", commit_message=commit_message)
        return getattr(info, "oid", str(info))

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | os.PathLike, revision: str | None = None, backend: str = "auto") -> CodeBindIndex:
        """Load from a local folder or a Hub repo written by :meth:`push_to_hub`."""
        if Path(repo_id_or_dir).is_dir():
            return cls.load(repo_id_or_dir, backend)
        from huggingface_hub import snapshot_download

        return cls.load(snapshot_download(str(repo_id_or_dir), revision=revision), backend)


__all__ = ["CodeBindIndex", "codebook_fingerprint", "pack_codes", "unpack_codes"]
