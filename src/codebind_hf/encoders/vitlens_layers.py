"""ViT-Lens lens pieces: the PointBERT point tokenizer, the EEG patch embedding and the perceiver resampler.

A lens turns one modality into tokens (adapter), resamples them to a fixed number of latent tokens of the trunk's
width (perceiver), and hands those to a frozen CLIP ViT trunk (`encoders/vitlens.py`). Parameter names follow the
reference layout (``encoder.first_conv.0``, ``layers.0.0.fn.to_q``, ...) so that a converted checkpoint is a
renaming.

Point tokenizer (input `(batch, N, 3)` xyz): farthest point sampling of ``num_groups`` centres starting at point 0,
the ``group_size`` nearest points of each centre, a mini-PointNet over each centred group and a position MLP on the
centres. The reference picks its first centre at random; starting at point 0 makes the lens deterministic (and is
what the reference's CUDA kernel does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput


def farthest_point_sample(xyz: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices `(batch, num_samples)` of farthest point sampling on `(batch, N, 3)` points, starting at point 0.

    Each step takes the point whose squared distance to the chosen set is largest (the first such point on ties).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.encoders.vitlens_layers import farthest_point_sample
    >>> line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [10, 0, 0]]])
    >>> farthest_point_sample(line, 3).tolist()
    [[0, 3, 2]]

    ```
    """
    batch, count, _ = xyz.shape
    if not 1 <= num_samples <= count:
        raise ValueError(f"farthest point sampling of {num_samples} points needs 1 <= num_samples <= {count} (the points given)")
    rows = torch.arange(batch, device=xyz.device)
    chosen = torch.zeros(batch, num_samples, dtype=torch.long, device=xyz.device)
    distance = torch.full((batch, count), 1e10, dtype=xyz.dtype, device=xyz.device)
    farthest = torch.zeros(batch, dtype=torch.long, device=xyz.device)
    for i in range(num_samples):
        chosen[:, i] = farthest
        step = ((xyz - xyz[rows, farthest][:, None]) ** 2).sum(-1)
        distance = torch.minimum(distance, step)
        farthest = distance.max(-1)[1]
    return chosen


def nearest_neighbours(xyz: torch.Tensor, centers: torch.Tensor, k: int) -> torch.Tensor:
    """Indices `(batch, centres, k)` of the ``k`` points of ``xyz`` closest to each centre (squared distance).

    The distance is expanded as |c|^2 + |p|^2 - 2 c.p, as the reference computes it, so near-ties resolve alike.
    """
    distance = -2 * centers @ xyz.transpose(1, 2)
    distance = distance + (centers**2).sum(-1)[..., None] + (xyz**2).sum(-1)[:, None]
    return distance.topk(k, dim=-1, largest=False, sorted=True)[1]


@dataclass
class LensOutput(ModelOutput):
    """What a lens adapter produces.

    Args:
        tokens (`torch.FloatTensor` of shape `(batch, num_tokens, token_dim)`): ``features + positions``, the
            perceiver's input.
        features (`torch.FloatTensor` of shape `(batch, num_tokens, token_dim)`): the adapter's token features.
        positions (`torch.FloatTensor`): the position term, `(batch, num_tokens, token_dim)` (point: MLP of the
            centres) or `(num_tokens, token_dim)` (EEG: learned, shared by the batch).
        centers (`torch.FloatTensor` of shape `(batch, num_groups, 3)`, *optional*): point groups' centres.
        center_indices (`torch.LongTensor` of shape `(batch, num_groups)`, *optional*): their indices in the input.
    """

    tokens: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None
    positions: torch.FloatTensor | None = None
    centers: torch.FloatTensor | None = None
    center_indices: torch.LongTensor | None = None


