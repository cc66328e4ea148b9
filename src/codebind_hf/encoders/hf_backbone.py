"""Any transformers model as a CodeBind tower: built from a config, or loaded from a pretrained checkpoint.

Used for tiny random towers in tests, for users who bring their own encoders (a BERT text bridge, a ViT over
spectrograms) and for pretrained encoders (CLIP's vision or text model, CLAP's audio model, wav2vec2, AST, the
Whisper encoder, MiniLM, ...). Checkpoint loading, components, projections and LoRA targets live in
`codebind_hf.encoders.pretrained`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedConfig

from .base import ModalityTower, TowerOutput
from .pretrained import (
    backbone_view,
    build_backbone,
    check_pooling,
    default_sample_ndim,
    drop_unused_pooler,
    find_blocks,
    find_projection,
    input_argument,
    lora_targets,
    mean_pool,
    output_width,
    select_component,
)


class HFBackboneTower(ModalityTower):
    """A transformers model (or one of its components) as a tower.

    Config keys (``config.modalities[m]``):

    - the backbone, one of: ``backbone`` (a config dict with ``model_type``; random weights) or ``pretrained`` (a Hub
      id or a local folder, loaded with ``AutoModel.from_pretrained``; with ``revision`` and ``subfolder``). A saved
      model's config records a pretrained tower as ``backbone`` + ``source`` (its weights are in the model's files);
    - ``component`` (*optional*): the sub-model to use, e.g. CLIP's ``"vision_model"`` / ``"text_model"``, CLAP's
      ``"audio_model"`` / ``"text_model"``, Whisper's ``"encoder"``;
    - ``use_projection`` (*optional*, default `False`): pool through the checkpoint's projection of that component
      (CLIP's ``visual_projection``, CLAP's ``audio_projection``, or the module named ``projection``); the tower's
      width is then the projection's;
    - ``pooling``: ``"cls"`` (first token), ``"eos"`` (last non-padding token), ``"mean"`` (over the attention mask)
      or ``"pooler"`` (the model's own ``pooler_output``); default ``"pooler"`` with a projection, else ``"cls"``;
    - ``lora_target_modules`` (*optional*): names of the block linears LoRA wraps (default: the family's attention
      and MLP linears, `codebind_hf.encoders.pretrained.LORA_TARGETS`); ``blocks`` (*optional*): the block list;
    - ``input_kwarg`` (the backbone's input argument; default ``input_ids`` for text and ``pixel_values`` otherwise
      where its forward takes them, else the first of ``input_ids``/``pixel_values``/``input_values``/``input_features``
      it takes), ``sample_ndim`` (default by family and input: 1 for token ids and wav2vec2 waveforms, 3 for images
      and CLAP spectrograms, 2 for AST and Whisper features).
    """

    def __init__(self, modality: str, config: dict, backbone_config: PreTrainedConfig | None = None):
        super().__init__()
        if backbone_config is None:  # the model passes its typed view (`CodeBindConfig.tower_config`), shared with it
            backbone_config = backbone_view(config)
        where = f"modalities[{modality!r}]"
        component = config.get("component")
        projected = bool(config.get("use_projection", False))
        self.pooling = config.get("pooling", "pooler" if projected else "cls")
        model = build_backbone(config, backbone_config, self.pooling)
        self.backbone = select_component(model, component, where)
        self.projection = find_projection(model, component, config.get("projection"), where) if projected else None
        check_pooling(self.backbone, self.pooling, where)
        drop_unused_pooler(self.backbone, self.pooling)
        own = self.backbone.config if hasattr(self.backbone, "config") else backbone_config
        self.model_type = getattr(own, "model_type", None)
        self.modality = modality
        self.input_kwarg = config.get("input_kwarg") or input_argument(self.backbone, modality)
        self.hidden_size = output_width(self.projection) if projected else own.hidden_size
        self.sample_ndim = config.get("sample_ndim", default_sample_ndim(self.model_type, self.input_kwarg))
        self.lora_names = config.get("lora_target_modules")
        # A property, not an attribute: registering the blocks twice would duplicate their weights.
        self._blocks_name = find_blocks(self.backbone, getattr(own, "num_hidden_layers", None), config.get("blocks"))
        image_size = getattr(own, "image_size", None)
        patch_size = getattr(own, "patch_size", None)
        # Reconstruction reads the tokens through the heads, whose width a projection changes: none then.
        if image_size and patch_size and self.input_kwarg == "pixel_values" and not projected:
            height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            self.input_shape = (own.num_channels, height, width)
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
        index = pooled = None
        if self.pooling == "cls":
            index = torch.zeros(hidden.shape[0], dtype=torch.long, device=hidden.device)
        elif self.pooling == "eos" and attention_mask is not None:
            index = attention_mask.long().sum(-1).clamp_min(1) - 1
        elif self.pooling == "eos":
            index = torch.full((hidden.shape[0],), hidden.shape[1] - 1, dtype=torch.long, device=hidden.device)
        elif self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)
        else:
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ValueError(f"{type(self.backbone).__name__} gave no pooler_output; pool with 'cls', 'eos' or 'mean'")
        if self.projection is not None:
            pooled = self.projection(hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
                                     if pooled is None else pooled)
            index = None
        return TowerOutput(
            last_hidden_state=hidden,
            pooled_index=index,
            pooled_output=pooled,
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
        """The linears LoRA wraps in the last ``last_n_blocks`` blocks: those named by ``lora_target_modules``, else
        the family's attention and MLP linears (every linear of the blocks for a family not listed)."""
        return lora_targets(self.blocks, f"backbone.{self._blocks_name}", last_n_blocks, self.model_type, self.lora_names)

    def set_gradient_checkpointing(self, enable: bool) -> None:
        self.gradient_checkpointing = enable
        if enable:
            self.backbone.gradient_checkpointing_enable()
        else:
            self.backbone.gradient_checkpointing_disable()


__all__ = ["HFBackboneTower"]
