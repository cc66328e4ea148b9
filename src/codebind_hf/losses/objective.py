"""The CodeBind objective of one bridge-target path, from the loss functions in `functional`.

`compute_path_loss` takes the `ModalityEncoding`s of a batch and returns the weighted loss and its terms; the model's
``forward(return_loss=True)`` calls it. `PathObjective` is the trainer's forward of a path: it runs the live towers
and/or takes pooled outputs from the frozen-feature cache, goes through the model's one encoder path
(``CodeBindModel.tower_outputs`` / ``encode_tower_outputs``) and also returns what the codebook life cycle needs
(`CodebookRecord`). `ProjectorObjective` is the projector-only mode (``path.mode: projector``): the target's MLP
projector against each bridge's frozen embedding with symmetric InfoNCE, nothing else. Both objectives take per-row
pair grades (``data.columns.grade``) and turn them into soft InfoNCE targets with `grade_targets`.

This module needs the model's types for annotations only, so the model can import it at load time.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .functional import (
    codevector_contrastive,
    codevector_uniformity,
    cross_modal_code_matching,
    info_nce,
    orthogonality,
    reconstruction,
    uniformity,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..modeling_codebind import CodeBindModel, ModalityEncoding


class CodebookRecord(NamedTuple):
    """Inputs of one codebook in one forward: head outputs ``z`` `(N, d)` (detached) and ``indices`` `(N, d // d*)`;
    ``tokens`` marks patch-token rows (else pooled: CLS / EOS)."""

    book: str  # "shared", "shared.<modality>" or "specific.<modality>"
    modality: str
    z: torch.Tensor
    indices: torch.Tensor
    tokens: bool = False


def _mean(values: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack(values).mean() if values else like.new_zeros(())


def alignment_pairs(target: str, bridges: list[str]) -> list[tuple[str, str]]:
    """Pairs aligned by InfoNCE: target with every bridge, plus image-text in the bridge."""
    pairs = [(target, bridge) for bridge in bridges]
    if "vision" in bridges and "text" in bridges:
        pairs.append(("vision", "text"))
    return pairs


def code_matching_pairs(target: str, bridges: list[str]) -> list[tuple[str, str]]:
    """The same pairs ordered as Eq. (6) and the authors' code take them: bridge first (the row ``a_i`` whose
    code-matching scores are normalised over the other modality), then image before text."""
    return [(b, a) if a == target else (a, b) for a, b in alignment_pairs(target, bridges)]


def compute_path_loss(
    model: CodeBindModel,
    path: str,
    encodings: dict[str, ModalityEncoding],
    inputs: dict[str, torch.Tensor],
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted CodeBind loss of ``path`` and the unweighted losses by name (method doc §3).

    ``align``: symmetric InfoNCE of quantised shared CLS embeddings, the mean over the pairs (as the authors' code,
    whose weights App. Table 1 reports); ``cm``: cross-modal code matching (Eq. 6, one direction), mean over the
    pairs; ``vq``: commitment, summed over codebooks; ``ctr``: codevector contrastive on every codebook's pooled
    distances (mean; the official variant sums, as that code does); ``cuni``: codevector uniformity per codebook
    (mean; EMA codebooks are buffers, so it is monitored and carries no gradient, as in the authors' code);
    ``orth`` and ``uni``: over modalities with a specific part (mean); ``recon``: decoder MSE to the input patches
    (mean). ``variants.code_loss_gradients: official`` detaches ``cm`` and ``ctr`` from the heads. The ablations
    drop terms: without codebooks ``vq``, ``ctr``, ``cuni`` and ``cm``; without decoupling ``orth``, ``uni`` and
    ``recon``; without reconstruction ``recon``. ``targets`` `(N, N)`, *optional*: graded labels of the
    target-bridge pairs (`info_nce`'s soft targets); the image-text term inside the bridge keeps hard labels.
    """
    config = model.config.path_config(path)
    variants = config.variants
    if path not in encodings:
        raise ValueError(f"Path {path!r} needs inputs of its target modality {path!r}; got {sorted(encodings)}")
    bridges = [b for b in config.bridges if b in encodings]
    if not bridges:
        raise ValueError(f"Path {path!r} needs inputs of at least one bridge {config.bridges}; got {sorted(encodings)}")
    ref = encodings[path].shared
    pairs = alignment_pairs(path, bridges)
    losses: dict[str, torch.Tensor] = {}
    losses["align"] = torch.stack(
        [info_nce(encodings[a].shared, encodings[b].shared, config.temperature, targets if a == path else None) for a, b in pairs]
    ).mean()
    used = [encodings[m] for m in (*bridges, path)]
    if config.use_codebooks:
        # The authors' code quantises detached inputs for these two terms: no gradient reaches the heads.
        detach = variants["code_loss_gradients"] == "official"

        def dist(q):
            return q.distances.detach() if detach else q.distances

        losses["cm"] = _mean(
            [cross_modal_code_matching(dist(encodings[a].shared_q), dist(encodings[b].shared_q), variants["code_matching"])
             for a, b in code_matching_pairs(path, bridges)],
            ref,
        )
        losses["vq"] = torch.stack([enc.commitment for enc in used]).sum()
        quantized = [q for enc in used for q in (enc.shared_q, enc.specific_q) if q is not None]
        contrastive = [codevector_contrastive(dist(q), variants["codevector_contrastive"]) for q in quantized]
        losses["ctr"] = torch.stack(contrastive).sum() if variants["codevector_contrastive"] == "official" else _mean(contrastive, ref)
        books = model.quantizers[path]
        names = {books.shared_name(m) for m in (*bridges, path)} | {f"specific.{m}" for m in (*bridges, path)}
        codebooks = [book.unit_codebook() for name, book in sorted(books.codebooks().items()) if name in names]
        losses["cuni"] = _mean([codevector_uniformity(c) for c in codebooks], ref)
    with_specific = [m for m in (*bridges, path) if encodings[m].specific is not None]
    if with_specific:
        if variants["orthogonality"] == "paper":
            orth = [orthogonality(encodings[m].shared, encodings[m].specific) for m in with_specific]
        else:
            orth = [_official_orthogonality(encodings[m]) for m in with_specific]
        losses["orth"] = _mean(orth, ref)
        losses["uni"] = _mean([uniformity(encodings[m].specific) for m in with_specific], ref)
    if config.use_reconstruction and with_specific:
        recon = []
        for m in with_specific:
            enc = encodings[m]
            if enc.shared_tokens is None or model.decoder is None:
                continue
            cls = torch.cat([enc.shared, enc.specific], dim=-1)
            pred = model.decoder(m, torch.cat([enc.shared_tokens, enc.specific_tokens], dim=-1), cls)
            recon.append(reconstruction(pred, model.towers[m].patchify(inputs[m]).to(pred.dtype)))
        losses["recon"] = _mean(recon, ref)
    weights = config.loss_weights
    total = sum(weights.get(name, 0.0) * value for name, value in losses.items())
    return total, losses


