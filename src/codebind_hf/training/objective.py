"""The path objective from tower outputs, shared by live towers and the frozen-feature cache.

`CodeBindModel.forward(return_loss=True)` runs every tower; with cached bridge features there is no tower to
run, so training builds the `ModalityEncoding`s itself from pooled tower outputs (`encode_tower_outputs`, the
same computation as ``CodeBindModel._encode``) and calls `compute_path_loss`. It also returns what the
codebook life cycle needs: the pre-quantisation head outputs and their code indices (`CodebookRecord`).

`ProjectorObjective` is the projector-only mode (``path.mode: projector``): the target's MLP projector against
each bridge's frozen embedding with symmetric InfoNCE, nothing else. Both objectives take per-row pair grades
(``data.columns.grade``) and turn them into soft InfoNCE targets with `grade_targets`.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..losses.functional import info_nce
from ..modeling_codebind import CodeBindModel, ModalityEncoding
from ..losses.objective import compute_path_loss


class CodebookRecord(NamedTuple):
    """Inputs of one codebook in one forward: head outputs ``z`` `(N, d)` (detached) and ``indices`` `(N, d // d*)`."""

    book: str  # "shared" or "specific.<modality>"
    modality: str
    z: torch.Tensor
    indices: torch.Tensor


def tower_outputs(
    model: CodeBindModel, modality: str, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None, with_tokens: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled token `(batch, hidden)` and, with ``with_tokens``, the patch tokens `(batch, patches, hidden)`."""
    tower = model.towers[modality]
    out = tower(inputs, attention_mask=attention_mask if modality == "text" else None)
    hidden = out.last_hidden_state
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), out.pooled_index]
    return pooled, (hidden[:, tower.num_prefix_tokens :] if with_tokens else None)


def encode_tower_outputs(
    model: CodeBindModel,
    modality: str,
    path: str,
    pooled: torch.Tensor,
    patch_tokens: torch.Tensor | None = None,
    with_specific: bool | None = None,
    return_distances: bool = True,
) -> tuple[ModalityEncoding, list[CodebookRecord]]:
    """Heads -> codebooks of ``path`` for pooled tower outputs `(batch, hidden)` (+ optional patch tokens).

    Returns the encoding the path loss takes and one `CodebookRecord` per quantisation.
    """
    if with_specific is None:
        with_specific = model.config.has_specific(modality)
    books = model.quantizers[path]
    shared = model.shared_heads[modality](pooled)
    shared_q = books.shared(shared, return_distances=return_distances)
    encoding = ModalityEncoding(F.normalize(shared_q.quantized, dim=-1), None, shared_q=shared_q)
    commitment = [shared_q.commitment_loss]
    records = [CodebookRecord("shared", modality, shared.detach(), shared_q.indices)]
    if with_specific:
        specific = model.specific_heads[path][modality](pooled)
        specific_q = books.specific_for(modality)(specific, return_distances=return_distances)
        encoding.specific, encoding.specific_q = F.normalize(specific_q.quantized, dim=-1), specific_q
        commitment.append(specific_q.commitment_loss)
        records.append(CodebookRecord(f"specific.{modality}", modality, specific.detach(), specific_q.indices))
    if patch_tokens is not None:
        shared_z = model.shared_heads[modality](patch_tokens)
        specific_z = model.specific_heads[path][modality](patch_tokens)
        shared_tok = books.shared(shared_z)
        specific_tok = books.specific_for(modality)(specific_z)
        encoding.shared_tokens = F.normalize(shared_tok.quantized, dim=-1)
        encoding.specific_tokens = F.normalize(specific_tok.quantized, dim=-1)
        commitment += [shared_tok.commitment_loss, specific_tok.commitment_loss]
        for name, z, q in (("shared", shared_z, shared_tok), (f"specific.{modality}", specific_z, specific_tok)):
            records.append(CodebookRecord(name, modality, z.detach().flatten(0, 1), q.indices.flatten(0, 1)))
    encoding.commitment = torch.stack(commitment).sum()
    return encoding, records


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
    >>> from codebind_hf.training.objective import grade_targets
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
        decoder = self.model.decoder
        if decoder is None:
            return set()
        return {m for m in live if self.model.config.has_specific(m) and m in decoder.heads}

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
        outputs = _pooled_outputs(self, inputs, attention_mask, cached or {}, self.token_modalities(set(inputs)))
        # Heads, code assignment and losses in float32: nearest-code search and log-sum-exps are precision
        # sensitive (and torch.pdist has no bfloat16 kernel).
        device_type = next(iter(outputs.values()))[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            encodings, records = {}, []
            for modality, (pooled, patches) in outputs.items():
                patches = None if patches is None else patches.float()
                encodings[modality], recs = encode_tower_outputs(self.model, modality, self.path, pooled.float(), patches)
                records += recs
            float_inputs = {m: x.float() if x.is_floating_point() else x for m, x in inputs.items()}
            targets = None if grades is None else grade_targets(grades)
            loss, breakdown = compute_path_loss(self.model, self.path, encodings, float_inputs, targets)
        return {"loss": loss, "breakdown": breakdown, "records": records}


def _pooled_outputs(objective, inputs: dict, attention_mask, cached: dict, tokens_for: set) -> dict:
    """``{modality: (pooled, patch tokens or None)}`` from live towers (no grad when frozen) or the cache."""
    frozen = objective.frozen_towers()
    outputs = {}
    for modality in objective.modalities:
        if modality in inputs:  # towers run under the caller's autocast (mixed precision)
            with torch.no_grad() if modality in frozen else contextlib.nullcontext():
                outputs[modality] = tower_outputs(objective.model, modality, inputs[modality], attention_mask, modality in tokens_for)
        elif modality in cached:
            outputs[modality] = (cached[modality], None)
        else:
            raise ValueError(f"path {objective.path!r}: no inputs and no cached features for modality {modality!r}")
    return outputs


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
        outputs = _pooled_outputs(self, inputs, attention_mask, cached or {}, set())
        device_type = outputs[self.path][0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            heads = self.model.shared_heads
            projected = F.normalize(heads[self.path](outputs[self.path][0].float()), dim=-1)
            with torch.no_grad():
                frozen = {b: F.normalize(heads[b](outputs[b][0].float()), dim=-1) for b in self.bridges}
            targets = None if grades is None else grade_targets(grades)
            align = torch.stack([info_nce(projected, frozen[b], self.temperature, targets) for b in self.bridges]).sum()
        return {"loss": self.align_weight * align, "breakdown": {"align": align}, "records": []}


__all__ = ["CodebookRecord", "tower_outputs", "encode_tower_outputs", "grade_targets", "PathObjective", "ProjectorObjective"]
