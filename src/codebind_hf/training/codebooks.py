"""The codebook life cycle of a path, run by the trainer (the model's forward never updates codebooks).

1. k-means init: the shared codebook on the TEXT shared-head outputs when text is a bridge (else on the first
   bridge's), each specific codebook on its modality's specific-head outputs (pooled and, when quantised,
   patch tokens), from the first ``kmeans_init_batches`` batches.
2. After every optimiser step: ``update_ema_`` then ``reinit_dead_codes_`` for every codebook, with the head
   outputs and indices recorded during that step's forward passes.

Every `CompositionalQuantizer` method used here is a collective under ``torch.distributed``; this class calls
each of them once per codebook per step on every process, in a fixed order, even when a process has no rows.
"""

from __future__ import annotations

import torch

from ..losses.objective import CodebookRecord
from ..modeling_codebind import CodeBindModel


class CodebookLifecycle:
    """k-means init, EMA updates, dead-code re-init and statistics of the codebooks of ``path``.

    Args:
        model ([`CodeBindModel`]): the (unwrapped) model.
        path (`str`): target modality of the path.
        update_ema (`bool`, *optional*, defaults to `True`), reinit_dead_codes (`bool`, *optional*, defaults to `True`).
    """

    def __init__(self, model: CodeBindModel, path: str, update_ema: bool = True, reinit_dead_codes: bool = True):
        self.model, self.path = model, path
        self.books = dict(sorted(model.quantizers[path].codebooks().items()))  # fixed order on every rank
        self.update_ema, self.reinit_dead_codes = update_ema, reinit_dead_codes
        bridges = model.config.path_config(path).bridges
        shared_source = "text" if "text" in bridges else bridges[0]
        # "shared" and "specific.<m>" / "shared.<m>" (a shared codebook per modality: initialised on that modality)
        self.init_sources = {name: (shared_source if name == "shared" else name.split(".", 1)[1]) for name in self.books}
        self.widths = {name: (model.config.embed_dim if name.startswith("shared")
                              else model.config.specific_width(name.split(".", 1)[1], path)) for name in self.books}

    def is_initialized(self) -> bool:
        return all(bool(book.initialized) for book in self.books.values())

    def _gather(self, records: list[CodebookRecord], name: str, modality: str | None = None, pooled_only: bool = False):
        """Concatenated ``(z, indices)`` of one codebook (float32), empty `(0, d)` when nothing was recorded."""
        picked = [r for r in records if r.book == name and (modality is None or r.modality == modality)
                  and not (pooled_only and r.tokens)]
        device = self.books[name].codebook.device
        if not picked:
            width = self.widths[name]
            m = width // self.books[name].codevector_dim
            return torch.zeros(0, width, device=device), torch.zeros(0, m, dtype=torch.long, device=device)
        z = torch.cat([r.z.reshape(-1, r.z.shape[-1]).float() for r in picked])
        indices = torch.cat([r.indices.reshape(-1, r.indices.shape[-1]) for r in picked])
        return z.to(device), indices.to(device)

    @torch.no_grad()
    def kmeans_init_(self, records: list[CodebookRecord], iters: int = 10, pooled_only: bool = False) -> None:
        """Initialise every codebook by spherical k-means on its init source's head outputs (all processes);
        ``pooled_only``: on the CLS / EOS outputs alone (``variants.kmeans_data: official``)."""
        for name, book in self.books.items():
            z, _ = self._gather(records, name, self.init_sources[name], pooled_only)
            book.kmeans_init_(z, iters=iters)

    @torch.no_grad()
    def step_(self, records: list[CodebookRecord]) -> dict[str, int]:
        """EMA update and dead-code re-init after an optimiser step; returns the number of re-initialised codes."""
        moved = {}
        for name, book in self.books.items():
            z, indices = self._gather(records, name)
            if self.update_ema:
                book.update_ema_(z, indices)
            if self.reinit_dead_codes:
                moved[name] = int(book.reinit_dead_codes_(z).sum())
        return moved

    def stats(self, records: list[CodebookRecord] | None = None) -> dict[str, float]:
        """Usage (fraction of codes used) and perplexity per codebook: since init, and in ``records`` if given."""
        out = {}
        for name, book in self.books.items():
            out[f"codebook/{name}/usage"] = book.usage()
            out[f"codebook/{name}/perplexity"] = book.perplexity()
            if records:
                _, indices = self._gather(records, name)
                if indices.numel():
                    out[f"codebook/{name}/batch_usage"] = book.usage(indices)
        return out


class NoCodebooks:
    """The life cycle of a run without codebooks (``path.mode: projector``): nothing to initialise or update."""

    def is_initialized(self) -> bool:
        return True

    def kmeans_init_(self, records: list[CodebookRecord], iters: int = 10, pooled_only: bool = False) -> None:
        return None

    def step_(self, records: list[CodebookRecord]) -> dict[str, int]:
        return {}

    def stats(self, records: list[CodebookRecord] | None = None) -> dict[str, float]:
        return {}


__all__ = ["CodebookLifecycle", "NoCodebooks"]
