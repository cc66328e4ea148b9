"""The path objective from tower outputs, shared by live towers and the frozen-feature cache.

`CodeBindModel.forward(return_loss=True)` runs every tower; with cached bridge features there is no tower to
run, so training builds the `ModalityEncoding`s itself from pooled tower outputs (`encode_tower_outputs`, the
same computation as ``CodeBindModel._encode``) and calls `compute_path_loss`. It also returns what the
codebook life cycle needs: the pre-quantisation head outputs and their code indices (`CodebookRecord`).
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from codebind_hf.modeling_codebind import CodeBindModel, ModalityEncoding
from codebind_hf.path_loss import compute_path_loss


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

    def forward(self, inputs: dict, attention_mask: torch.Tensor | None = None, cached: dict | None = None) -> dict:
        """Compute the path loss.

        Args:
            inputs (`dict[str, torch.Tensor]`): processed inputs by modality (towers run here).
            attention_mask (`torch.Tensor`, *optional*): text attention mask.
            cached (`dict[str, torch.Tensor]`, *optional*): pooled tower outputs `(batch, hidden)` by modality.

        Returns:
            `dict` with ``loss`` (weighted with the path config's weights), ``breakdown`` (unweighted terms) and
            ``records`` (list of `CodebookRecord`).
        """
        cached = cached or {}
        tokens_for = self.token_modalities(set(inputs))
        frozen = self.frozen_towers()
        outputs = {}
        for modality in self.modalities:
            if modality in inputs:  # towers run under the caller's autocast (mixed precision)
                with torch.no_grad() if modality in frozen else contextlib.nullcontext():
                    outputs[modality] = tower_outputs(self.model, modality, inputs[modality], attention_mask, modality in tokens_for)
            elif modality in cached:
                outputs[modality] = (cached[modality], None)
            else:
                raise ValueError(f"path {self.path!r}: no inputs and no cached features for modality {modality!r}")
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
            loss, breakdown = compute_path_loss(self.model, self.path, encodings, float_inputs)
        return {"loss": loss, "breakdown": breakdown, "records": records}


__all__ = ["CodebookRecord", "tower_outputs", "encode_tower_outputs", "PathObjective"]
