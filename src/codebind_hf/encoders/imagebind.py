"""ImageBind modality towers (vision, text, audio, depth, thermal, IMU) plus CodeBind's tactile and EEG towers.

Each tower is a stem (patch/conv/linear/token embedding), CLS token and learned positional embedding, and
a trunk of pre-LN blocks with the reference's per-modality choices (key/value bias tokens for every
modality but vision and text, a pre-trunk LayerNorm for vision, a causal mask for text, progressive drop
path). Heads and logit scales live in the model (`ProjectionHead`, `LogitScale`), so a tower returns
token states and the index of the token its head pools.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import ModalityTower, TowerOutput
from .imagebind_layers import ImageBindBlock

IMAGEBIND_MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")
CODEBIND_EXTRA_MODALITIES = ("tactile", "eeg")

# The reference ImageBindModel constructor's defaults (imagebind_model.py), by keyword name.
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
    # CodeBind's additions (official code defaults).
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
# `imagebind_huge()` in the reference: what differs from the constructor defaults.
IMAGEBIND_HUGE: dict[str, object] = {
    "out_embed_dim": 1024,
    "vision_embed_dim": 1280,
    "vision_num_blocks": 32,
    "vision_num_heads": 16,
    "text_embed_dim": 1024,
    "text_num_blocks": 24,
    "text_num_heads": 16,
}
# Fixed logit scales of the reference postprocessors (text: learnable, initialised at 1/0.07).
_LOGIT_SCALES = {"vision": (1.0, False), "text": (1 / 0.07, True), "audio": (20.0, False), "depth": (5.0, False),
                 "thermal": (10.0, False), "imu": (5.0, False), "tactile": (5.0, False), "eeg": (5.0, False)}


def imagebind_modality_configs(modalities: tuple[str, ...] = IMAGEBIND_MODALITIES, **kwargs) -> dict[str, dict]:
    """Per-modality tower configs (family ``"imagebind"``) from the reference constructor's keyword names.

    Keywords not given keep the reference constructor's defaults; pass ``**IMAGEBIND_HUGE`` for imagebind_huge.
    Unknown keywords are an error naming them.
    """
    unknown = sorted(set(kwargs) - set(IMAGEBIND_CONSTRUCTOR_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown ImageBind constructor arguments {unknown}; known: {sorted(IMAGEBIND_CONSTRUCTOR_DEFAULTS)}")
    a = {**IMAGEBIND_CONSTRUCTOR_DEFAULTS, **kwargs}
    configs = {
        "vision": {"kernel_size": list(a["kernel_size"]), "image_size": 224, "video_frames": a["video_frames"],
                   "pre_transformer_ln": True, "add_bias_kv": False, "drop_path": 0.0},
        "text": {"context_length": 77, "vocab_size": 49408, "add_bias_kv": False, "drop_path": 0.0},
        "audio": {"kernel_size": a["audio_kernel_size"], "stride": a["audio_stride"], "in_channels": 1,
                  "input_size": [a["audio_num_mel_bins"], a["audio_target_len"]], "drop_path": a["audio_drop_path"]},
        "depth": {"kernel_size": a["depth_kernel_size"], "in_channels": 1, "input_size": [224, 224], "drop_path": a["depth_drop_path"]},
        "thermal": {"kernel_size": a["thermal_kernel_size"], "in_channels": 1, "input_size": [224, 224],
                    "drop_path": a["thermal_drop_path"]},
        "imu": {"kernel_size": a["imu_kernel_size"], "in_channels": 6, "input_size": [2000], "drop_path": a["imu_drop_path"],
                "head_dropout": 0.5},
        "tactile": {"kernel_size": a["tactile_kernel_size"], "in_channels": 3, "input_size": [224, 224],
                    "drop_path": a["tactile_drop_path"]},
        "eeg": {"kernel_size": a["eeg_patch_size"], "in_channels": a["eeg_channels"], "input_size": [a["eeg_data_len"]],
                "drop_path": a["eeg_drop_path"]},
    }
    out = {}
    for m in modalities:
        if m not in configs:
            raise ValueError(f"No ImageBind tower for modality {m!r}; available: {sorted(configs)}")
        scale, learnable = _LOGIT_SCALES[m]
        out[m] = {
            "family": "imagebind",
            "embed_dim": a[f"{m}_embed_dim"],
            "num_blocks": a[f"{m}_num_blocks"],
            "num_heads": a[f"{m}_num_heads"],
            "add_bias_kv": True,
            "pre_transformer_ln": False,
            "head_layer_norm_eps": 1e-6,
            "logit_scale": scale,
            "logit_scale_learnable": learnable,
            **configs[m],
        }
    return out


class ImageBindTower(ModalityTower):
    """One ImageBind modality tower: stem -> [CLS] + positional embedding -> (LayerNorm) -> blocks.

    Inputs: vision `(B, 3, H, W)` images (repeated to ``video_frames`` frames) or `(B, 3, T, H, W)` video clips;
    text `(B, 77)` token ids; audio `(B, 1, 128, 204)`; depth/thermal `(B, 1, 224, 224)`; tactile `(B, 3, 224, 224)`;
    IMU `(B, 6, 2000)`; EEG `(B, 128, L)`.
    """

    def __init__(self, modality: str, config: dict):
        super().__init__()
        self.modality = modality
        dim = config["embed_dim"]
        self.hidden_size = dim
        self.config = dict(config)
        if modality == "text":
            self.token_embedding = nn.Embedding(config["vocab_size"], dim)
            self.pos_embed = nn.Parameter(torch.zeros(1, config["context_length"], dim))
            mask = torch.full((config["context_length"],) * 2, float("-inf")).triu(1)
            self.register_buffer("causal_mask", mask)
            self.sample_ndim, self.num_prefix_tokens, num_tokens = 1, 0, config["context_length"]
        else:
            num_patches = self._build_stem(modality, config, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
            self.num_patches, self.num_prefix_tokens = num_patches, 1
        self.pre_norm = nn.LayerNorm(dim, eps=1e-6) if config.get("pre_transformer_ln") else None
        blocks, top = config["num_blocks"], config.get("drop_path", 0.0)
        rates = [top * i / max(1, blocks - 1) for i in range(blocks)]  # progressive, as the reference
        self.blocks = nn.ModuleList(
            ImageBindBlock(dim, config["num_heads"], config.get("add_bias_kv", True), rate) for rate in rates
        )

    def _build_stem(self, modality: str, config: dict, dim: int) -> int:
        kernel = config["kernel_size"]
        if modality == "vision":
            t, k, _ = kernel
            self.stem = nn.Conv3d(3, dim, kernel_size=tuple(kernel), stride=tuple(kernel), bias=False)
            self.stem_norm = None
            size = config["image_size"]
            self.sample_ndim, self.input_shape = 3, (3, size, size)
            self._patch_dim = 3 * t * k * k
            return (config["video_frames"] // t) * (size // k) ** 2
        if modality in ("imu", "eeg"):
            channels, (length,) = config["in_channels"], config["input_size"]
            if modality == "imu":
                self.stem = nn.Linear(channels * kernel, dim, bias=False)
            else:
                self.stem = nn.Conv1d(channels, dim, kernel_size=kernel, stride=kernel)
            self.stem_norm = nn.LayerNorm(dim)
            self.sample_ndim, self.input_shape = 2, (channels, length)
            self._patch_dim = channels * kernel
            return length // kernel
        stride = config.get("stride", kernel)
        channels, (height, width) = config["in_channels"], config["input_size"]
        self.stem = nn.Conv2d(channels, dim, kernel_size=kernel, stride=stride, bias=False)
        self.stem_norm = nn.LayerNorm(dim)
        self.sample_ndim, self.input_shape = 3, (channels, height, width)
        self._patch_dim = channels * kernel * kernel if stride == kernel else None
        return ((height - kernel) // stride + 1) * ((width - kernel) // stride + 1)

    # ------------------------------------------------------------------ tokens
    def _video(self, x: torch.Tensor) -> torch.Tensor:
        """Images `(B, 3, H, W)` become clips of ``video_frames`` repeated frames `(B, 3, T, H, W)`."""
        frames = self.config["video_frames"]
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, frames, -1, -1)
        return x

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "vision":
            tokens = self.stem(self._video(x)).flatten(2).transpose(1, 2)
        elif self.modality == "imu":
            k = self.config["kernel_size"]
            patches = x.unfold(-1, k, k).permute(0, 2, 1, 3)  # (B, patches, channels, k)
            tokens = self.stem(patches.reshape(x.shape[0], patches.shape[1], -1))
        else:
            tokens = self.stem(x).flatten(2).transpose(1, 2)
        if self.stem_norm is not None:
            tokens = self.stem_norm(tokens)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        if tokens.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"{self.modality} input of shape {tuple(x.shape)} gives {tokens.shape[1]} tokens; the tower's positional "
                f"embedding has {self.pos_embed.shape[1]} (expected inputs of shape (batch, {', '.join(map(str, self.input_shape))}))"
            )
        return tokens + self.pos_embed

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TowerOutput:
        mask = None
        if self.modality == "text":
            if inputs.shape[-1] != self.pos_embed.shape[1]:
                raise ValueError(f"text token ids must have length {self.pos_embed.shape[1]}, got shape {tuple(inputs.shape)}")
            hidden = self.token_embedding(inputs) + self.pos_embed
            mask = self.causal_mask.to(hidden.dtype)
            pooled = inputs.argmax(dim=-1)  # the EOS token has the largest id
        else:
            hidden = self._tokens(inputs)
            pooled = torch.zeros(inputs.shape[0], dtype=torch.long, device=inputs.device)
        if self.pre_norm is not None:
            hidden = self.pre_norm(hidden)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                hidden = checkpoint(block, hidden, mask, use_reentrant=False)
            else:
                hidden = block(hidden, mask)
        return TowerOutput(last_hidden_state=hidden, pooled_index=pooled)

    # ------------------------------------------------------------------ training helpers
    def lora_target_modules(self, last_n_blocks: int) -> list[str]:
        first = max(0, len(self.blocks) - last_n_blocks)
        return [f"blocks.{i}.{name}" for i in range(first, len(self.blocks)) for name in ("attn.qkv", "attn.out_proj", "mlp.fc1", "mlp.fc2")]

    @property
    def patch_dim(self) -> int:
        return self._patch_dim if getattr(self, "_patch_dim", None) else super().patch_dim

    def patchify(self, inputs: torch.Tensor) -> torch.Tensor:
        """The stem's own patches where they do not overlap (vision, depth, thermal, tactile, IMU, EEG)."""
        if self.modality == "vision":
            video = self._video(inputs)
            t, k, _ = self.config["kernel_size"]
            b, c, frames, h, w = video.shape
            grid = video.reshape(b, c, frames // t, t, h // k, k, w // k, k)
            return grid.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, -1, c * t * k * k)
        if self.modality in ("imu", "eeg"):
            k = self.config["kernel_size"]
            return inputs.unfold(-1, k, k).permute(0, 2, 1, 3).reshape(inputs.shape[0], -1, self._patch_dim)
        if self._patch_dim is not None:
            k = self.config["kernel_size"]
            return F.unfold(inputs, kernel_size=k, stride=k).transpose(1, 2)
        return super().patchify(inputs)  # audio: overlapping patches -> equal chunks

    def split_clips(self, inputs: torch.Tensor) -> bool:
        """Whether ``inputs`` carry a clips axis: videos `(B, clips, 3, T, H, W)` for vision, one extra dim otherwise."""
        if self.modality == "vision":
            return inputs.ndim == 6
        return inputs.ndim == self.sample_ndim + 2

    def accepts_ndim(self, ndim: int) -> bool:
        return ndim in ((4, 5, 6) if self.modality == "vision" else (self.sample_ndim + 1, self.sample_ndim + 2))


def build_imagebind_tower(modality: str, config: dict) -> ImageBindTower:
    return ImageBindTower(modality, config)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "ImageBindTower",
    "build_imagebind_tower",
    "imagebind_modality_configs",
    "IMAGEBIND_CONSTRUCTOR_DEFAULTS",
    "IMAGEBIND_HUGE",
    "IMAGEBIND_MODALITIES",
    "CODEBIND_EXTRA_MODALITIES",
    "count_parameters",
]
