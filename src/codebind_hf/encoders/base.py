"""The interface every modality tower implements, whatever family it comes from.

A tower maps one modality's processed tensor to token states. The decoupling heads and the
reconstruction decoder read all tokens; alignment reads the pooled token (CLS, or EOS for CLIP
text), whose position the tower reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class TowerOutput(ModelOutput):
    """Output of a modality tower.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
            Token states after the trunk, before any head LayerNorm.
        pooled_index (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Index of the token the heads pool for alignment (0 for CLS, the EOS position for text).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): with ``output_hidden_states``: the trunk input and
            the output of every block, each `(batch_size, num_tokens, hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*): with ``output_attentions`` (eager attention): every
            block's weights `(batch_size, num_heads, num_tokens, num_keys)`.
        pooled_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, *optional*): the vector the heads
            take, for a tower that computes it (mean pooling, a model's pooler, a checkpoint's projection); it
            replaces ``last_hidden_state[pooled_index]``.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooled_index: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    pooled_output: torch.FloatTensor | None = None


class ModalityTower(nn.Module):
    """Base class of modality towers.

    Subclasses set:
      - ``hidden_size``: width of ``last_hidden_state``;
      - ``sample_ndim``: number of dims of one sample without the batch axis (e.g. 3 for an audio
        spectrogram ``(1, 128, 204)``); an input with one more dim carries a clips axis
        ``(batch, clips, ...)`` whose clip embeddings the model averages;
      - ``blocks``: the trunk's transformer blocks as an ``nn.ModuleList`` (LoRA and gradient
        checkpointing address them by index);
    and implement ``forward(inputs, attention_mask=None, output_hidden_states=False, output_attentions=False)
    -> TowerOutput``, ``lora_target_modules(last_n_blocks)`` and ``set_attention_config(config)`` (where the
    attention layers read their kernel, ``config._attn_implementation``, from).
    """

    hidden_size: int
    sample_ndim: int
    supports_gradient_checkpointing: bool = True
    # Reconstruction geometry (optional): shape of one input sample, tokens that carry patches, and
    # tokens before them (CLS). A tower without ``input_shape`` cannot be reconstructed.
    input_shape: tuple[int, ...] | None = None
    num_patches: int | None = None
    num_prefix_tokens: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.gradient_checkpointing = False

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> TowerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def train(self, mode: bool = True):
        """Train mode, except that frozen BatchNorm layers (ViT-Lens's point lens, CLAP's spectrogram norm, unless
        their parameters train) keep using and keeping their running statistics: LoRA or head tuning must not
        re-estimate a pretrained tower's."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters()):
                module.eval()
        return self

    def set_attention_config(self, config) -> None:
        """Point the attention layers at the config whose ``_attn_implementation`` they follow (default: nothing)."""

    def lora_target_modules(self, last_n_blocks: int) -> list[str]:
        """Names (relative to this tower) of the linear layers LoRA wraps in the last ``last_n_blocks`` blocks."""
        raise NotImplementedError

    def token_limits(self) -> tuple[int | None, int | None]:
        """``(vocabulary size, longest sequence)`` of a token tower, for input checks; ``None`` where unknown."""
        return None, None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def split_clips(self, inputs: torch.Tensor) -> bool:
        """Whether ``inputs`` carry a clips axis `(batch, clips, ...)` whose embeddings are averaged."""
        return inputs.ndim == self.sample_ndim + 2

    def accepts_ndim(self, ndim: int) -> bool:
        """Whether a batch with ``ndim`` dims is a valid input (with or without a clips axis)."""
        return ndim in (self.sample_ndim + 1, self.sample_ndim + 2)

    @property
    def patch_dim(self) -> int:
        """Values per patch token of the reconstruction target (see :meth:`patchify`)."""
        if self.input_shape is None or not self.num_patches:
            raise NotImplementedError(f"{type(self).__name__} declares no input_shape/num_patches; it cannot be reconstructed")
        return -(-math.prod(self.input_shape) // self.num_patches)

    def patchify(self, inputs: torch.Tensor) -> torch.Tensor:
        """Reconstruction target `(batch, num_patches, patch_dim)` of inputs `(batch, *input_shape)`.

        The default cuts the flattened sample into ``num_patches`` equal, zero-padded chunks; towers with
        a non-overlapping patch stem override it with the exact patch layout.
        """
        patch_dim = self.patch_dim
        flat = inputs.reshape(inputs.shape[0], -1)
        flat = torch.nn.functional.pad(flat, (0, patch_dim * self.num_patches - flat.shape[1]))
        return flat.reshape(inputs.shape[0], self.num_patches, patch_dim)


__all__ = ["TowerOutput", "ModalityTower"]
