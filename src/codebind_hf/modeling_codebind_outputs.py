"""What a [`CodeBindModel`] returns and hands between its steps: the model output, one modality's encoding, and the
clip averaging that precedes the codebooks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from .quantization.quantizer import QuantizerOutput


@dataclass
class CodeBindOutput(ModelOutput):
    """Output of [`CodeBindModel.forward`]; dicts are keyed by modality.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): weighted path loss, with `return_loss=True`.
        loss_breakdown (`dict[str, torch.FloatTensor]`, *optional*): unweighted losses by name.
        shared_embeds (`dict[str, torch.FloatTensor]`): unit shared embeddings `(batch, embed_dim)`.
        specific_embeds (`dict[str, torch.FloatTensor]`): unit specific embeddings `(batch, specific_dim)`.
        embeds (`dict[str, torch.FloatTensor]`): unit shared⊕specific embeddings (shared for text).
        codes (`dict[str, torch.LongTensor]`): shared-codebook indices `(batch, embed_dim // codevector_dim)`.
        text_model_output, vision_model_output, audio_model_output, ... (`BaseModelOutputWithPooling`, *optional*):
            per modality given, with ``output_hidden_states`` or ``output_attentions`` (as CLIP's ``text_model_output``):
            the tower's ``last_hidden_state``, ``hidden_states`` and ``attentions``, and the modality's embedding
            (``embeds``) as ``pooler_output``.
    """

    loss: torch.FloatTensor | None = None
    loss_breakdown: dict | None = None
    shared_embeds: dict | None = None
    specific_embeds: dict | None = None
    embeds: dict | None = None
    codes: dict | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None
    audio_model_output: BaseModelOutputWithPooling | None = None
    depth_model_output: BaseModelOutputWithPooling | None = None
    thermal_model_output: BaseModelOutputWithPooling | None = None
    imu_model_output: BaseModelOutputWithPooling | None = None
    tactile_model_output: BaseModelOutputWithPooling | None = None
    eeg_model_output: BaseModelOutputWithPooling | None = None
    point_model_output: BaseModelOutputWithPooling | None = None
    modality_model_outputs: dict | None = None  # the same, by name, for modalities beyond the nine (new sensors)


def average_clips(shared: torch.Tensor, specific: torch.Tensor | None, clips: int, joint: bool = False):
    """Mean head outputs over each sample's ``clips`` consecutive rows `(batch * clips, d)` -> `(batch, d)`: what the
    codebooks then quantise (the authors' order: average, then quantise, so the result is a code).

    Each clip is L2-normalised first, per part, or (``joint``, the authors' quantiser) over ``[shared | specific]``
    together; the means are not re-normalised (the quantiser normalises every sub-vector itself). With
    ``clips=1`` this only normalises (the authors' quantiser does so for every input).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.modeling_codebind import average_clips
    >>> shared, _ = average_clips(torch.tensor([[3.0, 0.0], [0.0, 1.0]]), None, clips=2)
    >>> shared.tolist()
    [[0.5, 0.5]]

    ```
    """
    if joint and specific is not None:
        norm = torch.cat([shared, specific], dim=-1).norm(dim=-1, keepdim=True).clamp_min(1e-12)
        shared, specific = shared / norm, specific / norm
    else:
        shared = F.normalize(shared, dim=-1)
        specific = None if specific is None else F.normalize(specific, dim=-1)

    def mean(x):
        return x.reshape(-1, clips, x.shape[-1]).mean(1)

    return mean(shared), None if specific is None else mean(specific)


@dataclass
class ModalityEncoding:
    """Everything the losses need about one modality of a batch ([`CodeBindModel.encode_tower_outputs`])."""

    shared: torch.Tensor  # unit pooled shared embedding (quantised if a path is used)
    specific: torch.Tensor | None
    shared_q: QuantizerOutput | None = None  # pooled shared quantisation, with distances
    specific_q: QuantizerOutput | None = None
    shared_tokens: torch.Tensor | None = None  # unit quantised tokens, for reconstruction
    specific_tokens: torch.Tensor | None = None
    commitment: torch.Tensor | None = None
    # What the codebooks quantise: the head outputs (clip means; the authors' quantiser: their slices of the jointly
    # normalised [shared | specific]), not re-normalised.
    shared_z: torch.Tensor | None = None
    specific_z: torch.Tensor | None = None
    # Unit shared ⊕ specific as the path defines it (the paper: two unit parts; the authors: the raw parts together).
    concat: torch.Tensor | None = None


__all__ = ["CodeBindOutput", "ModalityEncoding", "average_clips"]
