"""Shared/specific projection heads and the per-modality logit scale.

A head is LayerNorm -> (dropout) -> Linear applied per token. ImageBind's heads are
LayerNorm -> select token -> Linear; since both steps before the linear map act per token, applying
the head to all tokens and then selecting gives the same pooled vector, and also the token
embeddings the reconstruction decoder needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """LayerNorm + Linear projection of token states into the embedding space.

    Args:
        in_dim (`int`): tower width.
        out_dim (`int`): embedding width.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): ImageBind's head LayerNorm epsilon.
        bias (`bool`, *optional*, defaults to `False`): ImageBind's head linears have no bias.
        dropout (`float`, *optional*, defaults to 0.0): dropout before the linear (ImageBind IMU: 0.5).
    """

    def __init__(self, in_dim: int, out_dim: int, layer_norm_eps: float = 1e-6, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self.norm(hidden_states)))


class LogitScale(nn.Module):
    """The scale ImageBind multiplies normalised embeddings by (learnable for text, fixed otherwise).

    Stored as a log value so that a learnable scale stays positive; clamped to ``max_scale``
    as the reference does for its learnable scale.
    """

    def __init__(self, init_scale: float = 1.0, learnable: bool = False, max_scale: float = 100.0):
        super().__init__()
        self.init_scale = float(init_scale)  # what `_init_weights` puts back
        log_value = torch.tensor(math.log(init_scale), dtype=torch.float32)
        if learnable:
            self.log_logit_scale = nn.Parameter(log_value)
        else:
            self.register_buffer("log_logit_scale", log_value)
        self.max_scale = max_scale

    @property
    def value(self) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=self.max_scale)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings * self.value


__all__ = ["ProjectionHead", "LogitScale"]
