"""What a [`~codebind_hf.index.ivf.CodeBindIVFIndex`] holds beside its codes: its ids as one byte column, the
buffer of items added since the last merge, and the membership of its ids (the clash check of every ``add``).

At a million items the index's own codes are 160 MB, so the bookkeeping beside them counts: a Python list of id
strings costs about 60 bytes an id (a 49-byte string object plus the list's pointer), a set of them about 40 more;
the id column here costs the id's UTF-8 bytes plus 8, the sorted hash arrays 8.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch

# Ids decoded (or gathered) at a time: bounds the transients of iterating and re-ordering a column.
_ID_CHUNK = 1 << 14


class IdColumn:
    """Ids as one UTF-8 byte buffer ``data`` `(total,)` uint8 and the end offset of each id ``ends`` `(N,)` int64.

    Strings are made only when read (:meth:`__getitem__`, :meth:`strings`, iteration in chunks); re-ordering
    (:meth:`take`) and joining (:meth:`concat`) work on the bytes. Lone surrogates round-trip (``surrogatepass``),
    so any Python ``str`` is stored exactly.

    Example:

    ```python
    >>> column = IdColumn.from_strings(["a", "bé", "cat"])
    >>> column[1], column.take([2, 0]).strings(), len(column.data)
    ('bé', ['cat', 'a'], 7)

    ```
    """

    def __init__(self, data: np.ndarray, ends: np.ndarray):
        self.data, self.ends = data, ends

    @classmethod
    def from_strings(cls, ids: Sequence[str]) -> IdColumn:
        data, lengths = _encode(ids)
        return cls(np.frombuffer(data, dtype=np.uint8), np.cumsum(lengths, dtype=np.int64))

    @classmethod
    def concat(cls, columns: Sequence[IdColumn]) -> IdColumn:
        columns = [column for column in columns if len(column)]
        if len(columns) <= 1:
            return columns[0] if columns else cls.from_strings([])
        shifts = np.cumsum([0] + [len(column.data) for column in columns[:-1]])
        ends = np.concatenate([column.ends + shift for column, shift in zip(columns, shifts)])
        return cls(np.concatenate([column.data for column in columns]), ends)

    def __len__(self) -> int:
        return len(self.ends)

    def _start(self, row: int) -> int:
        return int(self.ends[row - 1]) if row else 0

    def __getitem__(self, row: int) -> str:
        row = range(len(self))[row]  # negative rows, and an IndexError past the end
        return self.data[self._start(row) : int(self.ends[row])].tobytes().decode("utf-8", "surrogatepass")

    def strings(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Ids ``start .. stop - 1`` as a list of strings (default: all)."""
        stop = len(self) if stop is None else stop
        if stop <= start:
            return []
        first = self._start(start)
        blob = self.data[first : int(self.ends[stop - 1])].tobytes()
        bounds = (self.ends[start:stop] - first).tolist()
        return [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip([0, *bounds[:-1]], bounds)]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), _ID_CHUNK):
            yield from self.strings(start, min(start + _ID_CHUNK, len(self)))

    def take(self, rows) -> IdColumn:
        """The ids at ``rows`` (int array), in that order; the bytes are gathered ``_ID_CHUNK`` ids at a time."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.concatenate([np.zeros(1, np.int64), self.ends[:-1]])
        lengths = (self.ends - starts)[rows]
        ends = np.cumsum(lengths, dtype=np.int64)
        data = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
        for a in range(0, len(rows), _ID_CHUNK):
            b = min(a + _ID_CHUNK, len(rows))
            out_first = int(ends[a - 1]) if a else 0
            lens = lengths[a:b]
            item = np.repeat(np.arange(b - a), lens)  # the id each output byte belongs to
            within = np.arange(int(ends[b - 1]) - out_first) - (ends[a:b] - lens - out_first)[item]
            data[out_first : int(ends[b - 1])] = self.data[starts[rows[a:b]][item] + within]
        return IdColumn(data, ends)

    def has_repeats(self) -> bool:
        """Whether some id occurs twice: equal hashes name candidates, the ids confirm them."""
        return len(np.unique(_hashes(self))) < len(self) and len(set(self)) < len(self)

    def __eq__(self, other) -> bool:
        if not isinstance(other, IdColumn):
            return NotImplemented
        return np.array_equal(self.ends, other.ends) and np.array_equal(self.data, other.data)


def _encode(ids: Sequence[str]) -> tuple[bytes, np.ndarray]:
    """The UTF-8 bytes of ``ids`` joined, and each id's byte length `(N,)` int64."""
    joined = "".join(ids)
    if joined.isascii():  # one byte a character: no per-id encoding
        return joined.encode("ascii"), np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    encoded = [item.encode("utf-8", "surrogatepass") for item in ids]
    return b"".join(encoded), np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))


