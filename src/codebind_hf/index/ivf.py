"""`CodeBindIVFIndex`: inverted lists over compositional codes, so a search scans a few lists, not every item.

Items are stored exactly as in [`~codebind_hf.index.core.CodeBindIndex`] (bit-packed shared-codebook codes, scored
by asymmetric distance: ``score(q, item) = cos(q, decoded item)``), and additionally sorted into ``num_lists``
inverted lists:

- a coarse quantizer, spherical k-means over the *decoded* shared embeddings of a training sample
  (:meth:`~CodeBindIVFIndex.train`, :meth:`~CodeBindIVFIndex.train_codes`), gives ``num_lists`` unit centroids;
- every item goes to the list of its decoded embedding's nearest centroid (max inner product);
- a query scans the lists of its ``nprobe`` nearest centroids only. With ``nprobe = num_lists`` every item is
  scanned and the result is the exhaustive search's (:meth:`~CodeBindIVFIndex.search_exhaustive`).

Codes are held grouped by list (items added since the last search wait in a buffer and are merged in by a
counting sort, without a second copy of the stored codes). ``ids``, ``metadata`` and ``codes`` follow that
grouped order, not the order of adding. Ids are held as one UTF-8 byte column (:class:`IdColumn`: the id's bytes
plus 8 an item, where a list of strings costs about 60), and metadata only once some item has any. On
:meth:`~CodeBindIVFIndex.load` the codes are memory-mapped (``safetensors.safe_open``): a search reads only the
probed lists' pages, so an index larger than RAM can be searched.

The torch backend is the reference; the faiss backend (``faiss-cpu``, extra ``[index]``) runs the same lists and
codes through an ``IndexIVFPQ`` (see :mod:`~codebind_hf.index.ivf_backends`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file as save_numpy_file
from safetensors.torch import load_file, save_file

from ..adapters.integrity import verify_checksum_list, write_checksum_list
from ..adapters.io import download_snapshot, push_folder, write_dir_atomically
from .backends import FaissPQBackend, codebook_fingerprint, torch_search, unpack_codes
from .core import CodeBindIndex
from .ivf_backends import FaissIVFBackend, assign_lists, ivf_torch_search, probe_lists, spherical_kmeans
from .ivf_storage import AddBuffer, IdColumn, IdHashes

INDEX_CONFIG = "index.json"
CODES_FILE = "codes.safetensors"
CODEBOOK_FILE = "codebook.safetensors"
CENTROIDS_FILE = "centroids.safetensors"
IDS_FILE = "ids.safetensors"
CHECKSUMS_FILE = "checksums.json"  # the sha256 of every other file (`write_checksum_list`), sealed
IVF_FORMAT = "codebind-ivf-index"
IVF_VERSION = 2  # 2: ids in ids.safetensors (UTF-8 bytes + end offsets), not in index.json; files checksummed
_CHECKED = (INDEX_CONFIG, CODES_FILE, CODEBOOK_FILE, CENTROIDS_FILE, IDS_FILE)
_FILES = (*_CHECKED, CHECKSUMS_FILE)
# Items handed to faiss per add_sa_codes call (bounds the copy that prefixes list numbers).
_FAISS_ADD_CHUNK = 1 << 16


class CodeBindIVFIndex:
    """Shared-codebook codes in inverted lists: a flat [`CodeBindIndex`]'s items and scores, searched sublinearly.

    Args:
        codebook (`torch.Tensor` of shape `(K, d*)`): the shared codebook (unit rows), as for [`CodeBindIndex`].
        embed_dim (`int`): width ``d`` of the shared embeddings, a multiple of ``d*``.
        num_lists (`int`): inverted lists (coarse centroids); about ``sqrt(N)`` to ``4 sqrt(N)`` for ``N`` items.
        backend (`str`, *optional*, defaults to `"auto"`): ``"torch"``, ``"faiss"`` or ``"auto"`` (faiss when
            installed).
        info (`dict`, *optional*): JSON-serialisable provenance saved with the index.
        nprobe (`int`, *optional*): lists a query scans unless :meth:`search` is told otherwise; default
            ``min(8, num_lists)``.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf import CompositionalQuantizer
    >>> from codebind_hf.index.ivf import CodeBindIVFIndex
    >>> quantizer = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    >>> index = CodeBindIVFIndex.from_quantizer(quantizer, embed_dim=32, num_lists=4, backend="torch")
    >>> items = torch.randn(200, 32)
    >>> index.train(items)
    >>> index.add(items, ids=[f"item{i}" for i in range(200)])
    >>> scores, ids = index.search(torch.randn(2, 32), k=5, nprobe=2)
    >>> scores.shape, len(ids[0]), sum(index.list_sizes.tolist())
    (torch.Size([2, 5]), 5, 200)

    ```
    """

    def __init__(
        self,
        codebook: torch.Tensor,
        embed_dim: int,
        num_lists: int,
        backend: str = "auto",
        info: dict | None = None,
        nprobe: int | None = None,
    ):
        # The flat index holds no items here: it is the codec (codebook checks, encode, decode, fingerprint).
        self._codec = CodeBindIndex(codebook, embed_dim, backend=backend, info=info)
        if isinstance(num_lists, bool) or not isinstance(num_lists, int) or num_lists < 1:
            raise ValueError(f"num_lists must be a positive integer, got {num_lists!r}")
        self.num_lists = num_lists
        self.nprobe = self._check_nprobe(min(8, num_lists) if nprobe is None else nprobe)
        self.backend = self._codec.backend
        self.centroids: torch.Tensor | None = None
        self._packed = torch.zeros(0, self.bytes_per_item, dtype=torch.uint8)
        self._offsets = torch.zeros(num_lists + 1, dtype=torch.long)
        self._ids = IdColumn.from_strings([])
        # None: no item has metadata; else one entry an item, None for those added without (read back as {}).
        self._metadata: list[dict | None] | None = None
        self._held: IdHashes | None = IdHashes()  # None until an add needs it (a loaded index to search doesn't)
        self._pending = AddBuffer(self.bytes_per_item)
        self._faiss_ivf: FaissIVFBackend | None = None
        self._faiss_flat: FaissPQBackend | None = None
        self._broken = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_quantizer(cls, quantizer, embed_dim: int, num_lists: int, **kwargs) -> CodeBindIVFIndex:
        """An empty, untrained index over a [`CompositionalQuantizer`]'s codebook."""
        return cls(quantizer.codebook, embed_dim, num_lists, **kwargs)

    @classmethod
    def from_model(cls, model, num_lists: int, modality: str | None = None, path: str | None = None, **kwargs):
        """An empty, untrained index over the shared codebook of ``model``'s path (as
        :meth:`CodeBindIndex.from_model` chooses it)."""
        flat = CodeBindIndex.from_model(model, modality=modality, path=path, backend="torch")
        return cls(flat.codebook, flat.embed_dim, num_lists, info=flat.info, **kwargs)

    @classmethod
    def from_flat(
        cls, flat: CodeBindIndex, num_lists: int, sample_size: int | None = None, iters: int = 10, seed: int = 0,
        chunk_size: int = 1 << 16, **kwargs,
    ) -> CodeBindIVFIndex:  # fmt: skip
        """The items of a flat index (ids, metadata, codes) in inverted lists trained on ``sample_size`` of them
        (default: ``max(64 * num_lists, 65536)`` or all), drawn with ``seed``."""
        index = cls(flat.codebook, flat.embed_dim, num_lists, info=flat.info, **kwargs)
        packed, m, bits = flat.packed_codes, flat.num_subvectors, flat.bits_per_code
        size = min(len(flat), sample_size or max(64 * num_lists, 1 << 16))
        picks = torch.randperm(len(flat), generator=torch.Generator().manual_seed(seed))[:size].sort().values
        index.train_codes(unpack_codes(packed[picks], m, bits), iters=iters, seed=seed)
        for start in range(0, len(flat), chunk_size):
            stop = min(start + chunk_size, len(flat))
            index.add_codes(unpack_codes(packed[start:stop], m, bits), flat.ids[start:stop], flat.metadata[start:stop])
        return index

    # ------------------------------------------------------------------ sizes and views
    codebook = property(lambda self: self._codec.codebook)
    embed_dim = property(lambda self: self._codec.embed_dim)
    fingerprint = property(lambda self: self._codec.fingerprint)
    info = property(lambda self: self._codec.info)
    codebook_size = property(lambda self: self._codec.codebook_size)
    codevector_dim = property(lambda self: self._codec.codevector_dim)
    num_subvectors = property(lambda self: self._codec.num_subvectors)
    bits_per_code = property(lambda self: self._codec.bits_per_code)
    bytes_per_item = property(lambda self: self._codec.bytes_per_item)

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    def __len__(self) -> int:
        return len(self._ids) + len(self._pending)

    def __repr__(self) -> str:
        return (
            f"CodeBindIVFIndex(items={len(self)}, num_lists={self.num_lists}, nprobe={self.nprobe}, "
            f"embed_dim={self.embed_dim}, K={self.codebook_size}, bytes_per_item={self.bytes_per_item}, "
            f"backend={self.backend!r})"
        )

    @property
    def nbytes(self) -> int:
        """Bytes of code storage: packed codes (``len(self) * bytes_per_item``) plus the list offsets."""
        return self._packed.numel() + self._offsets.numel() * 8 + self._pending.nbytes

    @property
    def ids(self) -> list[str]:
        """Item ids, grouped by list: a new list of strings at each call (the index holds them as bytes)."""
        self._consolidate()
        return self._ids.strings()

    @property
    def metadata(self) -> list[dict]:
        self._consolidate()
        if self._metadata is None:
            return [{} for _ in range(len(self._ids))]
        return [entry if entry is not None else {} for entry in self._metadata]

    @property
    def packed_codes(self) -> torch.Tensor:
        """Stored codes, bit-packed `(N, bytes_per_item)` uint8, grouped by list (list ``l``: rows
        ``list_offsets[l] .. list_offsets[l + 1] - 1``)."""
        self._consolidate()
        return self._packed

    @property
    def list_offsets(self) -> torch.Tensor:
        self._consolidate()
        return self._offsets

    @property
    def list_sizes(self) -> torch.Tensor:
        """Items per list `(num_lists,)`."""
        return self.list_offsets.diff()

    @property
    def codes(self) -> torch.Tensor:
        """Stored codes unpacked `(N, m)` int64, in the order of :attr:`ids`."""
        return unpack_codes(self.packed_codes, self.num_subvectors, self.bits_per_code)

    # ------------------------------------------------------------------ codec (shared with the flat index)
    def check_codebook(self, source, path: str | None = None) -> None:
        """As :meth:`CodeBindIndex.check_codebook`: raise unless ``source`` holds this index's codebook."""
        self._codec.check_codebook(source, path)

    def encode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Codes `(N, m)` of embeddings `(N, d)` (see :meth:`CodeBindIndex.encode`)."""
        return self._codec.encode(embeddings)

    def decode(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Unit embeddings `(N, d)` of codes `(N, m)` (default: all items, in the order of :attr:`ids`)."""
        return self._codec.decode(self.codes if codes is None else codes)

    # ------------------------------------------------------------------ coarse quantizer
    def train(self, embeddings: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """Train the coarse centroids on a sample of shared embeddings `(n, d)`, ``n >= num_lists`` (encoded and
        decoded first, so the centroids live where the stored items do)."""
        self.train_codes(self.encode(embeddings), iters=iters, seed=seed)

    def train_codes(self, codes: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """Train the coarse centroids on the decoded embeddings of codes `(n, m)` (see
        :func:`~codebind_hf.index.ivf_backends.spherical_kmeans`). Refused once items are stored: their lists
        follow the centroids."""
        if len(self):
            raise ValueError(f"the index holds {len(self)} items; train it before adding (or build a new index)")
        codes = torch.as_tensor(codes)
        self.centroids = spherical_kmeans(
            lambda start, stop: self._codec.decode(codes[start:stop]), codes.shape[0], self.num_lists, iters, seed
        )
        self._faiss_ivf = None

    # ------------------------------------------------------------------ adding and removing
    def add(self, embeddings: torch.Tensor, ids: Iterable | None = None, metadata: list[dict] | None = None,
            codebook=None) -> None:  # fmt: skip
        """Encode and add shared embeddings `(N, d)`; arguments as in :meth:`CodeBindIndex.add`."""
        if codebook is not None:
            self.check_codebook(codebook)
        self.add_codes(self.encode(embeddings), ids, metadata)

    def add_codes(self, codes: torch.Tensor, ids: Iterable | None = None, metadata: list[dict] | None = None,
                  codebook=None) -> None:  # fmt: skip
        """Add precomputed codes `(N, m)`, each to the list of its decoded embedding's nearest centroid."""
        if codebook is not None:
            self.check_codebook(codebook)
        if not self.is_trained:
            raise ValueError("the index is not trained: call train(sample_embeddings) or train_codes(codes) first")
        self._check_usable()
        # A scratch flat index checks codes, ids (unique within the batch) and metadata (dicts, JSON) as the flat
        # index does, and packs the codes.
        scratch = CodeBindIndex(self.codebook, self.embed_dim, backend="torch")
        n = len(self)
        scratch.add_codes(codes, [str(n + i) for i in range(len(codes))] if ids is None else ids, metadata)
        clashes = self._clashes(scratch.ids)
        if clashes:
            raise ValueError(f"ids must be unique; already present or repeated: {clashes[:5]}")
        codes = torch.as_tensor(codes).long()
        lists = assign_lists(lambda start, stop: self._codec.decode(codes[start:stop]), len(codes), self.centroids)
        self._pending.append(scratch.packed_codes, lists, scratch.ids, None if metadata is None else scratch.metadata)
        self._held.add(scratch.ids)
        self._faiss_ivf = self._faiss_flat = None  # rows move when the buffer is merged; rebuilt on demand

    def _clashes(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` already held (stored or pending), in their order: the hashes name candidates, the ids
        confirm them (a scan, only when some hash is held)."""
        if self._held is None:
            self._held = IdHashes(chain(self._ids, self._pending.ids))
        candidates = {item for item, hit in zip(ids, self._held.maybe_held(ids)) if hit}
        held = {item for item in chain(self._ids, self._pending.ids) if item in candidates} if candidates else set()
        return [item for item in ids if item in held]

    def remove(self, ids: Iterable) -> int:
        """Remove items by id; returns how many were removed. Unknown ids raise a `KeyError` naming them."""
        gone = {str(i) for i in ids}
        self._consolidate()
        keep = np.fromiter((item not in gone for item in self._ids), dtype=bool, count=len(self._ids))
        unknown = sorted(gone.difference(self._ids[r] for r in np.flatnonzero(~keep).tolist()))
        if unknown:
            raise KeyError(f"ids not in the index: {unknown[:10]}{' …' if len(unknown) > 10 else ''}")
        rows = np.flatnonzero(keep)
        lists = torch.repeat_interleave(torch.arange(self.num_lists), self._offsets.diff())
        kept = torch.from_numpy(keep)
        self._offsets = _offsets_of(torch.bincount(lists[kept], minlength=self.num_lists))
        self._packed = self._packed[kept]
        self._ids = self._ids.take(rows)
        if self._metadata is not None:
            self._metadata = [self._metadata[r] for r in rows.tolist()]
        self._held = None  # rebuilt from the kept ids by the next add
        self._faiss_ivf = self._faiss_flat = None
        return len(gone)

    def _consolidate(self) -> None:
        """Merge the buffer of added items into the grouped storage: one counting sort into a new array; each
        list keeps its stored items first, then the added ones in the order they came.

        Each merged batch is freed at once (no second copy of the codes stays resident), so a merge cut short
        (an error, ``KeyboardInterrupt``) loses items: the index then refuses further use rather than answer
        without them.
        """
        self._check_usable()
        if not len(self._pending):
            return
        try:
            self._merge()
        except BaseException:
            self._broken = True
            raise

    def _check_usable(self) -> None:
        if self._broken:
            raise RuntimeError("this index lost items when merging its added items was interrupted; load or rebuild it")

    def _merge(self) -> None:
        old_counts = self._offsets.diff()
        stored = torch.repeat_interleave(torch.arange(self.num_lists, dtype=torch.int32), old_counts)
        batches = [(self._packed, stored, self._metadata), *self._pending.batches()]
        counts = old_counts + sum(torch.bincount(lists, minlength=self.num_lists) for _, lists, _ in batches[1:])
        offsets = _offsets_of(counts)
        total = int(offsets[-1])
        packed = torch.empty(total, self.bytes_per_item, dtype=torch.uint8)
        any_metadata = any(chunk_meta is not None for _, _, chunk_meta in batches)
        metadata = [None] * total if any_metadata else None  # filled in place: no object array and list copy of it
        sources = IdColumn.concat([self._ids, self._pending.ids])  # stored ids, then the added ones in order
        source_of = torch.empty(total, dtype=torch.long)  # the source row each merged row comes from
        fill, done = offsets[:-1].clone(), 0
        self._packed, self._ids, self._metadata = None, None, None
        self._pending = AddBuffer(self.bytes_per_item)
        for i, (chunk, lists, chunk_meta) in enumerate(batches):
            batches[i] = None  # free each batch once merged
            order = lists.argsort(stable=True)
            per_list = torch.bincount(lists, minlength=self.num_lists)
            first = _offsets_of(per_list)[:-1]
            sorted_lists = lists[order]
            target = torch.empty_like(order)  # where each row of the batch goes, in the batch's own order
            target[order] = fill[sorted_lists] + torch.arange(len(order)) - first[sorted_lists]
            packed.index_copy_(0, target, chunk)  # no sorted copy of the batch
            source_of[target] = torch.arange(done, done + len(order))
            if chunk_meta is not None:  # else the entries stay None (no metadata)
                _scatter(metadata, target, chunk_meta)
            fill += per_list
            done += len(order)
        self._packed, self._offsets, self._metadata = packed, offsets, metadata
        self._ids = sources.take(source_of.numpy())

    # ------------------------------------------------------------------ search
    def _check_nprobe(self, nprobe) -> int:
        if isinstance(nprobe, bool) or not isinstance(nprobe, int) or not 1 <= nprobe <= self.num_lists:
            raise ValueError(f"nprobe must be an integer in [1, {self.num_lists}] (num_lists), got {nprobe!r}")
        return nprobe

    def _prepare(self, queries, k, codebook) -> torch.Tensor:
        """Checks shared by both searches; returns the unit queries `(Q, d)`."""
        if codebook is not None:
            self.check_codebook(codebook)
        queries = self._codec._check_vectors(queries, "queries")
        self._consolidate()
        if len(self) == 0:
            raise ValueError("the index is empty; add items before searching")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self):
            raise ValueError(f"k must be an integer in [1, {len(self)}] (the number of items in the index), got {k!r}")
        norms = queries.norm(dim=-1)
        if (norms == 0).any():
            zero = (norms == 0).nonzero().squeeze(1).tolist()[:10]
            raise ValueError(f"queries must be non-zero to be normalised; rows {zero} are zero")
        return queries / norms[:, None]

    def _results(self, sums: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, list[list[str | None]]]:
        scores = (sums / math.sqrt(self.num_subvectors)).masked_fill(rows < 0, float("-inf"))
        return scores, [[self._ids[r] if r >= 0 else None for r in row] for row in rows.tolist()]

    def search(
        self, queries: torch.Tensor, k: int = 10, nprobe: int | None = None, codebook=None
    ) -> tuple[torch.Tensor, list[list[str | None]]]:
        """Top-``k`` items by ``cos(query, decoded item)`` among the lists of the ``nprobe`` centroids nearest to each
        query (default: :attr:`nprobe`); float queries `(Q, d)` or `(d,)`.

        Returns:
            `(scores, ids)`: `(Q, k)` scores, best first, and the hits' ids. When the probed lists hold fewer than
            ``k`` items the missing hits have score ``-inf`` and id `None`.
        """
        queries = self._prepare(queries, k, codebook)
        nprobe = self._check_nprobe(self.nprobe if nprobe is None else nprobe)
        if self.backend == "faiss":
            if self._faiss_ivf is None:
                self._faiss_ivf = FaissIVFBackend(self.codebook, self.centroids, self.num_subvectors, self.bits_per_code)
                lists = torch.repeat_interleave(torch.arange(self.num_lists), self._offsets.diff())
                for start in range(0, len(self._ids), _FAISS_ADD_CHUNK):
                    stop = min(start + _FAISS_ADD_CHUNK, len(self._ids))
                    self._faiss_ivf.add(self._packed[start:stop], lists[start:stop], torch.arange(start, stop))
            sums, rows = self._faiss_ivf.search(queries, k, nprobe)
        else:
            probes = probe_lists(queries, self.centroids, nprobe)
            sums, rows = ivf_torch_search(queries, probes, self._packed, self._offsets, self.codebook,
                                          self.bits_per_code, k)  # fmt: skip
        return self._results(sums, rows)

    def search_exhaustive(self, queries: torch.Tensor, k: int = 10, codebook=None) -> tuple[torch.Tensor, list[list[str]]]:
        """The flat index's search over every stored item (the lists are ignored): the reference for recall."""
        queries = self._prepare(queries, k, codebook)
        if self.backend == "faiss":
            if self._faiss_flat is None:
                self._faiss_flat = FaissPQBackend(self.codebook, self.num_subvectors, self.bits_per_code)
                self._faiss_flat.add(self._packed)
            sums, rows = self._faiss_flat.search(queries, k)
        else:
            sums, rows = torch_search(queries, self._packed, self.codebook, self.bits_per_code, k)
        return self._results(sums, rows)

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {
            "format": IVF_FORMAT,
            "version": IVF_VERSION,
            "embed_dim": self.embed_dim,
            "codebook_size": self.codebook_size,
            "codevector_dim": self.codevector_dim,
            "bits_per_code": self.bits_per_code,
            "bytes_per_item": self.bytes_per_item,
            "num_lists": self.num_lists,
            "nprobe": self.nprobe,
            "count": len(self._ids),
            "codebook_sha256": self.fingerprint,
            "centroids_sha256": codebook_fingerprint(self.centroids),
            "info": self.info,
            "metadata": self._metadata,
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``index.json`` (with the metadata) + ``codes.safetensors`` (grouped packed codes and list offsets) +
        ``ids.safetensors`` (ids' UTF-8 bytes and end offsets) + ``codebook.safetensors`` +
        ``centroids.safetensors`` + ``checksums.json`` (their sha256), atomically (as :meth:`CodeBindIndex.save`)."""
        if not self.is_trained:
            raise ValueError("the index is not trained; there is nothing to save yet")
        self._consolidate()

        def write(staging: Path) -> None:
            save_file({"codes": self._packed.contiguous(), "list_offsets": self._offsets}, staging / CODES_FILE)
            save_numpy_file({"id_bytes": self._ids.data, "id_ends": self._ids.ends}, staging / IDS_FILE)
            save_file({"codebook": self.codebook}, staging / CODEBOOK_FILE)
            save_file({"centroids": self.centroids}, staging / CENTROIDS_FILE)
            with open(staging / INDEX_CONFIG, "w") as config_file:  # streamed: a million entries never held as text
                json.dump(self._config(), config_file)
            write_checksum_list(staging, _CHECKED, CHECKSUMS_FILE)

        write_dir_atomically(directory, write, replaceable=_FILES)

    @classmethod
    def load(cls, directory: str | os.PathLike, backend: str = "auto", codebook=None, mmap: bool = True):
        """Load an index written by :meth:`save`; the codes stay memory-mapped unless ``mmap=False``.

        ``codebook`` (tensor, quantizer or model), if given, must match the index's.
        """
        directory = Path(directory)
        for name in (INDEX_CONFIG, CODES_FILE, CODEBOOK_FILE, CENTROIDS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} is missing; {directory} is not a CodeBindIVFIndex folder")
        config = json.loads((directory / INDEX_CONFIG).read_text())
        if config.get("format") != IVF_FORMAT or config.get("version") != IVF_VERSION:
            raise ValueError(
                f"{directory / INDEX_CONFIG}: format {config.get('format')!r} version {config.get('version')!r}; "
                f"expected {IVF_FORMAT!r} version {IVF_VERSION}"
                + (" (version 1, from before ids moved to ids.safetensors: rebuild it)" if config.get("version") == 1
                   else "")  # fmt: skip
            )
        if not (directory / IDS_FILE).is_file():
            raise FileNotFoundError(f"{directory / IDS_FILE} is missing; the index's ids are in it")
        verify_checksum_list(directory, CHECKSUMS_FILE, what="IVF index")
        try:
            stored_codebook = load_file(directory / CODEBOOK_FILE)["codebook"]
            centroids = load_file(directory / CENTROIDS_FILE)["centroids"]
            with safe_open(directory / CODES_FILE, framework="pt") as codes_file:
                packed, offsets = codes_file.get_tensor("codes"), codes_file.get_tensor("list_offsets")
            with safe_open(directory / IDS_FILE, framework="np") as ids_file:
                ids = IdColumn(ids_file.get_tensor("id_bytes"), ids_file.get_tensor("id_ends"))
        except (SafetensorError, KeyError) as error:
            raise ValueError(f"{directory}: unreadable or incomplete safetensors file ({error})") from None
        index = cls(stored_codebook, config["embed_dim"], config["num_lists"], backend=backend, info=config.get("info"),
                    nprobe=config["nprobe"])  # fmt: skip
        _check_stored(index, config, directory, packed, offsets, centroids, ids)
        index.centroids = centroids
        index._packed, index._offsets = (packed, offsets) if mmap else (packed.clone(), offsets.clone())
        index._ids, index._metadata, index._held = ids, config["metadata"], None
        if codebook is not None:
            index.check_codebook(codebook)
        return index

    def push_to_hub(self, repo_id: str, private: bool | None = None, commit_message: str = "Upload CodeBind IVF index",
                    token: str | None = None, revision: str | None = None):  # fmt: skip
        """Save to a temporary folder and upload it as one commit to a Hub model repo; returns the ``CommitInfo``."""

        def write(tmp: Path) -> Path:
            self.save(tmp / "index")
            return tmp / "index"

        return push_folder(write, repo_id, token=token, private=private, commit_message=commit_message,
                           revision=revision)  # fmt: skip

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | os.PathLike, revision: str | None = None, backend: str = "auto",
                        codebook=None, token: str | None = None, mmap: bool = True) -> CodeBindIVFIndex:  # fmt: skip
        """Load from a local folder or a Hub repo written by :meth:`push_to_hub`."""
        if Path(repo_id_or_dir).is_dir():
            return cls.load(repo_id_or_dir, backend, codebook, mmap)
        folder = download_snapshot(str(repo_id_or_dir), list(_FILES), revision=revision, token=token)
        return cls.load(folder, backend, codebook, mmap)


def _offsets_of(counts: torch.Tensor) -> torch.Tensor:
    """List offsets `(L + 1,)` from list sizes `(L,)`."""
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


def _scatter(out: list, rows: torch.Tensor, values: list, step: int = 1 << 16) -> None:
    """``out[rows[i]] = values[i]``, converting ``step`` rows to Python ints at a time."""
    for start in range(0, len(values), step):
        for row, value in zip(rows[start : start + step].tolist(), values[start : start + step]):
            out[row] = value


def _check_ids(ids: IdColumn, count: int, path: Path) -> None:
    """``count`` unique ids: int64 end offsets non-decreasing up to the byte count, the bytes valid UTF-8."""
    ends = ids.ends
    if (ids.data.dtype != np.uint8 or ends.dtype != np.int64 or ids.data.ndim != 1 or ends.shape != (count,)
            or (count and (int(ends[0]) < 0 or int(ends[-1]) != len(ids.data) or bool((np.diff(ends) < 0).any())))
            or (not count and len(ids.data))):  # fmt: skip
        raise ValueError(f"{path}: expected {count} ids as uint8 bytes and {count} non-decreasing int64 end offsets")
    try:
        repeats = ids.has_repeats()  # decodes every id, in chunks
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: ids are not valid UTF-8 ({error})") from None
    if repeats:
        raise ValueError(f"{path}: expected {count} unique ids; some repeat")


def _check_stored(index: CodeBindIVFIndex, config: dict, directory: Path, packed, offsets, centroids, ids) -> None:
    """The checks of :meth:`CodeBindIVFIndex.load`: fingerprints, shapes, offsets, ids, code range."""
    if index.fingerprint != config["codebook_sha256"]:
        raise ValueError(
            f"{directory / CODEBOOK_FILE} has sha256 {index.fingerprint[:16]}… but {INDEX_CONFIG} records "
            f"{config['codebook_sha256'][:16]}…; the index is corrupted"
        )
    expected_centroids = (index.num_lists, index.embed_dim)
    if tuple(centroids.shape) != expected_centroids or codebook_fingerprint(centroids) != config["centroids_sha256"]:
        raise ValueError(
            f"{directory / CENTROIDS_FILE}: expected centroids of shape {expected_centroids} with the sha256 recorded "
            f"in {INDEX_CONFIG}; got shape {tuple(centroids.shape)}; the index is corrupted"
        )
    count = config["count"]
    if packed.dtype != torch.uint8 or tuple(packed.shape) != (count, index.bytes_per_item):
        raise ValueError(
            f"{directory / CODES_FILE}: expected uint8 codes of shape {(count, index.bytes_per_item)}; got "
            f"{packed.dtype} {tuple(packed.shape)}"
        )
    if (offsets.dtype != torch.long or tuple(offsets.shape) != (index.num_lists + 1,) or int(offsets[0]) != 0
            or int(offsets[-1]) != count or bool((offsets.diff() < 0).any())):  # fmt: skip
        raise ValueError(
            f"{directory / CODES_FILE}: list_offsets must be {index.num_lists + 1} non-decreasing int64 from 0 to "
            f"{count}; the index is corrupted"
        )
    if config["metadata"] is not None and len(config["metadata"]) != count:
        got = len(config["metadata"])
        raise ValueError(f"{directory / INDEX_CONFIG}: expected {count} metadata entries, got {got}")
    _check_ids(ids, count, directory / IDS_FILE)
    if index.codebook_size < 1 << index.bits_per_code:  # some bit patterns are no code: check (in chunks)
        for start in range(0, count, 1 << 16):
            codes = unpack_codes(packed[start : start + (1 << 16)], index.num_subvectors, index.bits_per_code)
            if codes.numel() and int(codes.max()) >= index.codebook_size:
                raise ValueError(
                    f"{directory / CODES_FILE}: codes up to {int(codes.max())} but K={index.codebook_size}; corrupted"
                )


__all__ = ["CodeBindIVFIndex"]
