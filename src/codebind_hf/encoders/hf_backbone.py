"""Any transformers backbone (built from a config) as a CodeBind tower.

Used for tiny random towers in tests and for users who bring their own encoders (e.g. a BERT text
bridge or a ViT over spectrograms). The backbone's ``last_hidden_state`` are the tokens; the pooled
token is the first (CLS) or, with ``pooling="eos"``, the last non-padding token.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig

from .base import ModalityTower, TowerOutput


def _find_blocks(model: nn.Module, num_layers: int) -> str:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return name
    raise ValueError(f"could not find the {num_layers} transformer blocks of {type(model).__name__}")


class HFBackboneTower(ModalityTower):
    """Wrap ``AutoModel.from_config(backbone)``.

    Config keys: ``backbone`` (dict with ``model_type``), ``pooling`` (``"cls"`` | ``"eos"``), ``input_kwarg``
    (the backbone's input argument; ``input_ids`` for text, ``pixel_values`` otherwise), ``sample_ndim``.
    """

    def __init__(self, modality: str, config: dict, backbone_config: PreTrainedConfig | None = None):
        super().__init__()
        if backbone_config is None:  # the model passes its typed view (`CodeBindConfig.tower_config`), shared with it
            backbone = dict(config["backbone"])
            backbone_config = AutoConfig.for_model(backbone.pop("model_type"), **backbone)
        try:
            self.backbone = AutoModel.from_config(backbone_config, add_pooling_layer=False)
        except TypeError:
            self.backbone = AutoModel.from_config(backbone_config)
        self.modality = modality
        self.pooling = config.get("pooling", "cls")
        if self.pooling not in ("cls", "eos"):
            raise ValueError(f"pooling must be 'cls' or 'eos', got {self.pooling!r}")
        self.input_kwarg = config.get("input_kwarg", "input_ids" if modality == "text" else "pixel_values")
        self.hidden_size = backbone_config.hidden_size
        self.sample_ndim = config.get("sample_ndim", 1 if modality == "text" else 3)
        # A property, not an attribute: registering the blocks twice would duplicate their weights.
        self._blocks_name = _find_blocks(self.backbone, backbone_config.num_hidden_layers)
        image_size = getattr(backbone_config, "image_size", None)
        patch_size = getattr(backbone_config, "patch_size", None)
        if image_size and patch_size and self.input_kwarg == "pixel_values":
            height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            self.input_shape = (backbone_config.num_channels, height, width)
            self.num_patches = (height // patch_size) * (width // patch_size)
            self._patch_size = patch_size

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone.get_submodule(self._blocks_name)

    def forward(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] = False,
        output_attentions: bool = False,
    ) -> TowerOutput:
        kwargs = {self.input_kwarg: inputs}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if output_hidden_states:
            kwargs["output_hidden_states"] = output_hidden_states  # True, or a list of indices
        if output_attentions:
            kwargs["output_attentions"] = True
        out = self.backbone(**kwargs)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            pooled = torch.zeros(hidden.shape[0], dtype=torch.long, device=hidden.device)
        elif attention_mask is not None:
            pooled = attention_mask.long().sum(-1).clamp_min(1) - 1
        else:
            pooled = torch.full((hidden.shape[0],), hidden.shape[1] - 1, dtype=torch.long, device=hidden.device)
        return TowerOutput(
            last_hidden_state=hidden,
            pooled_index=pooled,
            hidden_states=getattr(out, "hidden_states", None) if output_hidden_states else None,
            attentions=getattr(out, "attentions", None) if output_attentions else None,
        )

    def token_limits(self) -> tuple[int | None, int | None]:
        if self.input_kwarg != "input_ids":
            return None, None
        try:
            embeddings = self.backbone.get_input_embeddings()
        except (NotImplementedError, AttributeError):
            embeddings = None
        vocab = embeddings.num_embeddings if isinstance(embeddings, nn.Embedding) else None
        return vocab, getattr(self.backbone.config, "max_position_embeddings", None)

    def patchify(self, inputs: torch.Tensor) -> torch.Tensor:
        """ViT patches in the backbone's token order: `(batch, num_patches, channels * p * p)`."""
        p = self._patch_size
        patches = torch.nn.functional.unfold(inputs, kernel_size=p, stride=p)  # (B, C*p*p, L)
        return patches.transpose(1, 2)

    @property
    def patch_dim(self) -> int:
        return self.input_shape[0] * self._patch_size**2

    def lora_target_modules(self, last_n_blocks: int) -> list[str]:
        first = max(0, len(self.blocks) - last_n_blocks)
        names = []
        for index in range(first, len(self.blocks)):
            for name, module in self.blocks[index].named_modules():
                if isinstance(module, nn.Linear):
                    names.append(f"backbone.{self._blocks_name}.{index}.{name}")
        return names

    def set_gradient_checkpointing(self, enable: bool) -> None:
        self.gradient_checkpointing = enable
        if enable:
            self.backbone.gradient_checkpointing_enable()
        else:
            self.backbone.gradient_checkpointing_disable()


__all__ = ["HFBackboneTower"]
