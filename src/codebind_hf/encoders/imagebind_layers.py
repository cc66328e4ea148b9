"""Transformer pieces of the ImageBind trunks: pre-LN blocks, attention with optional key/value bias tokens.

Attention keeps ``nn.MultiheadAttention``'s parameters (a packed input projection, ``out_proj``, optional learned
``bias_k``/``bias_v`` tokens appended after projection) but holds them in plain ``nn.Linear`` layers, so that a
converted checkpoint is a renaming (``in_proj_weight`` -> ``qkv.weight``) and peft can wrap the projections with
LoRA. The attention runs through ``F.scaled_dot_product_attention`` (``"sdpa"``) or an explicit softmax
(``"eager"``, which can also return the attention weights), as the model's ``attn_implementation`` says.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

LAYER_SCALE_TYPES = (None, "per_channel", "scalar")


class DropPath(nn.Module):
    """Stochastic depth: while training, zero the residual branch of a whole sample with probability ``p``.

    Kept samples are rescaled by ``1 / (1 - p)`` so that the expectation is unchanged; in eval mode this is the
    identity.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ImageBindAttention(nn.Module):
    """Multi-head self-attention with a packed ``qkv`` projection and optional learned key/value bias tokens.

    Args:
        dim (`int`): token width; must be divisible by ``num_heads``.
        num_heads (`int`): number of attention heads.
        add_bias_kv (`bool`): append one learned key and value token (``bias_k``, ``bias_v`` of shape
            `(1, 1, dim)`) after the projection, as ``nn.MultiheadAttention(add_bias_kv=True)`` does.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, dim))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        # The tower's typed config (set by the model): its `_attn_implementation` picks the kernel at call time, so
        # `set_attn_implementation` reaches this layer. Without one, SDPA.
        self.config = None

    @property
    def attn_implementation(self) -> str:
        implementation = getattr(self.config, "_attn_implementation", None)
        return implementation if implementation in ("eager", "sdpa") else "sdpa"

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x (`torch.FloatTensor` of shape `(batch, length, dim)`): input tokens.
            attn_mask (`torch.FloatTensor` of shape `(length, length)`, *optional*): additive mask (``-inf`` blocks).
            output_attentions (`bool`, *optional*): also return the attention weights (computed explicitly, as eager).

        Returns:
            `torch.FloatTensor` of shape `(batch, length, dim)`; with ``output_attentions`` the tuple of it and the
            weights `(batch, heads, length, keys)` (``keys`` counts the bias token when ``add_bias_kv``).
        """
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.bias_k is not None:
            # One extra learned key/value every query attends to; the mask gets an open column for it.
            k = torch.cat([k, self.bias_k.to(k.dtype).expand(batch, 1, dim)], dim=1)
            v = torch.cat([v, self.bias_v.to(v.dtype).expand(batch, 1, dim)], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.num_heads, dim // self.num_heads).transpose(1, 2)

        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        # Weights asked for are computed explicitly whatever the kernel (SDPA does not return them).
        if self.attn_implementation == "eager" or output_attentions:
            scores = (q @ k.transpose(-1, -2)) * (dim // self.num_heads) ** -0.5
            if attn_mask is not None:
                scores = scores + attn_mask
            weights = scores.softmax(dim=-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))
        return (out, weights) if output_attentions else out


class ImageBindMLP(nn.Module):
    """``fc2(GELU(fc1(x)))`` with hidden width ``hidden``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ImageBindBlock(nn.Module):
    """Pre-LN transformer block: ``x + drop(attn(norm_1(x)))`` then ``x + drop(mlp(norm_2(x)))``.

    Args:
        dim (`int`): token width.
        num_heads (`int`): attention heads.
        add_bias_kv (`bool`): learned key/value bias tokens in the attention.
        drop_path (`float`): stochastic depth rate of this block.
        mlp_ratio (`float`, *optional*, defaults to 4.0): MLP hidden width over ``dim``.
        layer_scale_type (`str`, *optional*): ``None`` (ImageBind), ``"per_channel"`` or ``"scalar"``: multiply each
            residual branch by a learned ``layer_scale_gamma1``/``layer_scale_gamma2`` (CaiT's LayerScale).
        layer_scale_init_value (`float`, *optional*, defaults to 1e-4): initial LayerScale value.
        norm_eps (`float`, *optional*, defaults to 1e-6): epsilon of both LayerNorms.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        add_bias_kv: bool,
        drop_path: float = 0.0,
        mlp_ratio: float = 4.0,
        layer_scale_type: str | None = None,
        layer_scale_init_value: float = 1e-4,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if layer_scale_type not in LAYER_SCALE_TYPES:
            raise ValueError(f"layer_scale_type must be one of {LAYER_SCALE_TYPES}, got {layer_scale_type!r}")
        self.norm_1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = ImageBindAttention(dim, num_heads, add_bias_kv)
        self.norm_2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = ImageBindMLP(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.layer_scale_init_value = float(layer_scale_init_value)
        if layer_scale_type is None:
            self.register_parameter("layer_scale_gamma1", None)
            self.register_parameter("layer_scale_gamma2", None)
        else:
            shape = (1, 1, dim) if layer_scale_type == "per_channel" else (1, 1, 1)
            self.layer_scale_gamma1 = nn.Parameter(torch.full(shape, float(layer_scale_init_value)))
            self.layer_scale_gamma2 = nn.Parameter(torch.full(shape, float(layer_scale_init_value)))

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`(batch, length, dim)` -> `(batch, length, dim)`; ``attn_mask`` is an additive `(length, length)` mask.

        With ``output_attentions`` returns ``(tokens, attention weights)``.
        """
        attn = self.attn(self.norm_1(x), attn_mask, output_attentions)
        attn, weights = attn if output_attentions else (attn, None)
        if self.layer_scale_gamma1 is not None:
            attn = attn * self.layer_scale_gamma1
        x = x + self.drop_path(attn)
        mlp = self.mlp(self.norm_2(x))
        if self.layer_scale_gamma2 is not None:
            mlp = mlp * self.layer_scale_gamma2
        x = x + self.drop_path(mlp)
        return (x, weights) if output_attentions else x


def run_blocks(
    blocks: nn.ModuleList,
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    checkpointed: bool = False,
    output_hidden_states: bool | list[int] = False,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, tuple | None, tuple | None]:
    """A trunk of [`ImageBindBlock`]s: the last tokens, and the hidden states (trunk input then every block's output;
    for a list of indices only those, the others `None`) and attention weights when asked.

    Example:

    ```python
    >>> blocks = nn.ModuleList(ImageBindBlock(8, 2, add_bias_kv=False) for _ in range(2))
    >>> out, states, weights = run_blocks(blocks, torch.randn(1, 3, 8), output_hidden_states=True, output_attentions=True)
    >>> len(states), weights[0].shape
    (3, torch.Size([1, 2, 3, 3]))

    ```
    """
    states = [hidden] if output_hidden_states else None
    weights = [] if output_attentions else None
    for block in blocks:
        if checkpointed:
            out = checkpoint(block, hidden, mask, output_attentions, use_reentrant=False)
        else:
            out = block(hidden, mask, output_attentions)
        hidden, attn = out if output_attentions else (out, None)
        if states is not None:
            states.append(hidden)
        if weights is not None:
            weights.append(attn)
    if states is not None and not isinstance(output_hidden_states, bool):
        kept = {i % len(states) for i in output_hidden_states}  # transformers' convention: negative from the end
        states = [s if i in kept else None for i, s in enumerate(states)]
    return hidden, (None if states is None else tuple(states)), (None if weights is None else tuple(weights))


def last_blocks_lora_targets(num_blocks: int, last_n_blocks: int, prefix: str = "blocks") -> list[str]:
    """LoRA targets of [`ImageBindBlock`] trunks: the ``qkv``, ``out_proj``, ``fc1`` and ``fc2`` linears of the last
    ``last_n_blocks`` of ``num_blocks`` blocks held in the ModuleList ``prefix`` (a count above ``num_blocks`` selects
    them all).

    Example:

    ```python
    >>> last_blocks_lora_targets(3, 1)
    ['blocks.2.attn.qkv', 'blocks.2.attn.out_proj', 'blocks.2.mlp.fc1', 'blocks.2.mlp.fc2']

    ```
    """
    if isinstance(last_n_blocks, bool) or not isinstance(last_n_blocks, int) or last_n_blocks < 0:
        raise ValueError(f"last_n_blocks must be a non-negative integer, got {last_n_blocks!r}")
    names = ("attn.qkv", "attn.out_proj", "mlp.fc1", "mlp.fc2")
    return [f"{prefix}.{i}.{name}" for i in range(max(0, num_blocks - last_n_blocks), num_blocks) for name in names]


__all__ = ["DropPath", "ImageBindAttention", "ImageBindMLP", "ImageBindBlock", "LAYER_SCALE_TYPES", "last_blocks_lora_targets",
           "run_blocks"]
