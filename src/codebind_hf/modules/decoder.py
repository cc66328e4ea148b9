"""Reconstruction decoder (training only): a small ViT from quantised tokens back to input patches.

It reads the concatenated ``[ẑ_shared, ẑ_spec]`` tokens of a modality and predicts that modality's
``tower.patchify(inputs)``. ``save_pretrained`` saves it with the model (a training checkpoint resumes with it);
``model.drop_decoder()`` makes the inference artifact without it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..configuration_codebind import DecoderConfig


class ReconstructionDecoder(nn.Module):
    """ViT decoder shared by all modalities, with a positional embedding and output head per modality.

    Args:
        in_dim (`int`): width of the concatenated quantised tokens (``embed_dim + specific_dim``).
        config ([`DecoderConfig`]): depth and width.
        targets (`dict[str, tuple[int, int]]`): per modality ``(num_patches, patch_dim)``.
    """

    def __init__(self, in_dim: int, config: DecoderConfig, targets: dict[str, tuple[int, int]]):
        super().__init__()
        width = config.hidden_size
        self.input_proj = nn.Linear(in_dim, width)
        self.position_embeddings = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(1, n, width)) for m, (n, _) in targets.items()}
        )
        layer = nn.TransformerEncoderLayer(
            width, config.num_heads, int(width * config.mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({m: nn.Linear(width, d) for m, (_, d) in targets.items()})

    def forward(self, modality: str, patch_tokens: torch.Tensor, cls_token: torch.Tensor | None = None) -> torch.Tensor:
        """Predict `(batch, num_patches, patch_dim)` from quantised patch tokens `(batch, num_patches, in_dim)`.

        ``cls_token`` `(batch, in_dim)`, *optional*: the quantised ``[ẑ_shared, ẑ_spec]`` CLS token. The method
        reconstructs from *all* tokens: with it, the decoder attends to the CLS token too (it carries no position
        embedding, which tells it apart; its output is dropped, as in MAE), so the pooled embeddings — what
        inference returns — must hold what the patches need globally (voice, pitch, speed of a spectrogram).
        """
        if modality not in self.heads:
            raise KeyError(f"the decoder has no head for modality {modality!r}; it reconstructs {sorted(self.heads)}")
        pos = self.position_embeddings[modality]
        if patch_tokens.shape[1] != pos.shape[1]:
            raise ValueError(f"{modality}: expected {pos.shape[1]} patch tokens, got {patch_tokens.shape[1]}")
        hidden = self.input_proj(patch_tokens) + pos
        if cls_token is not None:
            if cls_token.shape != (patch_tokens.shape[0], patch_tokens.shape[2]):
                raise ValueError(f"{modality}: cls_token must have shape {(patch_tokens.shape[0], patch_tokens.shape[2])}, "
                                 f"got {tuple(cls_token.shape)}")
            hidden = torch.cat([self.input_proj(cls_token)[:, None], hidden], dim=1)
        out = self.heads[modality](self.norm(self.blocks(hidden)))
        return out if cls_token is None else out[:, 1:]


__all__ = ["ReconstructionDecoder"]
