"""ViT-Lens towers (CodeBind-VL): a lens (point cloud or EEG) feeding a CLIP ViT trunk, plus the CLIP image and text
towers that serve as bridges.

Every tower of this family (``"family": "vitlens"``) has an open_clip-style trunk: pre-LN blocks (LayerNorm 1e-5,
packed qkv, exact GELU MLP) on top of a stem chosen by ``"stem"``:

| stem     | modality | input                      | tokens before the trunk                                            |
|----------|----------|----------------------------|--------------------------------------------------------------------|
| ``point``| point    | `(B, N, 3)` xyz            | PointBERT groups -> perceiver latents, CLS, positions, ``ln_pre``  |
| ``eeg``  | eeg      | `(B, channels, time_len)`  | Conv1d patches + positions -> perceiver latents, CLS, ..., ``ln_pre`` |
| ``patch``| vision   | `(B, 3, H, W)`             | Conv2d patches (no bias), CLS, positions, ``ln_pre``               |
| ``tokens``| text    | `(B, 77)` token ids        | token + position embeddings; causal mask; pooled at the EOS token  |

The trunk's final LayerNorm (``ln_post``, text: ``ln_final``) and projection (``proj``, text: ``text_projection``) are
the model's shared head (`ProjectionHead` with LayerNorm eps 1e-5, no bias), so a tower returns token states.

Configs come from the ViT-Lens settings (an open_clip ``clip_model_config`` and per-lens ``modality_cfg`` overrides
of ViT-Lens's ``default_cfg``) through [`vitlens_modality_configs`]; `VITLENS_L` is the released ViT-Lens-L.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init

from .base import ModalityTower, TowerOutput
from .imagebind_layers import ImageBindBlock, last_blocks_lora_targets, run_blocks
from .vitlens_layers import EEGPatchEmbed, LensOutput, PerceiverResampler, PointTokenizer

VITLENS_STEMS = ("point", "eeg", "patch", "tokens")
# ViT-Lens lens names -> our modality names (the lenses this package has towers for).
VITLENS_LENSES: dict[str, str] = {"pc": "point", "eeg": "eeg"}
VITLENS_BRIDGES: dict[str, str] = {"image": "vision", "text": "text"}

# open_clip's ViT-L-14 (model_configs/ViT-L-14.json), the CLIP of ViT-Lens-L.
VIT_L_14: dict = {
    "embed_dim": 768,
    "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12},
}
_PERCEIVER_L = {"perceiver_attn_dropout": 0.0, "perceiver_cross_dim_head": 64, "perceiver_cross_heads": 1,
                "perceiver_ff_dropout": 0.0, "perceiver_fourier_encode_data": False, "perceiver_input_axis": 1,
                "perceiver_latent_dim": 1024, "perceiver_latent_dim_head": 64, "perceiver_latent_heads": 16,
                "perceiver_self_per_cross_attn": 1, "perceiver_weight_tie_layers": False}
# The released vitlensL entry of mm_vit_lens/model_cfg.py for the two lenses we have towers for (ckpt paths left out).
VITLENS_L: dict = {
    "clip_model_config": VIT_L_14,
    "modality_cfg": {
        "pc": {"visual_modality_type": "3dpc", "v_key": "pc", "use_perceiver": True, "use_visual_adapter": True,
               "pc_encoder_dims": 256, "pc_group_size": 32, "pc_npoints": 8192, "pc_num_group": 512,
               "pc_trans_dim": 384, **_PERCEIVER_L, "perceiver_depth": 4, "perceiver_input_chan": 384,
               "perceiver_num_latents": 256},
        "eeg": {"visual_modality_type": "eeg", "v_key": "eeg", "use_perceiver": True, "use_visual_adapter": True,
                "eeg_chans": 128, "eeg_stride": 1, "eeg_time_len": 512, "eeg_window_size": 1,
                "perceiver_as_transformer": False, **_PERCEIVER_L, "perceiver_depth": 1, "perceiver_input_chan": 1024,
                "perceiver_max_freq": 10.0},
    },
}
# ViT-Lens's default_cfg (mm_vit_lens/model_cfg.py) for the arguments that shape a pc or EEG lens; the lens's
# overrides are merged into it, as fetch_model_cfg does.
VITLENS_DEFAULT_ARGS: dict = {
    "visual_modality_type": "image", "use_perceiver": False, "use_visual_adapter": False, "pc_tokenizer": "pointbert",
    "pc_in_channel": 3, "pc_encoder_dims": 256, "pc_group_size": 32, "pc_npoints": 8192, "pc_num_group": 512,
    "pc_trans_dim": 384, "eeg_chans": 128, "eeg_stride": 1, "eeg_time_len": 512, "eeg_window_size": 1,
    "perceiver_as_identity": False, "perceiver_as_transformer": False, "perceiver_attn_dropout": 0.0,
    "perceiver_cross_dim_head": 64, "perceiver_cross_heads": 1, "perceiver_depth": 1, "perceiver_ff_dropout": 0.0,
    "perceiver_fourier_encode_data": False, "perceiver_input_axis": 1, "perceiver_input_chan": 1024,
    "perceiver_latent_dim": 1024, "perceiver_latent_dim_head": 64, "perceiver_latent_heads": 16,
    "perceiver_num_latents": 256, "perceiver_self_per_cross_attn": 1, "perceiver_weight_tie_layers": False,
    "disable_orig_pos": False, "disable_visual_adapter_pos": False, "force_quick_gelu": False,
}
# Other default_cfg arguments: training, data or other-modality settings that do not change a pc/EEG lens.
_INERT_ARGS = frozenset(
    "audio_clip_duration audio_fstride audio_mel_bins audio_sampling_rate audio_target_length audio_tstride aug_cfg "
    "cache_dir dataset_type device disable_pt_vit force_custom_text force_image_size force_patch_dropout image_mean "
    "image_std load_ckpt_strict model pc_radius perceiver_max_freq perceiver_num_classes perceiver_num_freq_bands "
    "precision pretrained pretrained_image skip_trans_first_n_layers torchcompile torchscript trace use_bn_sync "
    "use_bnb_linear use_eva_pt_lin use_openclip_transform v_key visual_arch ckpt_pth".split()
)
# Lens settings this port implements only at their ViT-Lens-L values.
_FIXED_ARGS = {"use_perceiver": True, "use_visual_adapter": True, "perceiver_as_identity": False,
               "perceiver_as_transformer": False, "perceiver_fourier_encode_data": False, "perceiver_input_axis": 1,
               "perceiver_weight_tie_layers": False, "disable_orig_pos": False, "disable_visual_adapter_pos": False,
               "force_quick_gelu": False}
_LENS_TYPES = {"pc": ("3dpc", "pc", "pointcloud", "point_cloud", "point cloud"), "eeg": ("eeg",)}
# open_clip config entries and the only values the towers here implement.
_VISION_FIXED = {"ls_init_value": None, "input_patchnorm": False, "global_average_pool": False,
                 "attentional_pool": False, "timm_model_name": None, "patch_dropout": 0.0}
_VISION_INERT = ("n_queries", "attn_pooler_heads", "output_tokens", "timm_model_pretrained", "timm_pool", "timm_proj",
                 "timm_proj_bias", "timm_drop", "timm_drop_path")
_TEXT_FIXED = {"ls_init_value": None, "hf_model_name": None, "embed_cls": False}
_TEXT_INERT = ("hf_tokenizer_name", "hf_model_pretrained", "proj", "pooler_type", "pad_id", "output_tokens")


def _check_entries(cfg: dict, fixed: dict, known: set | frozenset, where: str) -> None:
    unknown = sorted(set(cfg) - set(fixed) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown}; known: {sorted(set(fixed) | set(known))}")
    unsupported = {k: cfg[k] for k, v in fixed.items() if k in cfg and cfg[k] != v}
    if unsupported:
        raise ValueError(f"{where}: {unsupported} is not supported by the ViT-Lens towers here; they implement {fixed}")


def _trunk(vision_cfg: dict) -> dict:
    width, head_width = vision_cfg.get("width", 768), vision_cfg.get("head_width", 64)
    if width % head_width:
        raise ValueError(f"clip_model_config.vision_cfg: width {width} is not a multiple of head_width {head_width}")
    return {"width": width, "layers": vision_cfg.get("layers", 12), "heads": width // head_width,
            "mlp_ratio": float(vision_cfg.get("mlp_ratio", 4.0))}


def _head(scale: float = 1.0, learnable: bool = False) -> dict:
    return {"head_layer_norm_eps": 1e-5, "head_bias": False, "logit_scale": scale, "logit_scale_learnable": learnable}


def _lens_config(lens: str, overrides: dict, trunk: dict) -> dict:
    where = f"modality_cfg[{lens!r}]"
    _check_entries(overrides, {}, set(VITLENS_DEFAULT_ARGS) | _INERT_ARGS, where)
    args = {**VITLENS_DEFAULT_ARGS, **overrides}
    _check_entries({k: args[k] for k in _FIXED_ARGS}, _FIXED_ARGS, (), where)
    if args["visual_modality_type"] not in _LENS_TYPES[lens]:
        raise ValueError(f"{where}: visual_modality_type must be one of {_LENS_TYPES[lens]}, got {args['visual_modality_type']!r}")
    if args["perceiver_latent_dim"] != trunk["width"]:
        raise ValueError(f"{where}: perceiver_latent_dim {args['perceiver_latent_dim']} must equal the trunk width "
                         f"{trunk['width']} (the latents are the trunk's tokens)")
    perceiver = {
        "num_latents": args["perceiver_num_latents"], "perceiver_depth": args["perceiver_depth"],
        "cross_heads": args["perceiver_cross_heads"], "cross_dim_head": args["perceiver_cross_dim_head"],
        "latent_heads": args["perceiver_latent_heads"], "latent_dim_head": args["perceiver_latent_dim_head"],
        "self_per_cross_attn": args["perceiver_self_per_cross_attn"],
        "perceiver_attn_dropout": args["perceiver_attn_dropout"], "perceiver_ff_dropout": args["perceiver_ff_dropout"],
    }
    if lens == "pc":
        if args["pc_tokenizer"] != "pointbert" or args["pc_in_channel"] != 3:
            raise ValueError(f"{where}: only the PointBERT tokenizer on xyz (pc_in_channel 3) is supported, got "
                             f"pc_tokenizer={args['pc_tokenizer']!r}, pc_in_channel={args['pc_in_channel']}")
        stem = {"stem": "point", "num_points": args["pc_npoints"], "num_groups": args["pc_num_group"],
                "group_size": args["pc_group_size"], "encoder_dim": args["pc_encoder_dims"],
                "token_dim": args["pc_trans_dim"]}
        token_dim = args["pc_trans_dim"]
    else:
        stem = {"stem": "eeg", "in_channels": args["eeg_chans"], "time_len": args["eeg_time_len"],
                "window_size": args["eeg_window_size"], "stride": args["eeg_stride"]}
        token_dim = trunk["width"]
    if args["perceiver_input_chan"] != token_dim:
        raise ValueError(f"{where}: perceiver_input_chan {args['perceiver_input_chan']} must equal the lens token "
                         f"width {token_dim}")
    return {"family": "vitlens", **stem, **trunk, **perceiver, **_head()}


def vitlens_modality_configs(clip_model_config: dict | None = None, modality_cfg: dict | None = None,
                             bridges: bool = True) -> dict[str, dict]:
    """Our tower configs (family ``"vitlens"``) from ViT-Lens settings.

    Args:
        clip_model_config (`dict`, *optional*): open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``,
            as ``model_configs/ViT-L-14.json``); defaults to ViT-L-14. Each lens copies the vision trunk.
        modality_cfg (`dict`, *optional*): ViT-Lens lens name (``"pc"``, ``"eeg"``) -> its overrides of ViT-Lens's
            ``default_cfg``; defaults to ViT-Lens-L's. Settings the towers do not implement are refused by name.
        bridges (`bool`, *optional*, defaults to `True`): also describe the CLIP ``vision`` and ``text`` towers.

    Returns:
        `dict[str, dict]`: modality (``point``, ``eeg``, ``vision``, ``text``) -> tower config. The shared head width
        is the model's ``embed_dim`` (``clip_model_config["embed_dim"]``).

    Example:

    ```python
    >>> from codebind_hf.encoders.vitlens import vitlens_modality_configs
    >>> configs = vitlens_modality_configs()
    >>> list(configs), configs["point"]["num_groups"], configs["eeg"]["num_latents"], configs["text"]["heads"]
    (['point', 'eeg', 'vision', 'text'], 512, 256, 12)

    ```
    """
    clip = VIT_L_14 if clip_model_config is None else clip_model_config
    lenses = VITLENS_L["modality_cfg"] if modality_cfg is None else modality_cfg
    if not isinstance(clip, dict) or not isinstance(clip.get("vision_cfg", {}), dict):
        raise TypeError("clip_model_config must be a dict with a 'vision_cfg' dict (open_clip's model config schema)")
    if clip.get("quick_gelu", False):
        raise ValueError("clip_model_config: quick_gelu CLIPs are not supported (the trunks use exact GELU)")
    vision_cfg, text_cfg = clip.get("vision_cfg", {}), clip.get("text_cfg", {})
    _check_entries(vision_cfg, _VISION_FIXED, {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size",
                                               *_VISION_INERT}, "clip_model_config.vision_cfg")
    unknown = sorted(set(lenses) - set(VITLENS_LENSES))
    if unknown:
        raise ValueError(f"No tower for ViT-Lens lenses {unknown} in this package; supported: {sorted(VITLENS_LENSES)}")
    trunk = _trunk(vision_cfg)
    configs = {VITLENS_LENSES[lens]: _lens_config(lens, dict(lenses[lens] or {}), trunk) for lens in VITLENS_LENSES if lens in lenses}
    if bridges:
        _check_entries(text_cfg, _TEXT_FIXED, {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio",
                                               *_TEXT_INERT}, "clip_model_config.text_cfg")
        size = vision_cfg.get("image_size", 224)
        if not isinstance(size, int):
            raise ValueError(f"clip_model_config.vision_cfg.image_size must be one int (square images), got {size!r}")
        configs["vision"] = {"family": "vitlens", "stem": "patch", "image_size": size,
                             "patch_size": vision_cfg.get("patch_size", 16), **trunk, **_head()}
        configs["text"] = {"family": "vitlens", "stem": "tokens", "context_length": text_cfg.get("context_length", 77),
                           "vocab_size": text_cfg.get("vocab_size", 49408), "width": text_cfg.get("width", 512),
                           "layers": text_cfg.get("layers", 12), "heads": text_cfg.get("heads", 8),
                           "mlp_ratio": float(text_cfg.get("mlp_ratio", 4.0)), **_head(1 / 0.07, True)}
    return configs


def _positive_int(config: dict, key: str, modality: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{modality} tower config needs a positive integer {key!r}, got {value!r}")
    return value


class ViTLensTower(ModalityTower):
    """One tower of the ViT-Lens family (stems in the module docstring): stem -> CLIP trunk -> token states.

    Args:
        modality (`str`): canonical modality name.
        config (`dict`): a config from [`vitlens_modality_configs`].

    Reconstruction geometry: the trunk tokens of a lens are perceiver latents with no place in the input, so the
    target of a lens is the flattened input cut into ``num_latents`` equal chunks (the base class's default).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.encoders.vitlens import build_vitlens_tower, vitlens_modality_configs
    >>> clip = {"embed_dim": 16, "vision_cfg": {"width": 32, "layers": 2, "head_width": 16}}
    >>> lens = {"visual_modality_type": "3dpc", "use_perceiver": True, "use_visual_adapter": True,
    ...         "pc_npoints": 64, "pc_num_group": 8, "pc_group_size": 4, "pc_encoder_dims": 16, "pc_trans_dim": 8,
    ...         "perceiver_input_chan": 8, "perceiver_latent_dim": 32, "perceiver_num_latents": 4,
    ...         "perceiver_latent_heads": 2, "perceiver_latent_dim_head": 8, "perceiver_cross_dim_head": 8}
    >>> config = vitlens_modality_configs(clip, {"pc": lens}, bridges=False)["point"]
    >>> tower = build_vitlens_tower("point", config).eval()
    >>> out = tower(torch.randn(2, 64, 3))
    >>> out.last_hidden_state.shape, out.pooled_index.tolist()
    (torch.Size([2, 5, 32]), [0, 0])
    >>> tower.lora_target_modules(1)
    ['blocks.1.attn.qkv', 'blocks.1.attn.out_proj', 'blocks.1.mlp.fc1', 'blocks.1.mlp.fc2']

    ```
    """

    def __init__(self, modality: str, config: dict):
        super().__init__()
        self.modality, self.config = modality, dict(config)
        self.stem_kind = config.get("stem")
        if self.stem_kind not in VITLENS_STEMS:
            raise ValueError(f"{modality} tower config: 'stem' must be one of {VITLENS_STEMS}, got {self.stem_kind!r}")
        width, layers, heads = (_positive_int(config, k, modality) for k in ("width", "layers", "heads"))
        if width % heads:
            raise ValueError(f"{modality} tower: width {width} must be divisible by heads {heads}")
        self.hidden_size = width
        scale = width**-0.5
        if self.stem_kind == "tokens":
            context = _positive_int(config, "context_length", modality)
            self.token_embedding = nn.Embedding(_positive_int(config, "vocab_size", modality), width)
            self.positional_embedding = nn.Parameter(0.01 * torch.randn(context, width))
            self.sample_ndim, self.num_prefix_tokens = 1, 0
        else:
            num_tokens = self._build_stem(config, width)
            self.class_embedding = nn.Parameter(scale * torch.randn(width))
            self.positional_embedding = nn.Parameter(scale * torch.randn(num_tokens + 1, width))
            self.ln_pre = nn.LayerNorm(width)
        mlp_ratio = float(config.get("mlp_ratio", 4.0))
        self.blocks = nn.ModuleList(ImageBindBlock(width, heads, add_bias_kv=False, mlp_ratio=mlp_ratio, norm_eps=1e-5)
                                    for _ in range(layers))

    def _build_stem(self, config: dict, width: int) -> int:
        """Create the adapter (+ perceiver) or the patch convolution; set the input geometry; return the token count."""
        m = self.modality
        if self.stem_kind == "patch":
            size, patch = _positive_int(config, "image_size", m), _positive_int(config, "patch_size", m)
            self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
            self.sample_ndim, self.input_shape = 3, (3, size, size)
            self.num_patches = (size // patch) ** 2
            return self.num_patches
        if self.stem_kind == "point":
            groups, size = _positive_int(config, "num_groups", m), _positive_int(config, "group_size", m)
            points = _positive_int(config, "num_points", m)
            if points < max(groups, size):
                raise ValueError(f"{m} tower: num_points {points} must be at least num_groups {groups} and group_size {size}")
            token_dim = _positive_int(config, "token_dim", m)
            self.adapter = PointTokenizer(groups, size, _positive_int(config, "encoder_dim", m), token_dim)
            self.sample_ndim, self.input_shape = 2, (points, 3)
        else:
            channels, length = _positive_int(config, "in_channels", m), _positive_int(config, "time_len", m)
            window, stride = _positive_int(config, "window_size", m), _positive_int(config, "stride", m)
            if length < window:
                raise ValueError(f"{m} tower: time_len {length} is shorter than window_size {window}")
            self.adapter = EEGPatchEmbed(channels, length, window, stride, width)
            self.sample_ndim, self.input_shape, token_dim = 2, (channels, length), width
        self.perceiver = PerceiverResampler(
            token_dim, width, _positive_int(config, "num_latents", m), _positive_int(config, "perceiver_depth", m),
            _positive_int(config, "cross_heads", m), _positive_int(config, "cross_dim_head", m),
            _positive_int(config, "latent_heads", m), _positive_int(config, "latent_dim_head", m),
            int(config.get("self_per_cross_attn", 1)), float(config.get("perceiver_attn_dropout", 0.0)),
            float(config.get("perceiver_ff_dropout", 0.0)),
        )
        self.num_patches = config["num_latents"]
        return self.num_patches

    # ------------------------------------------------------------------ inputs
    def _check_inputs(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.modality} inputs must be a torch.Tensor, got {type(x).__name__}")
        if self.stem_kind == "tokens":
            context, vocab = self.positional_embedding.shape[0], self.token_embedding.num_embeddings
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(f"text inputs must be integer token ids, got dtype {x.dtype}")
            if x.ndim != 2 or x.shape[1] != context:
                raise ValueError(f"text token ids must have shape (batch, {context}), got {tuple(x.shape)}")
            # A value check needs the data: done eagerly, left out of a traced/compiled graph.
            if not torch.compiler.is_compiling() and x.numel() and (x.min() < 0 or x.max() >= vocab):
                raise ValueError(f"text token ids must lie in [0, {vocab}), got values in [{int(x.min())}, {int(x.max())}]")
            return
        if not x.is_floating_point():
            raise TypeError(f"{self.modality} inputs must be a floating point tensor, got dtype {x.dtype}")
        if self.stem_kind == "point":
            least = max(self.adapter.num_groups, self.adapter.group_size)
            if x.ndim != 3 or x.shape[2] != 3 or x.shape[1] < least:
                hint = " (the PointBERT lens takes xyz only; drop the extra channels)" if x.ndim == 3 and x.shape[2] > 3 else ""
                raise ValueError(f"{self.modality} inputs must have shape (batch, N, 3) with N >= {least} points, got "
                                 f"{tuple(x.shape)}{hint}")
        elif tuple(x.shape[1:]) != self.input_shape or x.ndim != 4 - (self.stem_kind == "eeg"):
            raise ValueError(f"{self.modality} inputs must have shape (batch, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")

    # ------------------------------------------------------------------ forward
    def lens(self, inputs: torch.Tensor) -> LensOutput:
        """The adapter's tokens (point, EEG towers): the perceiver's input and its parts."""
        if self.stem_kind not in ("point", "eeg"):
            raise ValueError(f"the {self.modality} tower ({self.stem_kind!r} stem) has no lens")
        return self.adapter(inputs)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Trunk input tokens `(batch, num_tokens, width)`: after ``ln_pre`` (text: token + position embeddings)."""
        if self.stem_kind == "tokens":
            return self.token_embedding(inputs) + self.positional_embedding
        if self.stem_kind == "patch":
            tokens = self.conv1(inputs).flatten(2).transpose(1, 2)
        else:
            tokens = self.perceiver(self.lens(inputs).tokens)
        cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, tokens], dim=1) + self.positional_embedding.to(tokens.dtype))

    def forward(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] = False,
        output_attentions: bool = False,
    ) -> TowerOutput:
        """Encode a batch.

        Args:
            inputs (`torch.Tensor`): a batch in the layout of the module docstring.
            attention_mask (`torch.LongTensor` of shape `(batch, context_length)`, *optional*): text only, and not
                needed: the causal mask keeps padding after the EOS token out of the pooled state.
            output_hidden_states (`bool` or `list[int]`, *optional*): also return the trunk input and every block's
                output (only those indices, the others `None`, for a list).
            output_attentions (`bool`, *optional*): also return every trunk block's attention weights.

        Returns:
            [`TowerOutput`]: ``last_hidden_state`` `(batch, num_tokens, width)` (before ``ln_post``) and
            ``pooled_index``: 0 (CLS), or for text the EOS position (the largest id, as CLIP pools).
        """
        self._check_inputs(inputs)
        if attention_mask is not None:
            if self.stem_kind != "tokens":
                raise ValueError(f"the {self.modality} tower takes no attention_mask (every token is real)")
            if tuple(attention_mask.shape) != tuple(inputs.shape):
                raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(inputs.shape)}")
        hidden = self.embed(inputs)
        if self.stem_kind == "tokens":
            length = hidden.shape[1]
            mask = torch.full((length, length), float("-inf"), dtype=hidden.dtype, device=hidden.device).triu(1)
            pooled = inputs.argmax(dim=-1)
        else:
            mask, pooled = None, torch.zeros(inputs.shape[0], dtype=torch.long, device=inputs.device)
        use_checkpoint = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        hidden, states, weights = run_blocks(self.blocks, hidden, mask, use_checkpoint, output_hidden_states,
                                             output_attentions)
        return TowerOutput(last_hidden_state=hidden, pooled_index=pooled, hidden_states=states, attentions=weights)

    def set_attention_config(self, config) -> None:
        """Let every trunk attention layer read its kernel (``config._attn_implementation``) from ``config`` (the
        lens's perceiver keeps SDPA: it returns no weights and has no eager variant in the reference)."""
        for block in self.blocks:
            block.attn.config = config

    @torch.no_grad()
    def init_embeddings_(self) -> None:
        """The construction-time initialisation of the class token and positions (through
        `transformers.initialization`, so loaded weights are left alone)."""
        if self.stem_kind == "tokens":
            init.normal_(self.positional_embedding, std=0.01)
        else:
            scale = self.hidden_size**-0.5
            init.normal_(self.class_embedding, std=scale)
            init.normal_(self.positional_embedding, std=scale)

    # ------------------------------------------------------------------ training helpers
    def lora_target_modules(self, last_n_blocks: int) -> list[str]:
        """Names of the ``qkv``, ``out_proj``, ``fc1`` and ``fc2`` linears of the last ``last_n_blocks`` trunk blocks
        (the lens's adapter and perceiver are not targeted)."""
        return last_blocks_lora_targets(len(self.blocks), last_n_blocks)

    def set_gradient_checkpointing(self, enable: bool = True) -> None:
        """Recompute each trunk block's activations in the backward pass while training (saves memory)."""
        self.gradient_checkpointing = bool(enable)

    @property
    def patch_dim(self) -> int:
        if self.stem_kind == "patch":
            return 3 * self.config["patch_size"] ** 2
        return super().patch_dim

    def patchify(self, inputs: torch.Tensor) -> torch.Tensor:
        """Image patches in token order for the ``patch`` stem; equal chunks of the flattened input for the lenses."""
        if self.stem_kind == "patch":
            p = self.config["patch_size"]
            return nn.functional.unfold(inputs, kernel_size=p, stride=p).transpose(1, 2)
        return super().patchify(inputs)


def build_vitlens_tower(modality: str, config: dict) -> ViTLensTower:
    """Build the ViT-Lens-family tower of ``modality`` from its config dict (see [`vitlens_modality_configs`])."""
    if config.get("family", "vitlens") != "vitlens":
        raise ValueError(f"{modality} config has family {config.get('family')!r}; build_vitlens_tower needs 'vitlens'")
    return ViTLensTower(modality, config)


def vitlens_parameter_counts(clip_model_config: dict | None = None, modality_cfg: dict | None = None) -> dict[str, int]:
    """Parameters per tower plus its shared head (``ln_post`` + ``proj``), counted on the meta device.

    Example:

    ```python
    >>> from codebind_hf.encoders.vitlens import vitlens_parameter_counts
    >>> counts = vitlens_parameter_counts()  # ViT-Lens-L
    >>> sorted(counts)
    ['eeg', 'point', 'text', 'vision']

    ```
    """
    from ..modules.heads import ProjectionHead

    clip = VIT_L_14 if clip_model_config is None else clip_model_config
    counts = {}
    with torch.device("meta"):
        for modality, cfg in vitlens_modality_configs(clip, modality_cfg).items():
            tower = build_vitlens_tower(modality, cfg)
            head = ProjectionHead(tower.hidden_size, clip["embed_dim"], cfg["head_layer_norm_eps"])
            counts[modality] = sum(math.prod(p.shape) for module in (tower, head) for p in module.parameters())
    return counts


__all__ = [
    "ViTLensTower",
    "build_vitlens_tower",
    "vitlens_modality_configs",
    "vitlens_parameter_counts",
    "VITLENS_L",
    "VIT_L_14",
    "VITLENS_DEFAULT_ARGS",
    "VITLENS_LENSES",
    "VITLENS_BRIDGES",
    "VITLENS_STEMS",
]
