"""`CodeBindIndex`: a corpus of shared embeddings stored as compositional codes, searched without floats.

A quantised shared embedding is the normalised concatenation of ``m = embed_dim / d*`` unit codevectors of one
codebook, so an item is ``m`` integers: bit-packed at ``ceil(log2 K)`` bits (10 for K = 1024: 160 bytes for a
1024-d embedding instead of 4096 in float32).

Normalisation and scores, precisely:

- an item with codes ``c_1 .. c_m`` decodes to ``x = concat(e_{c_1}, ..., e_{c_m}) / sqrt(m)``; the codevectors
  are unit, so ``|concat| = sqrt(m)`` for every item and ``x`` is unit (``decode`` applies ``F.normalize``,
  bit-identical to the model's quantised embedding);
- a float query ``q`` is normalised as a whole, ``q̂ = q / |q|``, then cut into sub-vectors ``q̂_h``;
- one lookup table per sub-vector, ``T[h, k] = <q̂_h, e_k>``, and
  ``score(q, item) = Σ_h T[h, c_h] / sqrt(m) = <q̂, x> = cos(q, x)``.

``|q|`` is the same for all items of a query and ``sqrt(m)`` the same for all items, so ranking by the raw
table sums, by the returned scores and by brute force ``q̂ · x`` over the decoded vectors is the same ranking.

The index pins the sha256 of its codebook's bytes; adding or searching with another codebook (a model whose
path was re-trained, another path) is refused with both fingerprints named.

An index folder has the verbs of every small artifact (`save_index`, `load_index`, `push_index`; also the methods
``save``/``load`` for local folders and ``push_to_hub``/``from_pretrained``); it belongs to no model, so there is
nothing to attach, remove or list.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..adapters.integrity import IntegrityError, read_sealed_json, seal_json
from ..adapters.io import download_snapshot, file_sha256, push_folder, recover_leftovers, write_dir_atomically
from ..validation import check_fields
from ..adapters.state import renamed_argument
from ..quantization.quantizer import nearest_codes
from ._encode import codebook_of, inference, is_batch, model_path
from .backends import (
    FaissPQBackend,
    bits_per_code,
    codebook_fingerprint,
    faiss_available,
    pack_codes,
    packed_width,
    torch_search,
    unpack_codes,
)
from .build import build_index

INDEX_CONFIG = "index.json"
CODES_FILE = "codes.safetensors"
CODEBOOK_FILE = "codebook.safetensors"
INDEX_FILES = (INDEX_CONFIG, CODES_FILE, CODEBOOK_FILE)
INDEX_FORMAT = "codebind-index"
INDEX_VERSION = 2
BACKENDS = ("auto", "torch", "faiss")


class CodeBindIndex:
    """Items stored as shared-codebook codes, searched by asymmetric distance (float query, coded items).

    Args:
        codebook (`torch.Tensor` of shape `(K, d*)`): the shared codebook (unit rows), e.g.
            ``model.quantizers[path].shared.codebook``. Stored as given (float32, CPU); not re-normalised, so
            its fingerprint equals the model's.
        embed_dim (`int`): width ``d`` of the shared embeddings, a multiple of ``d*``.
        backend (`str`, *optional*, defaults to `"auto"`): ``"torch"`` (reference), ``"faiss"`` (an ``IndexPQ``, needs
            ``faiss-cpu``: extra ``[index]``) or ``"auto"`` (faiss when installed).
        info (`dict`, *optional*): JSON-serialisable provenance saved with the index (``from_model`` records the
            modality, the path and the model's name).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf import CompositionalQuantizer
    >>> from codebind_hf.index.core import CodeBindIndex
    >>> quantizer = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    >>> index = CodeBindIndex.from_quantizer(quantizer, embed_dim=32, backend="torch")
    >>> index.add(torch.randn(100, 32), ids=[f"item{i}" for i in range(100)])
    >>> scores, ids = index.search(torch.randn(2, 32), k=5)
    >>> scores.shape, len(ids[0]), index.bytes_per_item
    (torch.Size([2, 5]), 5, 3)

    ```
    """

    def __init__(self, codebook: torch.Tensor, embed_dim: int, backend: str = "auto", info: dict | None = None):
        if not isinstance(codebook, torch.Tensor) or codebook.ndim != 2 or not codebook.is_floating_point():
            got = tuple(codebook.shape) if isinstance(codebook, torch.Tensor) else type(codebook).__name__
            raise ValueError(f"codebook must be a float tensor of shape (K, d*), got {got}")
        codebook = codebook.detach().to("cpu", torch.float32).contiguous().clone()
        if not torch.isfinite(codebook).all():
            raise ValueError("codebook contains NaN or inf values")
        norms = codebook.norm(dim=-1)
        if (norms - 1).abs().max() > 1e-3:
            raise ValueError(
                f"codebook rows must be unit vectors (as CompositionalQuantizer keeps them); row norms lie in "
                f"[{norms.min():.4f}, {norms.max():.4f}]"
            )
        size, sub_dim = codebook.shape
        if embed_dim < 1 or embed_dim % sub_dim:
            raise ValueError(f"embed_dim={embed_dim} must be a positive multiple of the codevector dim {sub_dim}")
        self.codebook = codebook
        self.embed_dim = embed_dim
        self.bits_per_code = bits_per_code(size)
        self.fingerprint = codebook_fingerprint(codebook)
        self.info = dict(info or {})
        self.ids: list[str] = []
        self.metadata: list[dict] = []
        self._rows: dict[str, int] = {}
        # Packed codes in the order added; concatenated lazily (``packed_codes``) so streaming adds stay linear.
        self._chunks: list[torch.Tensor] = [torch.zeros(0, self.bytes_per_item, dtype=torch.uint8)]
        self.backend = self._choose_backend(backend)
        self._faiss: FaissPQBackend | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_quantizer(cls, quantizer, embed_dim: int, backend: str = "auto", info: dict | None = None) -> CodeBindIndex:
        """An empty index over a [`CompositionalQuantizer`]'s codebook."""
        return cls(quantizer.codebook, embed_dim, backend=backend, info=info)

    @classmethod
    def from_model(cls, model, modality: str | None = None, path: str | None = None, backend: str = "auto") -> CodeBindIndex:
        """An empty index over the shared codebook of ``model``'s path ``path``.

        The default path is ``modality``'s (see ``CodeBindModel.resolve_path``), or the model's only path.
        """
        path = model_path(model, modality, path)
        info = {"path": path, "modality": modality, "model": getattr(model, "name_or_path", "") or None}
        return cls(model.quantizers[path].shared.codebook, model.config.embed_dim, backend=backend, info=info)

    @classmethod
    def build_from_dataset(
        cls,
        model,
        dataset,
        modality: str,
        column: str,
        processor=None,
        batch_size: int = 32,
        output_dir: str | os.PathLike | None = None,
        shard_size: int = 1024,
        resume: bool = True,
        **kwargs,
    ) -> CodeBindIndex:
        """Stream ``dataset[column]`` through ``model`` into an index, resumably; see
        :func:`codebind_hf.index.build.build_index` (which also takes ``id_column``, ``metadata_columns``,
        ``path``, ``progress`` and ``backend``)."""
        return build_index(
            cls, model, dataset, modality, column, output_dir=output_dir, processor=processor, batch_size=batch_size,
            shard_size=shard_size, resume=resume, **kwargs,
        )

    def _choose_backend(self, backend: str) -> str:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        available = faiss_available()
        if backend == "faiss" and not available:
            raise ImportError("backend='faiss' needs faiss-cpu: pip install 'codebind-hf[index]' (or use backend='torch')")
        if backend == "auto":
            return "faiss" if available else "torch"
        return backend

    # ------------------------------------------------------------------ sizes
    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    @property
    def codevector_dim(self) -> int:
        return self.codebook.shape[1]

    @property
    def num_subvectors(self) -> int:
        return self.embed_dim // self.codevector_dim

    @property
    def bytes_per_item(self) -> int:
        """Bytes of packed codes per item (ids and metadata not counted); float32 would take ``4 * embed_dim``."""
        return packed_width(self.num_subvectors, self.bits_per_code)

    @property
    def nbytes(self) -> int:
        """Bytes of code storage held in memory (``len(self) * bytes_per_item``)."""
        return sum(chunk.numel() for chunk in self._chunks)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"CodeBindIndex(items={len(self)}, embed_dim={self.embed_dim}, K={self.codebook_size}, "
            f"m={self.num_subvectors}, bytes_per_item={self.bytes_per_item}, backend={self.backend!r})"
        )

    @property
    def packed_codes(self) -> torch.Tensor:
        """The stored codes, bit-packed: `(N, bytes_per_item)` uint8."""
        if len(self._chunks) > 1:
            self._chunks = [torch.cat(self._chunks)]
        return self._chunks[0]

    @property
    def codes(self) -> torch.Tensor:
        """The stored codes unpacked: `(N, m)` int64."""
        return unpack_codes(self.packed_codes, self.num_subvectors, self.bits_per_code)

    # ------------------------------------------------------------------ codebook identity
    def check_codebook(self, source, path: str | None = None) -> None:
        """Raise unless ``source`` holds this index's codebook (same shape and sha256), naming both.

        Args:
            source: a codebook tensor `(K, d*)`, a [`CompositionalQuantizer`], or a [`CodeBindModel`] (its path
                ``path``, default: the path recorded in ``info``, or the model's only path).
        """
        codebook, where = codebook_of(source, path or self.info.get("path"))
        other = codebook_fingerprint(codebook)
        if tuple(codebook.shape) != tuple(self.codebook.shape) or other != self.fingerprint:
            raise ValueError(
                f"codebook mismatch: this index was built with codebook sha256 {self.fingerprint[:16]}… "
                f"(K={self.codebook_size}, d*={self.codevector_dim}), but {where} has sha256 {other[:16]}… "
                f"(K={codebook.shape[0]}, d*={codebook.shape[1]}); its codes would mean other vectors. "
                "Rebuild the index with this model, or use the model the index was built with."
            )

    # ------------------------------------------------------------------ encoding and decoding
    def _check_vectors(self, vectors, what: str) -> torch.Tensor:
        if not isinstance(vectors, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor of shape (N, {self.embed_dim}), got {type(vectors).__name__}")
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.embed_dim:
            raise ValueError(
                f"{what} must have shape (N, {self.embed_dim}) (embed_dim of this index); got {tuple(vectors.shape)}"
            )
        if not vectors.is_floating_point():
            raise TypeError(f"{what} must be floating point, got dtype {vectors.dtype}")
        vectors = vectors.detach().to("cpu", torch.float32)
        if not torch.isfinite(vectors).all():
            raise ValueError(f"{what} contain NaN or inf values")
        return vectors

    def encode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Codes `(N, m)` int64 of embeddings `(N, d)`: each sub-vector, L2-normalised, to its max-cosine codevector.

        This is the quantizer's assignment; quantised embeddings (``get_features(..., quantize=True)``) give back
        exactly the model's codes.
        """
        embeddings = self._check_vectors(embeddings, "embeddings")
        sub = F.normalize(embeddings.reshape(-1, self.codevector_dim), dim=-1)
        return nearest_codes(sub, self.codebook).reshape(-1, self.num_subvectors)

    def decode(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Unit embeddings `(N, d)` of codes `(N, m)` (default: all items): the normalised concatenated codevectors."""
        codes = self.codes if codes is None else self._check_codes(codes)
        # int32 indices: index_select runs about twice as fast as with int64 on CPU
        vectors = self.codebook.index_select(0, codes.reshape(-1).int()).reshape(codes.shape[0], self.embed_dim)
        return F.normalize(vectors, dim=-1)

    def _check_codes(self, codes) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        if codes.ndim != 2 or codes.shape[1] != self.num_subvectors:
            raise ValueError(f"codes must have shape (N, {self.num_subvectors}) (m of this index); got {tuple(codes.shape)}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}); got [{int(codes.min())}, {int(codes.max())}]")
        return codes.cpu().long()

    # ------------------------------------------------------------------ adding and removing
    def add(
        self, embeddings: torch.Tensor, ids: Iterable | None = None, metadata: list[dict] | None = None, codebook=None
    ) -> None:
        """Encode and append shared embeddings `(N, d)` (quantised or not).

        Args:
            ids (*optional*): unique ids (converted to `str`); default: the running row number.
            metadata (`list[dict]`, *optional*): one JSON-serialisable dict per item.
            codebook (*optional*): the codebook the embeddings belong to (tensor, quantizer or model); checked first.
        """
        if codebook is not None:
            self.check_codebook(codebook)
        self.add_codes(self.encode(embeddings), ids, metadata)

    def add_codes(
        self, codes: torch.Tensor, ids: Iterable | None = None, metadata: list[dict] | None = None, codebook=None
    ) -> None:
        """Append precomputed codes `(N, m)` (e.g. ``CodeBindOutput.codes[modality]``); ``codebook`` as in :meth:`add`."""
        if codebook is not None:
            self.check_codebook(codebook)
        codes = self._check_codes(codes)
        self.add_packed_codes(pack_codes(codes, self.bits_per_code), ids, metadata)

    def add_packed_codes(self, packed: torch.Tensor, ids: Iterable | None = None, metadata: list[dict] | None = None) -> None:
        """Append bit-packed codes `(N, bytes_per_item)` uint8 (as `packed_codes` holds them, e.g. a build's shard);
        ``ids`` and ``metadata`` as in :meth:`add`. Nothing is added unless all of it is valid."""
        if packed.dtype != torch.uint8 or packed.ndim != 2 or packed.shape[1] != self.bytes_per_item:
            raise ValueError(
                f"packed codes must be uint8 of shape (N, {self.bytes_per_item}); got {packed.dtype} {tuple(packed.shape)}"
            )
        n = packed.shape[0]
        ids = [str(len(self) + i) for i in range(n)] if ids is None else [str(i) for i in ids]
        metadata = [{} for _ in range(n)] if metadata is None else list(metadata)
        if len(ids) != n or len(metadata) != n:
            raise ValueError(f"got {n} items but {len(ids)} ids and {len(metadata)} metadata entries")
        if not all(isinstance(entry, dict) for entry in metadata):
            raise TypeError("metadata must be a list of dicts, one per item")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as error:
            raise TypeError(f"metadata must be JSON-serialisable (it is saved in {INDEX_CONFIG}): {error}") from None
        seen: set[str] = set()
        duplicates = [i for i in ids if i in self._rows or i in seen or seen.add(i)]
        if duplicates:
            raise ValueError(f"ids must be unique; already present or repeated: {duplicates[:5]}")
        for offset, item in enumerate(ids):
            self._rows[item] = len(self.ids) + offset
        self.ids.extend(ids)
        self.metadata.extend(metadata)
        self._chunks.append(packed)
        if self._faiss is not None:
            self._faiss.add(packed)

    def add_inputs(
        self,
        model,
        modality: str,
        inputs,
        ids: Iterable | None = None,
        metadata: list[dict] | None = None,
        path: str | None = None,
    ) -> None:
        """Embed raw model inputs (one batch, or an iterable of batches: a stream) and add their codes.

        The model's codebook for ``path`` (default: the index's recorded path, else ``modality``'s path) is checked
        first; items are the model's quantised shared embeddings, so their codes are the model's codes.
        """
        path = path or self.info.get("path") or model_path(model, modality, None)
        self.check_codebook(model, path)
        codes = []
        with inference(model):
            for batch in [inputs] if is_batch(inputs) else inputs:
                codes.append(self.encode(model.get_features(modality, batch, quantize=True, path=path)))
        self.add_codes(torch.cat(codes) if codes else torch.zeros(0, self.num_subvectors, dtype=torch.long), ids, metadata)

    def remove(self, ids: Iterable) -> int:
        """Remove items by id; returns how many were removed. Unknown ids raise a `KeyError` naming them."""
        ids = {str(i) for i in ids}
        unknown = sorted(i for i in ids if i not in self._rows)
        if unknown:
            raise KeyError(f"ids not in the index: {unknown[:10]}{' …' if len(unknown) > 10 else ''}")
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[[self._rows[i] for i in ids]] = False
        rows = keep.nonzero().squeeze(1).tolist()
        self._chunks = [self.packed_codes[keep]]
        self.ids = [self.ids[r] for r in rows]
        self.metadata = [self.metadata[r] for r in rows]
        self._rows = {item: row for row, item in enumerate(self.ids)}
        self._faiss = None  # rebuilt on the next faiss search
        return len(ids)

    # ------------------------------------------------------------------ search
    def search(self, queries: torch.Tensor, k: int = 10, codebook=None) -> tuple[torch.Tensor, list[list[str]]]:
        """Top-``k`` items by ``cos(query, decoded item)`` (see the module doc) for float queries `(Q, d)` or `(d,)`.

        Args:
            codebook (*optional*): the codebook of the model that made the queries; checked first (see
                :meth:`check_codebook`).

        Returns:
            `(scores, ids)`: `torch.FloatTensor` of shape `(Q, k)`, best first, and the ids of the hits.
        """
        if codebook is not None:
            self.check_codebook(codebook)
        queries = self._check_vectors(queries, "queries")
        if len(self) == 0:
            raise ValueError("the index is empty; add items before searching")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self):
            raise ValueError(f"k must be an integer in [1, {len(self)}] (the number of items in the index), got {k!r}")
        norms = queries.norm(dim=-1)
        if (norms == 0).any():
            zero = (norms == 0).nonzero().squeeze(1).tolist()[:10]
            raise ValueError(f"queries must be non-zero to be normalised; rows {zero} are zero")
        queries = queries / norms[:, None]
        if self.backend == "faiss":
            if self._faiss is None:
                self._faiss = FaissPQBackend(self.codebook, self.num_subvectors, self.bits_per_code)
                self._faiss.add(self.packed_codes)
            sums, rows = self._faiss.search(queries, k)
        else:
            sums, rows = torch_search(queries, self.packed_codes, self.codebook, self.bits_per_code, k)
        scores = sums / math.sqrt(self.num_subvectors)
        return scores, [[self.ids[r] for r in row] for row in rows.tolist()]

    def search_inputs(
        self, model, modality: str, inputs, k: int = 10, path: str | None = None
    ) -> tuple[torch.Tensor, list[list[str]]]:
        """Embed one batch of raw inputs of ``modality`` as float shared embeddings and :meth:`search` with them.

        The query is not quantised (asymmetric search); the model's codebook for ``path`` (default: the index's
        recorded path, else ``modality``'s path) is checked first.
        """
        path = path or self.info.get("path") or model_path(model, modality, None)
        self.check_codebook(model, path)
        with inference(model):
            queries = model.get_features(modality, inputs, quantize=False)
        return self.search(queries, k)

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "embed_dim": self.embed_dim,
            "codebook_size": self.codebook_size,
            "codevector_dim": self.codevector_dim,
            "bits_per_code": self.bits_per_code,
            "bytes_per_item": self.bytes_per_item,
            "count": len(self),
            "codebook_sha256": self.fingerprint,
            "info": self.info,
            "ids": self.ids,
            "metadata": self.metadata,
        }

    def save(self, index_dir: str | os.PathLike | None = None, *, directory: str | os.PathLike | None = None) -> Path:
        """Write ``index.json`` + ``codes.safetensors`` (packed uint8) + ``codebook.safetensors`` to ``index_dir``
        (``directory`` is its former name).

        Atomic: written to a temporary folder beside it, then renamed into place (an existing index folder is
        replaced only then). A non-empty folder that is not an index is refused rather than replaced.

        Returns:
            `Path`: ``index_dir``.
        """
        index_dir = renamed_argument(index_dir, directory, "index_dir", "directory")

        def write(staging: Path) -> None:
            save_file({"codes": self.packed_codes.contiguous()}, staging / CODES_FILE)
            save_file({"codebook": self.codebook}, staging / CODEBOOK_FILE)
            # The codes file's sha256, and index.json sealed with its own (ids and metadata are in it).
            config = {**self._config(), "codes_sha256": file_sha256(staging / CODES_FILE)}
            (staging / INDEX_CONFIG).write_text(seal_json(config))

        return write_dir_atomically(index_dir, write, replaceable=INDEX_FILES)

    @classmethod
    def load(cls, index_dir: str | os.PathLike | None = None, backend: str = "auto", codebook=None, *,
             directory: str | os.PathLike | None = None) -> CodeBindIndex:
        """Load an index folder written by :meth:`save` (``directory`` is the former name of ``index_dir``);
        ``codebook`` (tensor, quantizer or model), if given, must match it."""
        index_dir = Path(renamed_argument(index_dir, directory, "index_dir", "directory"))
        recover_leftovers(index_dir)  # a save interrupted between its renames leaves the old version aside
        for name in INDEX_FILES:
            if not (index_dir / name).is_file():
                raise FileNotFoundError(f"{index_dir / name} is missing; {index_dir} is not a CodeBindIndex folder")
        config = read_index_config(index_dir / INDEX_CONFIG)
        if "codes_sha256" in config and file_sha256(index_dir / CODES_FILE) != config["codes_sha256"]:
            raise IntegrityError(
                f"{index_dir / CODES_FILE} is corrupted or truncated: its sha256 differs from the one {INDEX_CONFIG} records"
            )
        try:
            stored_codebook = load_file(index_dir / CODEBOOK_FILE)["codebook"]
            packed = load_file(index_dir / CODES_FILE)["codes"]
        except (SafetensorError, KeyError) as error:
            raise ValueError(f"{index_dir}: unreadable or incomplete safetensors file ({error})") from None
        index = cls(stored_codebook, config["embed_dim"], backend=backend, info=config.get("info"))
        if index.fingerprint != config["codebook_sha256"]:
            raise ValueError(
                f"{index_dir / CODEBOOK_FILE} has sha256 {index.fingerprint[:16]}… but {INDEX_CONFIG} records "
                f"{config['codebook_sha256'][:16]}…; the index is corrupted"
            )
        expected = (config["count"], index.bytes_per_item)
        if packed.dtype != torch.uint8 or tuple(packed.shape) != expected or len(config["ids"]) != config["count"]:
            raise ValueError(
                f"{index_dir / CODES_FILE}: expected uint8 codes of shape {expected} and {config['count']} ids; got "
                f"{packed.dtype} {tuple(packed.shape)} and {len(config['ids'])} ids"
            )
        codes = unpack_codes(packed, index.num_subvectors, index.bits_per_code)
        if codes.numel() and int(codes.max()) >= index.codebook_size:
            raise ValueError(
                f"{index_dir / CODES_FILE}: codes up to {int(codes.max())} but K={index.codebook_size}; corrupted"
            )
        index.add_packed_codes(packed, config["ids"], config["metadata"])
        if codebook is not None:
            index.check_codebook(codebook)
        return index

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        commit_message: str = "Upload CodeBind index",
        token: str | bool | None = None,
        revision: str | None = None,
        *,
        commit_description: str | None = None,
        create_pr: bool = False,
    ):
        """Save to a temporary folder and upload it to a Hub model repo as one commit, creating the repo if needed
        (`codebind_hf.adapters.io.push_folder`: unchanged files are not re-uploaded, errors never carry the token).

        Returns the ``CommitInfo`` of the upload.
        """
        return push_folder(lambda tmp: self.save(tmp / "index"), repo_id, private=private, token=token,
                           revision=revision, create_pr=create_pr, commit_message=commit_message,
                           commit_description=commit_description)

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_dir: str | os.PathLike,
        revision: str | None = None,
        backend: str = "auto",
        codebook=None,
        token: str | bool | None = None,
    ) -> CodeBindIndex:
        """Load from a local folder or a Hub repo written by :meth:`push_to_hub` (its index files only)."""
        index_dir = Path(repo_id_or_dir)
        recover_leftovers(index_dir)  # an interrupted local save: the old version back before the folder is looked for
        if not index_dir.is_dir():
            index_dir = download_snapshot(str(repo_id_or_dir), list(INDEX_FILES), revision=revision, token=token)
        return cls.load(index_dir, backend, codebook)


# ---------------------------------------------------------------------------- the verbs as functions
def build_index_from_dataset(
    model,
    dataset,
    modality: str,
    column: str,
    output_dir: str | os.PathLike | None = None,
    processor: Callable | None = None,
    id_column: str | None = None,
    metadata_columns: list[str] | None = None,
    batch_size: int = 32,
    shard_size: int = 1024,
    path: str | None = None,
    resume: bool = True,
    progress: bool = True,
    backend: str = "auto",
    overwrite: bool = False,
) -> CodeBindIndex:
    """A [`CodeBindIndex`] of ``dataset[column]`` embedded by ``model``, built resumably under ``output_dir``; the
    arguments are those of `codebind_hf.index.build.build_index`."""
    return build_index(CodeBindIndex, model, dataset, modality, column, output_dir, processor, id_column,
                       metadata_columns, batch_size, shard_size, path, resume, progress, backend, overwrite)


def save_index(index: CodeBindIndex, index_dir: str | os.PathLike) -> Path:
    """``index.save(index_dir)``, the function form of the artifact verbs (like `codebind_hf.adapters.bond_io.save_bond`)."""
    return index.save(index_dir)


def load_index(repo_id_or_dir: str | os.PathLike, revision: str | None = None, *, token: str | bool | None = None,
               backend: str = "auto", codebook=None) -> CodeBindIndex:
    """An index from a local folder or a Hub repo (``CodeBindIndex.from_pretrained``); ``codebook`` (tensor,
    quantizer or model), if given, must match it."""
    return CodeBindIndex.from_pretrained(repo_id_or_dir, revision, backend=backend, codebook=codebook, token=token)


def push_index(index: CodeBindIndex, repo_id: str, *, private: bool | None = None, commit_message: str | None = None,
               commit_description: str | None = None, token: str | bool | None = None, revision: str | None = None,
               create_pr: bool = False):
    """``index.push_to_hub(repo_id, ...)`` with the push arguments of every artifact; returns the ``CommitInfo``."""
    return index.push_to_hub(repo_id, private=private, commit_message=commit_message or "Upload CodeBind index",
                             token=token, revision=revision, commit_description=commit_description, create_pr=create_pr)


def read_index_config(path: Path) -> dict:
    """``index.json``, its seal (`IntegrityError`: corrupted or edited) and schema checked: format and version, every
    key with its JSON type, one id and one metadata entry per item (each refusal names the file and the key)."""
    config = read_sealed_json(path, "index config")
    if config.get("format") != INDEX_FORMAT or config.get("version") != INDEX_VERSION:
        raise ValueError(
            f"{path}: format {config.get('format')!r} version {config.get('version')!r}; "
            f"expected {INDEX_FORMAT!r} version {INDEX_VERSION}"
        )
    check_fields(config, _INDEX_SCHEMA, str(path), required=[k for k in _INDEX_SCHEMA if k != "codes_sha256"])
    if len(config["ids"]) != config["count"] or len(config["metadata"]) != config["count"]:
        raise ValueError(f"{path}: {len(config['ids'])} ids and {len(config['metadata'])} metadata entries for "
                         f"count {config['count']}; expected one of each per item")
    return config


_INDEX_SCHEMA = {"format": str, "version": int, "embed_dim": int, "codebook_size": int, "codevector_dim": int,
                 "bits_per_code": int, "bytes_per_item": int, "count": int, "codebook_sha256": str,
                 "info": (dict, type(None)), "ids": list, "metadata": list, "codes_sha256": str}


__all__ = ["CodeBindIndex", "build_index_from_dataset", "save_index", "load_index", "push_index"]
