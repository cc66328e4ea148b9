"""What a [`~codebind_hf.index.ivf.CodeBindIVFIndex`] holds while it is being filled: the buffer of items added
since the last merge, and the membership of its ids (the clash check of every ``add``).

At a million items the index's own codes are 160 MB, so the bookkeeping beside them counts: a Python set of the
id strings costs about 40 bytes an id on top of the strings, the sorted hash arrays here 8.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


class AddBuffer:
    """Items added since the last merge: packed codes and list numbers copied into blocks of ``ROWS`` rows, ids
    appended to one list, metadata to another once an add has some (until then ``metadata`` is None: no list of
    Nones).

    A block (40 MiB of 160-byte codes) is past glibc's largest mmap threshold, so it gets a mapping of its own.
    Keeping every ``add``'s small arrays instead would pepper the heap between the encoder's large temporaries and
    stop it from shrinking: a million-item build then held several times its codes in RSS. List numbers are
    int32 (half of what int64 would hold beside 160-byte codes, and num_lists is far below 2**31).
    """

    ROWS = 1 << 18

    def __init__(self, width: int):
        self.width, self.fill = width, 0
        self.blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.ids: list[str] = []
        self.metadata: list[dict | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return len(self) * (self.width + 4)

    def append(self, packed: torch.Tensor, lists: torch.Tensor, ids: list[str], metadata: list | None) -> None:
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
            self.metadata = [None] * len(self.ids)
        if self.metadata is not None:
            self.metadata.extend([None] * len(ids) if metadata is None else metadata)
        self.ids.extend(ids)

    def batches(self):
        """``(packed, lists, ids, metadata)`` per block, in the order added (metadata None: none given)."""
        for b, (codes, numbers) in enumerate(self.blocks):
            rows = self.ROWS if b < len(self.blocks) - 1 else self.fill
            span = slice(b * self.ROWS, b * self.ROWS + rows)
            yield codes[:rows], numbers[:rows], self.ids[span], None if self.metadata is None else self.metadata[span]


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
        self.add(list(ids))

    def add(self, ids: list[str]) -> None:
        self.levels.append(np.sort(_hashes(ids)))
        while len(self.levels) > 1 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            newest = self.levels.pop()
            merged = np.concatenate([self.levels.pop(), newest])
            merged.sort()
            self.levels.append(merged)

    def maybe_held(self, ids: list[str]) -> np.ndarray:
        """Boolean mask over ``ids``: True where an id held has the same hash (False: certainly not held)."""
        hashes = _hashes(ids)
        hit = np.zeros(len(hashes), dtype=bool)
        for level in self.levels:
            if len(level):
                at = np.searchsorted(level, hashes).clip(max=len(level) - 1)
                hit |= level[at] == hashes
        return hit


def _hashes(ids: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


__all__ = ["AddBuffer", "IdHashes"]