class MiniPointNet(nn.Module):
    """PointBERT's group encoder: per-point convs, max-pooled global feature concatenated back (global first),
    more per-point convs, max over the group. `(groups, n, 3)` -> `(groups, out_dim)`."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(), nn.Conv1d(512, out_dim, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        feature = self.first_conv(groups.transpose(1, 2))  # (G, 256, n)
        pooled = feature.max(dim=2, keepdim=True)[0]
        feature = self.second_conv(torch.cat([pooled.expand_as(feature), feature], dim=1))
        return feature.max(dim=2)[0]


class PointTokenizer(nn.Module):
    """Point cloud `(batch, N, 3)` -> one token per FPS group: ``reduce_dim(MiniPointNet(group - centre))`` plus
    ``pos_embed(centre)`` (Linear(3, 128) -> GELU -> Linear(128, token_dim))."""

    def __init__(self, num_groups: int, group_size: int, encoder_dim: int, token_dim: int):
        super().__init__()
        self.num_groups, self.group_size = num_groups, group_size
        self.encoder = MiniPointNet(encoder_dim)
        self.reduce_dim = nn.Linear(encoder_dim, token_dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, token_dim))

    def forward(self, points: torch.Tensor) -> LensOutput:
        batch = points.shape[0]
        center_indices = farthest_point_sample(points, self.num_groups)
        rows = torch.arange(batch, device=points.device)[:, None]
        centers = points[rows, center_indices]  # (B, G, 3)
        members = nearest_neighbours(points, centers, self.group_size)  # (B, G, k)
        groups = points[rows[..., None], members] - centers[:, :, None]
        features = self.encoder(groups.flatten(0, 1)).reshape(batch, self.num_groups, -1)
        features = self.reduce_dim(features)
        positions = self.pos_embed(centers)
        return LensOutput(tokens=features + positions, features=features, positions=positions, centers=centers,
                          center_indices=center_indices)


class EEGPatchEmbed(nn.Module):
    """EEG `(batch, channels, time)` -> `(batch, T', width)` tokens: Conv1d(channels, width, window, stride) plus a
    learned `(T', width)` position table ``pos_emb``."""

    def __init__(self, channels: int, time_len: int, window_size: int, stride: int, width: int):
        super().__init__()
        self.proj = nn.Conv1d(channels, width, kernel_size=window_size, stride=stride)
        self.num_patches = (time_len - window_size) // stride + 1
        self.pos_emb = nn.Parameter(width**-0.5 * torch.randn(self.num_patches, width))

    def forward(self, eeg: torch.Tensor) -> LensOutput:
        features = self.proj(eeg).transpose(1, 2)
        return LensOutput(tokens=features + self.pos_emb, features=features, positions=self.pos_emb)


class PreNorm(nn.Module):
    """``fn(norm(x), context=norm_context(context))``: the perceiver's pre-norm wrapper (residual added outside)."""

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_context is None:
            return self.fn(self.norm(x))
        return self.fn(self.norm(x), self.norm_context(context))


class PerceiverAttention(nn.Module):
    """Multi-head attention of queries ``x`` over ``context`` (itself when None): ``to_q``, ``to_kv`` (keys then
    values, no biases), scaled dot product (``dim_head ** -0.5``), ``to_out`` with bias."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        k, v = self.to_kv(context).chunk(2, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(k), split(v),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    """Split the last axis in halves ``(a, gate)`` and return ``a * GELU(gate)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = x.chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """``net``: Linear(dim, 2 * mult * dim) -> GEGLU -> Linear(mult * dim, dim) -> dropout."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * mult * dim), GEGLU(), nn.Linear(mult * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PerceiverResampler(nn.Module):
    """Learned latents `(num_latents, latent_dim)` that read the lens tokens: ``depth`` times a cross-attention
    block and a feed-forward, then ``self_per_cross_attn`` self-attention + feed-forward pairs; every block is a
    pre-norm residual. No Fourier features, no weight tying (the ViT-Lens settings). Returns the latents
    `(batch, num_latents, latent_dim)`.

    ``layers[i]`` is ``[cross_attn, cross_ff, [[self_attn, self_ff], ...]]``, the reference's nesting.
    """

    def __init__(self, input_dim: int, latent_dim: int, num_latents: int, depth: int, cross_heads: int,
                 cross_dim_head: int, latent_heads: int, latent_dim_head: int, self_per_cross_attn: int,
                 attn_dropout: float = 0.0, ff_dropout: float = 0.0):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))

        def self_block() -> nn.ModuleList:
            attn = PerceiverAttention(latent_dim, latent_dim, latent_heads, latent_dim_head, attn_dropout)
            return nn.ModuleList([PreNorm(latent_dim, attn), PreNorm(latent_dim, FeedForward(latent_dim, dropout=ff_dropout))])

        self.layers = nn.ModuleList(
            nn.ModuleList([
                PreNorm(latent_dim, PerceiverAttention(latent_dim, input_dim, cross_heads, cross_dim_head, attn_dropout),
                        context_dim=input_dim),
                PreNorm(latent_dim, FeedForward(latent_dim, dropout=ff_dropout)),
                nn.ModuleList(self_block() for _ in range(self_per_cross_attn)),
            ])
            for _ in range(depth)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.latents.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        for cross_attn, cross_ff, self_blocks in self.layers:
            x = cross_attn(x, context=tokens) + x
            x = cross_ff(x) + x
            for self_attn, self_ff in self_blocks:
                x = self_attn(x) + x
                x = self_ff(x) + x
        return x


__all__ = [
    "farthest_point_sample",
    "nearest_neighbours",
    "LensOutput",
    "MiniPointNet",
    "PointTokenizer",
    "EEGPatchEmbed",
    "PreNorm",
    "PerceiverAttention",
    "GEGLU",
    "FeedForward",
    "PerceiverResampler",
]
