"""ImageBind modality towers (vision, text, audio, depth, thermal, IMU) plus CodeBind's tactile and EEG towers.

A tower is a stem (patch convolution, linear patch embedding or token embedding), a CLS token and a learned
positional embedding, and a trunk of pre-LN blocks with the reference's per-modality choices:

| modality | stem (bias)                                   | stem LN | bias k/v | pre-trunk LN | drop path | scale     |
|----------|-----------------------------------------------|---------|----------|--------------|-----------|-----------|
| vision   | Conv3d (2,14,14) on 2-frame clips (no)         | -       | no       | yes (1e-6)   | 0         | none      |
| text     | token embedding, 77 positions, causal mask     | -       | no       | no           | 0         | learnable |
| audio    | Conv2d k16 s10 on (1, 128, 204) (no)           | yes     | yes      | no           | 0.1       | 20        |
| depth    | Conv2d k16 on (1, 224, 224) (no)               | yes     | yes      | no           | 0         | 5         |
| thermal  | Conv2d k16 on (1, 224, 224) (no)               | yes     | yes      | no           | 0         | 10        |
| imu      | Linear on (6, 2000) cut in 8-sample patches (no) | yes   | yes      | no           | 0.7       | 5         |
| tactile  | Conv2d k16 on (3, 224, 224) (no)               | yes     | yes      | no           | 0         | 5         |
| eeg      | Conv1d k1 on (128, 512) (yes)                  | yes     | yes      | no           | 0         | 5         |

Heads (LayerNorm 1e-6 -> pooled token -> (IMU: dropout 0.5) -> Linear without bias) and logit scales live in the
model (`ProjectionHead`, `LogitScale`), so a tower returns token states and the index of the token its head pools.
The stem LayerNorms keep PyTorch's default epsilon (1e-5), the trunk's LayerNorms use 1e-6, as the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .base import ModalityTower, TowerOutput
from .imagebind_layers import LAYER_SCALE_TYPES, ImageBindBlock, last_blocks_lora_targets, run_blocks

IMAGEBIND_MODALITIES: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")
CODEBIND_EXTRA_MODALITIES: tuple[str, ...] = ("tactile", "eeg")
IMAGEBIND_TOWER_MODALITIES: tuple[str, ...] = IMAGEBIND_MODALITIES + CODEBIND_EXTRA_MODALITIES

# The reference `ImageBindModel.__init__` keyword arguments and their defaults (imagebind_model.py), followed by
# the official CodeBind additions (tactile_*, eeg_*; `eeg_channels` is hard-coded to 128 there).
IMAGEBIND_CONSTRUCTOR_DEFAULTS: dict[str, object] = {
    "video_frames": 2,
    "kernel_size": (2, 14, 14),
    "audio_kernel_size": 16,
    "audio_stride": 10,
    "out_embed_dim": 768,
    "vision_embed_dim": 1024,
    "vision_num_blocks": 24,
    "vision_num_heads": 16,
    "audio_embed_dim": 768,
    "audio_num_blocks": 12,
    "audio_num_heads": 12,
    "audio_num_mel_bins": 128,
    "audio_target_len": 204,
    "audio_drop_path": 0.1,
    "text_embed_dim": 768,
    "text_num_blocks": 12,
    "text_num_heads": 12,
    "depth_embed_dim": 384,
    "depth_kernel_size": 16,
    "depth_num_blocks": 12,
    "depth_num_heads": 8,
    "depth_drop_path": 0.0,
    "thermal_embed_dim": 768,
    "thermal_kernel_size": 16,
    "thermal_num_blocks": 12,
    "thermal_num_heads": 12,
    "thermal_drop_path": 0.0,
    "imu_embed_dim": 512,
    "imu_kernel_size": 8,
    "imu_num_blocks": 6,
    "imu_num_heads": 8,
    "imu_drop_path": 0.7,
    "tactile_embed_dim": 768,
    "tactile_kernel_size": 16,
    "tactile_num_blocks": 12,
    "tactile_num_heads": 12,
    "tactile_drop_path": 0.0,
    "eeg_embed_dim": 768,
    "eeg_channels": 128,
    "eeg_data_len": 512,
    "eeg_patch_size": 1,
    "eeg_num_blocks": 6,
    "eeg_num_heads": 6,
    "eeg_drop_path": 0.0,
}
# `imagebind_huge()` in the reference: the keyword arguments that differ from the constructor defaults.
IMAGEBIND_HUGE: dict[str, object] = {
    "out_embed_dim": 1024,
    "vision_embed_dim": 1280,
    "vision_num_blocks": 32,
    "vision_num_heads": 16,
    "text_embed_dim": 1024,
    "text_num_blocks": 24,
    "text_num_heads": 16,
}
# Postprocessor logit scales (init value, learnable). Vision is only normalised (scale 1); the text scale is
# learnable from 1/0.07 and clamped at 100; tactile/EEG are the official CodeBind values.
IMAGEBIND_LOGIT_SCALES: dict[str, tuple[float, bool]] = {
    "vision": (1.0, False),
    "text": (1 / 0.07, True),
    "audio": (20.0, False),
    "depth": (5.0, False),
    "thermal": (10.0, False),
    "imu": (5.0, False),
    "tactile": (5.0, False),
    "eeg": (5.0, False),
}
# Stem kind per modality: how raw inputs become patch tokens.
_STEM_KINDS = {"vision": "conv3d", "text": "tokens", "audio": "conv2d", "depth": "conv2d", "thermal": "conv2d",
               "imu": "linear", "tactile": "conv2d", "eeg": "conv1d"}
STEM_KINDS = ("conv3d", "conv2d", "conv1d", "linear", "tokens")
_REQUIRED_KEYS = ("embed_dim", "num_blocks", "num_heads")


def imagebind_modality_configs(modalities: tuple[str, ...] | list[str] | None = None, **constructor_kwargs) -> dict[str, dict]:
    """Per-modality tower configs (family ``"imagebind"``) from the reference constructor's keyword arguments.

    Args:
        modalities (`tuple[str]`, *optional*): which towers to describe; defaults to all eight (the six ImageBind
            modalities, then CodeBind's tactile and EEG). ImageBind has no point-cloud tower.
        **constructor_kwargs: the reference ``ImageBindModel.__init__`` keyword arguments (``out_embed_dim``,
            ``vision_embed_dim``, ``audio_stride``, ...; see `IMAGEBIND_CONSTRUCTOR_DEFAULTS`). Those not given keep
            the reference constructor's defaults; pass ``**IMAGEBIND_HUGE`` for ``imagebind_huge``.

    Returns:
        `dict[str, dict]`: modality -> plain config dict with ``family``, ``embed_dim``, ``num_blocks``,
        ``num_heads``, the stem and trunk settings, ``head_dropout``, ``head_layer_norm_eps``, ``logit_scale``,
        ``logit_scale_learnable`` (the head's output width is the model's ``embed_dim``: ``out_embed_dim``).

    Example:

    ```python
    >>> from codebind_hf.encoders.imagebind import IMAGEBIND_HUGE, imagebind_modality_configs
    >>> configs = imagebind_modality_configs(**IMAGEBIND_HUGE)
    >>> list(configs)
    ['vision', 'text', 'audio', 'depth', 'thermal', 'imu', 'tactile', 'eeg']
    >>> configs["vision"]["embed_dim"], configs["imu"]["head_dropout"], configs["audio"]["logit_scale"]
    (1280, 0.5, 20.0)

    ```
    """
    unknown = sorted(set(constructor_kwargs) - set(IMAGEBIND_CONSTRUCTOR_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown ImageBind constructor arguments {unknown}; known: {sorted(IMAGEBIND_CONSTRUCTOR_DEFAULTS)}"
        )
    modalities = IMAGEBIND_TOWER_MODALITIES if modalities is None else tuple(modalities)
    bad = [m for m in modalities if m not in IMAGEBIND_TOWER_MODALITIES]
    if bad:
        raise ValueError(f"No ImageBind tower for modalities {bad}; available: {list(IMAGEBIND_TOWER_MODALITIES)}")
    a = {**IMAGEBIND_CONSTRUCTOR_DEFAULTS, **constructor_kwargs}
    kernel = [int(k) for k in a["kernel_size"]]
    if len(kernel) != 3:
        raise ValueError(f"kernel_size must have 3 entries (time, height, width), got {a['kernel_size']!r}")
    stems = {
        "vision": {"kernel_size": kernel, "in_channels": 3, "image_size": 224, "video_frames": a["video_frames"],
                   "image_frames": 2, "pre_transformer_ln": True, "add_bias_kv": False, "drop_path": 0.0},
        "text": {"vocab_size": 49408, "context_length": 77, "add_bias_kv": False, "drop_path": 0.0},
        "audio": {"kernel_size": a["audio_kernel_size"], "stride": a["audio_stride"], "in_channels": 1,
                  "input_size": [a["audio_num_mel_bins"], a["audio_target_len"]], "drop_path": a["audio_drop_path"]},
        "imu": {"kernel_size": a["imu_kernel_size"], "in_channels": 6, "input_size": [2000], "drop_path": a["imu_drop_path"]},
        "eeg": {"kernel_size": a["eeg_patch_size"], "in_channels": a["eeg_channels"], "input_size": [a["eeg_data_len"]],
                "drop_path": a["eeg_drop_path"]},
    }
    for m, channels in (("depth", 1), ("thermal", 1), ("tactile", 3)):
        stems[m] = {"kernel_size": a[f"{m}_kernel_size"], "in_channels": channels, "input_size": [224, 224],
                    "drop_path": a[f"{m}_drop_path"]}
    configs = {}
    for m in modalities:
        scale, learnable = IMAGEBIND_LOGIT_SCALES[m]
        configs[m] = {
            "family": "imagebind",
            "stem": _STEM_KINDS[m],
            "embed_dim": a[f"{m}_embed_dim"],
            "num_blocks": a[f"{m}_num_blocks"],
            "num_heads": a[f"{m}_num_heads"],
            "mlp_ratio": 4.0,
            "add_bias_kv": True,
            "pre_transformer_ln": False,
            "layer_scale_type": None,
            **stems[m],
            "head_dropout": 0.5 if m == "imu" else 0.0,
            "head_layer_norm_eps": 1e-6,
            "logit_scale": scale,
            "logit_scale_learnable": learnable,
        }
    return configs


def _positive_int(config: dict, key: str, modality: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{modality} tower config needs a positive integer {key!r}, got {value!r}")
    return value


class ImageBindTower(ModalityTower):
    """One ImageBind modality tower: stem -> [CLS] + positional embedding -> (LayerNorm) -> pre-LN blocks.

    Args:
        modality (`str`): canonical modality name; picks the default stem kind.
        config (`dict`): a config from [`imagebind_modality_configs`].

    Inputs (one sample per batch row; clip axes are handled by the model):
        vision `(B, 3, 224, 224)` images (repeated to 2 frames) or `(B, 3, T, 224, 224)` clips; text `(B, 77)` token
        ids; audio `(B, 1, 128, 204)`; depth/thermal `(B, 1, 224, 224)`; tactile `(B, 3, 224, 224)`; IMU
        `(B, 6, 2000)`; EEG `(B, 128, 512)`.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.encoders.imagebind import build_imagebind_tower, imagebind_modality_configs
    >>> config = imagebind_modality_configs(["depth"], depth_embed_dim=32, depth_num_blocks=2, depth_num_heads=4)
    >>> tower = build_imagebind_tower("depth", config["depth"]).eval()
    >>> out = tower(torch.randn(2, 1, 224, 224))
    >>> out.last_hidden_state.shape, out.pooled_index.tolist()
    (torch.Size([2, 197, 32]), [0, 0])
    >>> tower.lora_target_modules(1)
    ['blocks.1.attn.qkv', 'blocks.1.attn.out_proj', 'blocks.1.mlp.fc1', 'blocks.1.mlp.fc2']

    ```
    """

    def __init__(self, modality: str, config: dict):
        super().__init__()
        self.modality = modality
        self.config = dict(config)
        self.stem_kind = config.get("stem", _STEM_KINDS.get(modality))
        if self.stem_kind not in STEM_KINDS:
            raise ValueError(f"{modality} tower config: 'stem' must be one of {STEM_KINDS}, got {self.stem_kind!r}")
        dim, num_blocks, num_heads = (_positive_int(config, k, modality) for k in _REQUIRED_KEYS)
        if dim % num_heads:
            raise ValueError(f"{modality} tower: embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.hidden_size = dim
        if self.stem_kind == "tokens":
            context = config["context_length"]
            self.token_embedding = nn.Embedding(config["vocab_size"], dim)
            self.pos_embed = nn.Parameter(torch.zeros(1, context, dim))
            self.register_buffer("causal_mask", torch.full((context, context), float("-inf")).triu(1))
            self.sample_ndim, self.num_prefix_tokens = 1, 0
        else:
            self.num_patches = self._build_stem(config, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
            self.num_prefix_tokens = 1
        self.pre_norm = nn.LayerNorm(dim, eps=1e-6) if config.get("pre_transformer_ln", False) else None
        layer_scale = config.get("layer_scale_type")
        if layer_scale not in LAYER_SCALE_TYPES:
            raise ValueError(f"{modality} tower: layer_scale_type must be one of {LAYER_SCALE_TYPES}, got {layer_scale!r}")
        # Progressive stochastic depth: 0 for the first block up to `drop_path` for the last, as the reference.
        rates = torch.linspace(0, float(config.get("drop_path", 0.0)), num_blocks, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            ImageBindBlock(
                dim,
                num_heads,
                add_bias_kv=config.get("add_bias_kv", True),
                drop_path=rate,
                mlp_ratio=config.get("mlp_ratio", 4.0),
                layer_scale_type=layer_scale,
                layer_scale_init_value=config.get("layer_scale_init_value", 1e-4),
            )
            for rate in rates
        )
        self._init_weights()

    def _build_stem(self, config: dict, dim: int) -> int:
        """Create ``stem`` (and ``stem_norm``); set ``sample_ndim``/``input_shape``; return the patch count."""
        kernel, channels = config["kernel_size"], config["in_channels"]
        if self.stem_kind == "conv3d":
            t, kh, kw = kernel
            size = config["image_size"]
            self.stem = nn.Conv3d(channels, dim, kernel_size=tuple(kernel), stride=tuple(kernel), bias=False)
            self.stem_norm = None
            self.sample_ndim, self.input_shape = 3, (channels, size, size)
            self._patch_dim = channels * t * kh * kw
            self._spatial_patches = (size // kh) * (size // kw)
            return (config["video_frames"] // t) * self._spatial_patches
        self.stem_norm = nn.LayerNorm(dim)  # PyTorch's default eps, as the reference's stem norm_layer
        if self.stem_kind in ("linear", "conv1d"):
            (length,) = config["input_size"]
            if length % kernel:
                raise ValueError(f"{self.modality} tower: input length {length} is not a multiple of kernel_size {kernel}")
            if self.stem_kind == "linear":
                self.stem = nn.Linear(channels * kernel, dim, bias=False)
            else:
                self.stem = nn.Conv1d(channels, dim, kernel_size=kernel, stride=kernel)  # with bias, as CodeBind
            self.sample_ndim, self.input_shape = 2, (channels, length)
            self._patch_dim = channels * kernel
            return length // kernel
        stride = config.get("stride", kernel)
        height, width = config["input_size"]
        self.stem = nn.Conv2d(channels, dim, kernel_size=kernel, stride=stride, bias=False)
        self.sample_ndim, self.input_shape = 3, (channels, height, width)
        # Non-overlapping patches can be reconstructed patch by patch; overlapping (audio) ones cannot.
        self._patch_dim = channels * kernel * kernel if stride == kernel else None
        return ((height - kernel) // stride + 1) * ((width - kernel) // stride + 1)

    @torch.no_grad()
    def init_embeddings_(self) -> None:
        """The reference's token, CLS and position initialisation (OpenCLIP-style), and the causal mask.

        Goes through `transformers.initialization`, so weights a checkpoint loaded are left alone.
        """
        dim = self.hidden_size
        if self.stem_kind == "tokens":
            init.normal_(self.token_embedding.weight, std=0.02)
            init.normal_(self.pos_embed, std=0.01)
            context = self.causal_mask.shape[0]
            init.copy_(self.causal_mask, torch.full((context, context), float("-inf"), device=self.causal_mask.device).triu(1))
        else:
            init.normal_(self.cls_token, std=dim**-0.5)
            init.normal_(self.pos_embed, std=0.01 if self.stem_kind in ("linear", "conv1d") else dim**-0.5)

    @torch.no_grad()
    def _init_weights(self) -> None:
        """The reference's initialisation (OpenCLIP-style embeddings, JAX-style xavier linears)."""
        self.init_embeddings_()
        for block in self.blocks:
            for linear in (block.attn.qkv, block.attn.out_proj, block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.zeros_(linear.bias)
            if block.attn.bias_k is not None:
                nn.init.xavier_normal_(block.attn.bias_k)
                nn.init.xavier_normal_(block.attn.bias_v)

    # ------------------------------------------------------------------ inputs
    def token_limits(self) -> tuple[int | None, int | None]:
        if self.stem_kind != "tokens":
            return None, None
        return self.token_embedding.num_embeddings, self.pos_embed.shape[1]

    def _check_inputs(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.modality} inputs must be a torch.Tensor, got {type(x).__name__}")
        if self.stem_kind == "tokens":
            context, vocab = self.pos_embed.shape[1], self.token_embedding.num_embeddings
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
        expected = f"(batch, {', '.join(map(str, self.input_shape))})"
        if self.stem_kind == "conv3d":
            channels, height, width = self.input_shape
            ok = x.ndim in (4, 5) and x.shape[1] == channels and tuple(x.shape[-2:]) == (height, width)
            expected += f" images or (batch, {channels}, frames, {height}, {width}) clips"
        else:
            ok = tuple(x.shape[1:]) == self.input_shape
        if not ok:
            raise ValueError(
                f"{self.modality} inputs must have shape {expected}, got {tuple(x.shape)} (the stem and the "
                f"positional embedding of {self.pos_embed.shape[1]} tokens are sized for that)"
            )

    def _video(self, x: torch.Tensor) -> torch.Tensor:
        """Images `(B, C, H, W)` become clips `(B, C, image_frames, H, W)` of repeated frames (clips pass through)."""
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.config.get("image_frames", 2), -1, -1)
        return x

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Trunk input tokens `(batch, num_tokens, hidden_size)`: stem (+ LayerNorm), CLS token, positions."""
        if self.stem_kind == "tokens":
            return self.token_embedding(inputs) + self.pos_embed
        if self.stem_kind == "conv3d":
            tokens = self.stem(self._video(inputs)).flatten(2).transpose(1, 2)
        elif self.stem_kind == "linear":
            k = self.config["kernel_size"]
            # (B, C, L) -> (B, L/k, C*k): each token is a channel-major window of k samples, as the reference.
            patches = inputs.unfold(-1, k, k).permute(0, 2, 1, 3)
            tokens = self.stem(patches.reshape(inputs.shape[0], patches.shape[1], -1))
        else:
            tokens = self.stem(inputs).flatten(2).transpose(1, 2)
        if self.stem_norm is not None:
            tokens = self.stem_norm(tokens)
        tokens = torch.cat([self.cls_token.expand(inputs.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        pos = self.pos_embed
        if self.stem_kind == "conv3d" and tokens.shape[1] == self._spatial_patches + 1 < pos.shape[1]:
            pos = pos[:, : tokens.shape[1]]  # one temporal patch (an image): the first frame's positions, as the reference
        if tokens.shape[1] != pos.shape[1]:
            raise ValueError(
                f"{self.modality} input of shape {tuple(inputs.shape)} gives {tokens.shape[1]} tokens; the tower's "
                f"positional embedding has {pos.shape[1]}"
            )
        return tokens + pos

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] = False,
        output_attentions: bool = False,
    ) -> TowerOutput:
        """Encode a batch.

        Args:
            inputs (`torch.Tensor`): a batch in the layout of the class docstring.
            attention_mask (`torch.LongTensor` of shape `(batch, 77)`, *optional*): text only, and not needed: the
                causal mask already keeps padding after the EOS token out of the pooled state.
            output_hidden_states (`bool` or `list[int]`, *optional*): also return the trunk input and every block's
                output (only those indices, the others `None`, for a list).
            output_attentions (`bool`, *optional*): also return every block's attention weights (eager attention).

        Returns:
            [`TowerOutput`]: ``last_hidden_state`` `(batch, num_tokens, hidden_size)` after the last block (before the
            head's LayerNorm) and ``pooled_index`` `(batch,)`: 0 (CLS), or for text the EOS position (largest id).
        """
        self._check_inputs(inputs)
        if attention_mask is not None:
            if self.stem_kind != "tokens":
                raise ValueError(f"the {self.modality} tower takes no attention_mask (every token is real)")
            if tuple(attention_mask.shape) != tuple(inputs.shape):
                raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(inputs.shape)}")
        hidden = self.embed(inputs)
        if self.stem_kind == "tokens":
            mask = self.causal_mask.to(hidden.dtype)
            pooled = inputs.argmax(dim=-1)  # the EOS token has the largest id of the CLIP vocabulary
        else:
            mask = None
            pooled = torch.zeros(inputs.shape[0], dtype=torch.long, device=inputs.device)
        if self.pre_norm is not None:
            hidden = self.pre_norm(hidden)
        use_checkpoint = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        hidden, states, weights = run_blocks(self.blocks, hidden, mask, use_checkpoint, output_hidden_states,
                                             output_attentions)
        return TowerOutput(last_hidden_state=hidden, pooled_index=pooled, hidden_states=states, attentions=weights)

    def set_attention_config(self, config) -> None:
        """Let every attention layer read its kernel (``config._attn_implementation``) from ``config``."""
        for block in self.blocks:
            block.attn.config = config

    # ------------------------------------------------------------------ training helpers
    def lora_target_modules(self, last_n_blocks: int) -> list[str]:
        """Names of the ``qkv``, ``out_proj``, ``fc1`` and ``fc2`` linears of the last ``last_n_blocks`` blocks.

        A count above the number of blocks selects all of them.
        """
        return last_blocks_lora_targets(len(self.blocks), last_n_blocks)

    def set_gradient_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass while training (saves memory)."""
        self.gradient_checkpointing = bool(enable)

    @property
    def drop_path_rates(self) -> list[float]:
        return [block.drop_path.p for block in self.blocks]

    # ------------------------------------------------------------------ reconstruction geometry
    @property
    def patch_dim(self) -> int:
        return self._patch_dim if getattr(self, "_patch_dim", None) else super().patch_dim

    def patchify(self, inputs: torch.Tensor) -> torch.Tensor:
        """The stem's own patches where they do not overlap (vision, depth, thermal, tactile, IMU, EEG).

        Returns `(batch, num_patches, patch_dim)`, one row per patch token in token order.
        """
        if self.stem_kind == "conv3d":
            video = self._video(inputs)
            t, kh, kw = self.config["kernel_size"]
            b, c, frames, h, w = video.shape
            grid = video.reshape(b, c, frames // t, t, h // kh, kh, w // kw, kw)
            return grid.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, -1, c * t * kh * kw)
        if self.stem_kind in ("linear", "conv1d"):
            k = self.config["kernel_size"]
            return inputs.unfold(-1, k, k).permute(0, 2, 1, 3).reshape(inputs.shape[0], -1, self._patch_dim)
        if getattr(self, "_patch_dim", None) is not None:
            k = self.config["kernel_size"]
            return F.unfold(inputs, kernel_size=k, stride=k).transpose(1, 2)
        return super().patchify(inputs)  # audio: overlapping patches -> equal chunks

    def split_clips(self, inputs: torch.Tensor) -> bool:
        """Whether ``inputs`` carry a clips axis: videos `(B, clips, 3, T, H, W)` for vision, one extra dim otherwise."""
        if self.stem_kind == "conv3d":
            return inputs.ndim == 6
        return inputs.ndim == self.sample_ndim + 2

    def accepts_ndim(self, ndim: int) -> bool:
        if self.stem_kind == "conv3d":
            return ndim in (4, 5, 6)
        return ndim in (self.sample_ndim + 1, self.sample_ndim + 2)


def build_imagebind_tower(modality: str, config: dict) -> ImageBindTower:
    """Build the ImageBind-family tower of ``modality`` from its config dict (see [`imagebind_modality_configs`])."""
    if config.get("family", "imagebind") != "imagebind":
        raise ValueError(f"{modality} config has family {config.get('family')!r}; build_imagebind_tower needs 'imagebind'")
    return ImageBindTower(modality, config)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "ImageBindTower",
    "build_imagebind_tower",
    "imagebind_modality_configs",
    "count_parameters",
    "IMAGEBIND_CONSTRUCTOR_DEFAULTS",
    "IMAGEBIND_HUGE",
    "IMAGEBIND_LOGIT_SCALES",
    "IMAGEBIND_MODALITIES",
    "CODEBIND_EXTRA_MODALITIES",
    "IMAGEBIND_TOWER_MODALITIES",
    "STEM_KINDS",
]