def _official_orthogonality(enc: ModalityEncoding) -> torch.Tensor:
    """Token-level form when tokens are available (CLS + patches), else on the pooled token alone."""
    shared, specific = enc.shared[:, None], enc.specific[:, None]
    if enc.shared_tokens is not None:
        shared = torch.cat([shared, enc.shared_tokens], dim=1)
        specific = torch.cat([specific, enc.specific_tokens], dim=1)
    return orthogonality(shared, specific, variant="official")


def grade_targets(grades: torch.Tensor) -> torch.Tensor:
    """Soft InfoNCE targets `(N, N)` from per-row pair grades `(N,)` in ``[0, 1]`` (1 positive, 0.5 partial, 0 negative).

    ``T[i, i] = g_i`` and, for ``i != j``, ``T[i, j] = ((1 - g_i) + (1 - g_j)) / (2 (N - 1))``: a row keeps the share
    ``g_i`` of its mass on its own partner and spreads the rest over the other rows, like label smoothing of
    strength ``1 - g``. All-ones grades give the identity (plain InfoNCE); a negative pair (``g = 0``) puts no
    mass on its partner, which is then pushed below the in-batch negatives. `info_nce` normalises rows and
    columns; every row and column sum is positive for ``N >= 2``.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.losses.objective import grade_targets
    >>> grade_targets(torch.tensor([1.0, 0.5, 0.0]))
    tensor([[1.0000, 0.1250, 0.2500],
            [0.1250, 0.5000, 0.3750],
            [0.2500, 0.3750, 0.0000]])

    ```
    """
    if grades.ndim != 1 or grades.shape[0] < 2:
        raise ValueError(f"grades must have shape (N,) with N >= 2, got {tuple(grades.shape)}")
    if not torch.isfinite(grades).all() or (grades < 0).any() or (grades > 1).any():
        raise ValueError(f"grades must lie in [0, 1], got {grades.tolist()}")
    slack = (1 - grades.float()) / (2 * (grades.shape[0] - 1))
    targets = slack[:, None] + slack[None, :]
    return targets.fill_diagonal_(0) + torch.diag(grades.float())