class AddBuffer:
    """Items added since the last merge: packed codes and list numbers copied into blocks of ``ROWS`` rows, the
    ids' bytes and end offsets appended to one ``bytearray`` and one ``array`` (each grows in place, as the blocks
    do: no small allocation per add), metadata to a list once an add has some (until then ``metadata`` is None: no
    list of Nones).

    A block (40 MiB of 160-byte codes) is past glibc's largest mmap threshold, so it gets a mapping of its own.
    Keeping every ``add``'s small arrays instead would pepper the heap between the encoder's large temporaries and
    stop it from shrinking: a million-item build then held several times its codes in RSS. List numbers are
    int32 (half of what int64 would hold beside 160-byte codes, and num_lists is far below 2**31).
    """

    ROWS = 1 << 18

    def __init__(self, width: int):
        self.width, self.fill = width, 0
        self.blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._id_bytes, self._id_ends = bytearray(), array("q")
        self.metadata: list[dict | None] | None = None

    def __len__(self) -> int:
        return len(self._id_ends)

    @property
    def ids(self) -> IdColumn:
        """The buffered ids, as a column viewing the buffer: drop it before the next :meth:`append` (which raises
        `BufferError` while a view exists rather than move the bytes under it)."""
        return IdColumn(np.frombuffer(self._id_bytes, dtype=np.uint8), np.frombuffer(self._id_ends, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return len(self) * (self.width + 4)

    def append(self, packed: torch.Tensor, lists: torch.Tensor, ids: list[str], metadata: list | None) -> None:
        held, (data, lengths) = len(self), _encode(ids)
        # First, so that a view of the ids still alive (BufferError) leaves the buffer as it was.
        self._id_ends.frombytes((np.cumsum(lengths, dtype=np.int64) + len(self._id_bytes)).tobytes())
        self._id_bytes += data
        done = 0
        while done < len(ids):
            if not self.blocks or self.fill == self.ROWS:
                codes = torch.empty(self.ROWS, self.width, dtype=torch.uint8)
                self.blocks.append((codes, torch.empty(self.ROWS, dtype=torch.int32)))
                self.fill = 0
            take = min(self.ROWS - self.fill, len(ids) - done)
            codes, numbers = self.blocks[-1]
            codes[self.fill : self.fill + take] = packed[done : done + take]
            numbers[self.fill : self.fill + take] = lists[done : done + take]
            self.fill, done = self.fill + take, done + take
        if metadata is not None and self.metadata is None:
            self.metadata = [None] * held
        if self.metadata is not None:
            self.metadata.extend([None] * len(ids) if metadata is None else metadata)

    def batches(self):
        """``(packed, lists, metadata)`` per block, in the order added (metadata None: none given)."""
        for b, (codes, numbers) in enumerate(self.blocks):
            rows = self.ROWS if b < len(self.blocks) - 1 else self.fill
            span = slice(b * self.ROWS, b * self.ROWS + rows)
            yield codes[:rows], numbers[:rows], None if self.metadata is None else self.metadata[span]


class IdHashes:
    """Which ids are held, as their 64-bit hashes in a few sorted int64 arrays: 8 bytes an id.

    New hashes form an array of their own; an array at most twice the size of the one after it is merged with it,
    so sizes at least double from the newest to the oldest (at most ``log2(N)`` arrays) and each hash is re-sorted
    ``O(log N)`` times. Python's ``hash`` of a string is salted per process, which is fine: the hashes are never
    saved. A hit is only a candidate (two ids may share a hash): :meth:`maybe_held` callers confirm on the ids.

    Example:

    ```python
    >>> held = IdHashes(["a", "b"])
    >>> held.add(["c"])
    >>> held.maybe_held(["b", "z", "c"]).tolist()
    [True, False, True]

    ```
    """

    def __init__(self, ids: Iterable[str] = ()):
        self.levels: list[np.ndarray] = []
        ids = iter(ids)  # hashed in chunks: no list of all the ids
        chunks = iter(lambda: list(islice(ids, _ID_CHUNK)), [])
        self._add_hashes(np.concatenate([np.zeros(0, np.int64), *map(_hashes, chunks)]))

    def add(self, ids: Sequence[str]) -> None:
        self._add_hashes(_hashes(ids))

    def _add_hashes(self, hashes: np.ndarray) -> None:
        self.levels.append(np.sort(hashes))
        while len(self.levels) > 1 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            newest = self.levels.pop()
            merged = np.concatenate([self.levels.pop(), newest])
            merged.sort()
            self.levels.append(merged)

    def maybe_held(self, ids: Sequence[str]) -> np.ndarray:
        """Boolean mask over ``ids``: True where an id held has the same hash (False: certainly not held)."""
        hashes = _hashes(ids)
        hit = np.zeros(len(hashes), dtype=bool)
        for level in self.levels:
            if len(level):
                at = np.searchsorted(level, hashes).clip(max=len(level) - 1)
                hit |= level[at] == hashes
        return hit


def _hashes(ids: Sequence[str]) -> np.ndarray:
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


__all__ = ["AddBuffer", "IdColumn", "IdHashes"]
