"""A tiny transformers model over precomputed embeddings, usable as a ``family="hf"`` tower.

Some bridges are best used as fixed vectors: a frozen sentence encoder whose embeddings of a known
set of prompts were computed once (the demo embeds its class prompts with MiniLM). This module
registers ``model_type="codebind_precomputed"`` with ``AutoConfig``/``AutoModel``, so such a bridge
is configured like any other transformers backbone and saved in the model's safetensors:

- ``input_ids`` `(batch, seq)` index rows of a lookup ``table`` `(num_embeddings, hidden_size)`;
- ``num_hidden_layers`` optional residual MLP blocks (``x + W2 gelu(W1 LN(x))``) follow.

With zero blocks the tower returns the stored vectors unchanged; the model's shared head then projects
them into the shared space.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class PrecomputedEmbeddingConfig(PreTrainedConfig):
    r"""
    Configuration of a [`PrecomputedEmbeddingModel`].

    Args:
        num_embeddings (`int`, *optional*, defaults to 1): rows of the lookup table (e.g. one per prompt).
        hidden_size (`int`, *optional*, defaults to 384): width of a stored embedding.
        num_hidden_layers (`int`, *optional*, defaults to 0): residual MLP blocks after the lookup.
        intermediate_size (`int`, *optional*, defaults to 1536): hidden width of an MLP block.
        layer_norm_eps (`float`, *optional*, defaults to 1e-12): epsilon of the blocks' LayerNorm.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the initial weights.
    """

    model_type = "codebind_precomputed"

    def __init__(
        self,
        num_embeddings: int = 1,
        hidden_size: int = 384,
        num_hidden_layers: int = 0,
        intermediate_size: int = 1536,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if num_embeddings < 1 or hidden_size < 1 or num_hidden_layers < 0 or intermediate_size < 1:
            raise ValueError(
                "PrecomputedEmbeddingConfig needs num_embeddings >= 1, hidden_size >= 1, num_hidden_layers >= 0 and "
                f"intermediate_size >= 1; got {num_embeddings}, {hidden_size}, {num_hidden_layers}, {intermediate_size}"
            )
        self.num_embeddings = num_embeddings
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)


class ResidualMLPBlock(nn.Module):
    """``x + fc2(gelu(fc1(LayerNorm(x))))``, applied per token."""

    def __init__(self, hidden_size: int, intermediate_size: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.fc2(nn.functional.gelu(self.fc1(self.norm(hidden_states))))


class PrecomputedEmbeddingModel(PreTrainedModel):
    """Lookup of precomputed embeddings followed by optional residual MLP blocks.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.encoders.precomputed import PrecomputedEmbeddingConfig, PrecomputedEmbeddingModel
    >>> model = PrecomputedEmbeddingModel(PrecomputedEmbeddingConfig(num_embeddings=3, hidden_size=4))
    >>> model.load_table(torch.eye(3, 4))
    >>> model(torch.tensor([[2], [0]])).last_hidden_state[:, 0].detach()
    tensor([[0., 0., 1., 0.],
            [1., 0., 0., 0.]])

    ```
    """

    config_class = PrecomputedEmbeddingConfig
    base_model_prefix = "precomputed"
    main_input_name = "input_ids"

    def __init__(self, config: PrecomputedEmbeddingConfig):
        super().__init__(config)
        self.table = nn.Embedding(config.num_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(
            ResidualMLPBlock(config.hidden_size, config.intermediate_size, config.layer_norm_eps)
            for _ in range(config.num_hidden_layers)
        )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.no_grad()
    def load_table(self, embeddings: torch.Tensor) -> None:
        """Copy precomputed embeddings `(num_embeddings, hidden_size)` into the lookup table."""
        expected = tuple(self.table.weight.shape)
        if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != expected:
            got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"embeddings must be a tensor of shape {expected}, got {got}")
        if not torch.isfinite(embeddings).all():
            raise ValueError("embeddings contain NaN or inf values")
        self.table.weight.copy_(embeddings.to(self.table.weight.dtype))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> BaseModelOutput:
        """Embed row indices `(batch, seq)` -> ``last_hidden_state`` `(batch, seq, hidden_size)`."""
        if input_ids.is_floating_point():
            raise TypeError(f"input_ids must be integer row indices, got dtype {input_ids.dtype}")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.num_embeddings):
            raise ValueError(
                f"input_ids must lie in [0, {self.config.num_embeddings}); got range "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        hidden = self.table(input_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return BaseModelOutput(last_hidden_state=hidden)


AutoConfig.register(PrecomputedEmbeddingConfig.model_type, PrecomputedEmbeddingConfig, exist_ok=True)
AutoModel.register(PrecomputedEmbeddingConfig, PrecomputedEmbeddingModel, exist_ok=True)

__all__ = ["PrecomputedEmbeddingConfig", "PrecomputedEmbeddingModel", "ResidualMLPBlock"]