class PathObjective(nn.Module):
    """The training forward of one path: live towers and/or cached pooled features -> loss terms + records.

    Wrapping the model in one module lets Accelerate/DDP see the whole computation as one ``forward``.

    Args:
        model ([`CodeBindModel`]): the model (its path ``path`` must exist).
        path (`str`): the target modality.
    """

    def __init__(self, model: CodeBindModel, path: str):
        super().__init__()
        self.model = model
        self.path = path
        self.modalities = model.config.path_modalities(path)

    def frozen_towers(self) -> list[str]:
        return [m for m in self.modalities if not any(p.requires_grad for p in self.model.towers[m].parameters())]

    def train(self, mode: bool = True):
        super().train(mode)
        for modality in self.frozen_towers():  # frozen towers never train (dropout, drop-path off)
            self.model.towers[modality].eval()
        return self

    def token_modalities(self, live: set[str]) -> set[str]:
        """Live modalities whose patch tokens are quantised and reconstructed (as in the model's forward)."""
        decoder, config = self.model.decoder, self.model.config
        if decoder is None or not config.paths[self.path]["use_reconstruction"]:
            return set()
        return {m for m in live if config.path_has_specific(self.path, m) and m in decoder.heads}

    def _pooled_outputs(self, inputs: dict, attention_mask: torch.Tensor | None, cached: dict, tokens_for: set) -> dict:
        """``{modality: (pooled, patch tokens or None)}`` from live towers (no grad when frozen) or the cache."""
        # A frozen tower still needs gradients when the path trains its own copy of one of its tensors (a CLS token).
        frozen = [m for m in self.frozen_towers() if not self.model.trains_path_owned(self.path, m)]
        outputs = {}
        for modality in self.modalities:
            if modality in inputs:  # towers run under the caller's autocast (mixed precision)
                mask = attention_mask if modality == "text" else None
                with torch.no_grad() if modality in frozen else contextlib.nullcontext():
                    outputs[modality] = self.model.tower_outputs(modality, inputs[modality], mask, modality in tokens_for,
                                                                 path=self.path)
            elif modality in cached:
                outputs[modality] = (cached[modality], None)
            else:
                raise ValueError(f"path {self.path!r}: no inputs and no cached features for modality {modality!r}")
        return outputs

    def forward(self, inputs: dict, attention_mask: torch.Tensor | None = None, cached: dict | None = None,
                grades: torch.Tensor | None = None) -> dict:
        """Compute the path loss.

        Args:
            inputs (`dict[str, torch.Tensor]`): processed inputs by modality (towers run here).
            attention_mask (`torch.Tensor`, *optional*): text attention mask.
            cached (`dict[str, torch.Tensor]`, *optional*): pooled tower outputs `(batch, hidden)` by modality.
            grades (`torch.Tensor` of shape `(batch,)`, *optional*): pair grades; soft targets of the target-bridge
                InfoNCE terms (`grade_targets`).

        Returns:
            `dict` with ``loss`` (weighted with the path config's weights), ``breakdown`` (unweighted terms) and
            ``records`` (list of `CodebookRecord`).
        """
        outputs = self._pooled_outputs(inputs, attention_mask, cached or {}, self.token_modalities(set(inputs)))
        # Heads, code assignment and losses in float32: nearest-code search and log-sum-exps are precision
        # sensitive (and torch.pdist has no bfloat16 kernel).
        device_type = next(iter(outputs.values()))[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            encodings, records = {}, []
            for modality, (pooled, patches) in outputs.items():
                patches = None if patches is None else patches.float()
                encodings[modality], recs = self.model.encode_tower_outputs(
                    modality, self.path, pooled.float(), patches, return_distances=True
                )
                records += recs
            float_inputs = {m: x.float() if x.is_floating_point() else x for m, x in inputs.items()}
            targets = None if grades is None else grade_targets(grades)
            loss, breakdown = compute_path_loss(self.model, self.path, encodings, float_inputs, targets)
        return {"loss": loss, "breakdown": breakdown, "records": records}


class ProjectorObjective(PathObjective):
    """Projector-only binding (EBind-style; our hard-alignment baseline): ``normalize(projector(target))`` against
    each bridge's frozen embedding ``normalize(shared_head(bridge))`` with symmetric InfoNCE, summed over bridges.

    No codebooks, specific heads or decoder: the projector is ``model.shared_heads[target]`` (a
    `codebind_hf.training.projector.ProjectorHead`), the only trainable module.

    Args:
        model ([`CodeBindModel`]): the model, with the projector attached.
        target (`str`): the target modality; bridges (`list[str]`); temperature (`float`);
        align_weight (`float`, *optional*, defaults to 1.0): weight of the summed InfoNCE in ``loss``.
    """

    def __init__(self, model: CodeBindModel, target: str, bridges: list[str], temperature: float, align_weight: float = 1.0):
        nn.Module.__init__(self)  # not PathObjective's: a projector run has no path in the model config
        self.model, self.path = model, target
        self.bridges = list(bridges)
        self.modalities = [*self.bridges, target]
        self.temperature, self.align_weight = temperature, align_weight

    def token_modalities(self, live: set[str]) -> set[str]:
        return set()

    def forward(self, inputs: dict, attention_mask: torch.Tensor | None = None, cached: dict | None = None,
                grades: torch.Tensor | None = None) -> dict:
        """``{"loss", "breakdown": {"align"}, "records": []}``; arguments as `PathObjective.forward`."""
        outputs = self._pooled_outputs(inputs, attention_mask, cached or {}, set())
        device_type = outputs[self.path][0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            heads = self.model.shared_heads
            projected = F.normalize(heads[self.path](outputs[self.path][0].float()), dim=-1)
            with torch.no_grad():
                frozen = {b: F.normalize(heads[b](outputs[b][0].float()), dim=-1) for b in self.bridges}
            targets = None if grades is None else grade_targets(grades)
            align = torch.stack([info_nce(projected, frozen[b], self.temperature, targets) for b in self.bridges]).sum()
        return {"loss": self.align_weight * align, "breakdown": {"align": align}, "records": []}


__all__ = [
    "CodebookRecord",
    "PathObjective",
    "ProjectorObjective",
    "alignment_pairs",
    "code_matching_pairs",
    "compute_path_loss",
    "grade_targets",
]
