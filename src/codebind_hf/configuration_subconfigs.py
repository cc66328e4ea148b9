"""Typed parts of a [`CodeBindConfig`]: the decoder sub-config and the towers' config views.

transformers treats a composite config's parts as typed configs: ``config.sub_configs`` lists them,
``attn_implementation`` and the output flags recurse into them, and ``get_text_config()`` finds the text part.
The reconstruction decoder is such a sub-config. The towers stay described by ``config.modalities`` (one dict per
modality, the serialised form every artifact uses); each has a typed *view* built from that dict, cached, so that
the tower is built from it and changes made through it (``_attn_implementation``, special token ids) persist.
"""

from __future__ import annotations

import json
from dataclasses import fields

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .adapters.io import resolve_hub_revision
from .encoders.pretrained import POOLINGS, backbone_view, saved_tower_spec
from .modalities import MODALITIES, canonical_modality
from .validation import check_fields

_DECODER_SETTINGS = ("enabled", "hidden_size", "num_layers", "num_heads", "mlp_ratio")
# Keys `PreTrainedConfig.to_dict` writes besides its fields (a saved sub-config carries them back in).
_SERIALISATION_KEYS = {"model_type", "transformers_version", "output_attentions", "attn_implementation"}


@strict(accept_kwargs=True)
class CodeBindDecoderConfig(PreTrainedConfig):
    r"""
    Reconstruction decoder of a [`CodeBindModel`] (training only): a ViT of ``num_layers`` blocks.

    Args:
        enabled (`bool`, *optional*, defaults to `True`): build the decoder (models with paths only).
        hidden_size (`int`, *optional*, defaults to 512): width of the blocks.
        num_layers (`int`, *optional*, defaults to 8): number of blocks.
        num_heads (`int`, *optional*, defaults to 16): attention heads per block.
        mlp_ratio (`float`, *optional*, defaults to 4.0): MLP width over ``hidden_size``.

    Example:

    ```python
    >>> from codebind_hf import CodeBindConfig
    >>> config = CodeBindConfig(decoder={"hidden_size": 64, "num_layers": 2})
    >>> type(config.decoder).__name__, config.decoder.hidden_size, list(config.sub_configs)
    ('CodeBindDecoderConfig', 64, ['decoder'])

    ```
    """

    model_type = "codebind_decoder"
    base_config_key = "decoder"

    enabled: bool = True
    hidden_size: int = 512
    num_layers: int = 8
    num_heads: int = 16
    mlp_ratio: float = 4.0

    @classmethod
    def coerce(cls, value) -> CodeBindDecoderConfig:
        """A decoder config from ``None`` (defaults), a dict of its settings or an instance; unknown keys are errors."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"decoder must be a dict or {cls.__name__}, got {type(value).__name__}")
        known = {f.name for f in fields(cls)} | _SERIALISATION_KEYS
        unknown = sorted(set(value) - known)
        # Hand-written settings are checked; a saved sub-config (it carries its model_type) loads as any config does.
        if unknown and "model_type" not in value:
            raise ValueError(f"Unknown decoder keys {unknown}; expected some of {list(_DECODER_SETTINGS)}")
        return cls(**{k: v for k, v in value.items() if k not in ("model_type", "transformers_version")})

    def settings(self) -> dict:
        """The decoder's own settings as a plain dict (what `coerce` takes)."""
        return {name: getattr(self, name) for name in _DECODER_SETTINGS}

    # Read access as a mapping, as when ``config.decoder`` was a dict: ``{**config.decoder}``, ``config.decoder["enabled"]``.
    def keys(self):
        return list(_DECODER_SETTINGS)

    def __getitem__(self, key: str):
        if key not in _DECODER_SETTINGS:
            raise KeyError(f"{key!r} is not a decoder setting; they are {list(_DECODER_SETTINGS)}")
        return getattr(self, key)

    def validate_architecture(self):
        if self.hidden_size < 1 or self.num_layers < 1 or self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"decoder needs positive hidden_size, num_layers and num_heads with hidden_size divisible by num_heads; "
                f"got {self.hidden_size}, {self.num_layers}, {self.num_heads}"
            )


# The name this module's first version used (a plain dataclass with the same fields).
DecoderConfig = CodeBindDecoderConfig


@strict(accept_kwargs=True)
class CodeBindTowerConfig(PreTrainedConfig):
    r"""
    Typed view of a tower of this package's own families (``modalities[m]`` with ``family="imagebind"`` or
    ``"vitlens"``), as ``config.<modality>_config`` returns it; its ``_attn_implementation`` is what the tower's
    attention layers run.

    Args:
        hidden_size (`int`, *optional*, defaults to 768): token width (``embed_dim`` / ``width``).
        num_hidden_layers (`int`, *optional*, defaults to 12): trunk blocks (``num_blocks`` / ``layers``).
        num_attention_heads (`int`, *optional*, defaults to 12): heads per block (``num_heads`` / ``heads``).
        vocab_size (`int`, *optional*): text towers only.
        max_position_embeddings (`int`, *optional*): text towers only (``context_length``).
    """

    model_type = "codebind_tower"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    vocab_size: int | None = None
    max_position_embeddings: int | None = None

    @classmethod
    def from_tower_dict(cls, tower: dict) -> CodeBindTowerConfig:
        """The view of a tower dict: ImageBind's keys (``embed_dim``, ...) or ViT-Lens's (``width``, ...)."""
        return cls(
            hidden_size=tower.get("embed_dim", tower.get("width", 768)),
            num_hidden_layers=tower.get("num_blocks", tower.get("layers", 12)),
            num_attention_heads=tower.get("num_heads", tower.get("heads", 12)),
            vocab_size=tower.get("vocab_size"),
            max_position_embeddings=tower.get("context_length"),
        )


def _build_tower_view(tower: dict) -> PreTrainedConfig:
    if tower.get("family") != "hf":
        return CodeBindTowerConfig.from_tower_dict(tower)
    if tower.get("pretrained") is None:
        return backbone_view(tower)  # the `backbone` dict's config
    # A Hub checkpoint is pinned to the commit its revision resolves to now (None for a local folder): its config
    # and weights come from that commit, and a saved config records it.
    resolved = resolve_hub_revision(tower["pretrained"], tower.get("revision"))
    return backbone_view(tower, getattr(resolved, "resolved", None))


# ---------------------------------------------------------------------------- towers of family "hf"
# Settings of an "hf" tower spec besides the head settings (`HFBackboneTower` documents them).
HF_TOWER_FIELDS = {
    "backbone": dict, "pretrained": str, "revision": (str, type(None)), "subfolder": (str, type(None)),
    "component": (str, type(None)), "use_projection": bool, "projection": (str, type(None)), "pooling": str,
    "lora_target_modules": (list, type(None)), "blocks": (str, type(None)), "input_kwarg": str, "sample_ndim": int,
    "source": dict, "checkpoint_processor": str,
}
# What preprocesses a pretrained tower's inputs: an Auto class of its checkpoint, or CodeBind's own components.
TOWER_PROCESSORS = ("tokenizer", "image_processor", "feature_extractor", "processor", "codebind")


def check_hf_tower(name: str, tower: dict) -> None:
    """Refuse an ``hf`` tower spec that cannot build a tower, naming the entry: it needs ``backbone`` (a config dict
    with ``model_type``) or ``pretrained`` (a Hub id or local folder), not both; typed settings; a known pooling."""
    where = f"modalities[{name!r}]"
    check_fields(tower, HF_TOWER_FIELDS, where, required=())
    has_backbone, has_checkpoint = isinstance(tower.get("backbone"), dict), tower.get("pretrained") is not None
    if has_backbone == has_checkpoint:
        raise ValueError(
            f"{where} of family 'hf' needs either a 'backbone' config dict with a 'model_type' or a 'pretrained' "
            f"checkpoint (Hub id or local folder), {'not both' if has_backbone else 'got neither'}"
        )
    if has_backbone and "model_type" not in tower["backbone"]:
        raise ValueError(f"{where}['backbone'] needs a 'model_type'")
    if not has_checkpoint and any(tower.get(k) for k in ("revision", "subfolder")):
        raise ValueError(f"{where}: 'revision' and 'subfolder' say where a 'pretrained' checkpoint is; there is none")
    if tower.get("pooling", "cls") not in POOLINGS:
        raise ValueError(f"{where}: pooling must be one of {list(POOLINGS)}, got {tower['pooling']!r}")
    # Which of the checkpoint's components preprocesses ("processor" stays the modality spec's own component).
    if tower.get("checkpoint_processor", "codebind") not in TOWER_PROCESSORS:
        raise ValueError(f"{where}: checkpoint_processor must be one of {list(TOWER_PROCESSORS)}, got "
                         f"{tower['checkpoint_processor']!r}")
    if tower.get("projection") and not tower.get("use_projection"):
        raise ValueError(f"{where}: 'projection' names the checkpoint projection to use; set use_projection: true")


class TowerConfigViews:
    """``tower_config(m)``, ``<modality>_config`` properties and ``get_text_config`` for [`CodeBindConfig`]."""

    def tower_config(self, modality: str) -> PreTrainedConfig | None:
        """The typed config of the tower of ``modality`` (``None`` without one); the same object until
        ``modalities[modality]`` changes."""
        modality = canonical_modality(modality)
        tower = (self.modalities or {}).get(modality)
        if tower is None:
            return None
        cache = self.__dict__.setdefault("_tower_configs", {})
        key = json.dumps(tower, sort_keys=True, default=str)
        if modality not in cache or cache[modality][0] != key:
            cache[modality] = (key, _build_tower_view(tower))
        return cache[modality][1]

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        """The text tower's config (transformers' `Trainer` and tokenizer alignment read it), or this config
        when the model has no text tower. The reconstruction decoder is not a text decoder."""
        text = self.tower_config("text") if "text" in (self.modalities or {}) else None
        return self if text is None else text.get_text_config()  # a CLIP/CLAP checkpoint's config: its text part

    def __setattr__(self, key, value):
        if key == "decoder" and not isinstance(value, CodeBindDecoderConfig) and getattr(self, "_post_init_done", False):
            value = CodeBindDecoderConfig.coerce(value)  # `config.decoder = {...}` stays typed
        super().__setattr__(key, value)

    def to_dict(self) -> dict:
        output = super().to_dict()
        output.pop("_tower_configs", None)  # a cache of views of `modalities`, which is saved
        # A pretrained tower is saved as its architecture + source: its weights travel in the model's own files.
        if output.get("modalities"):
            output["modalities"] = {m: saved_tower_spec(spec, self.tower_config(m)) if spec.get("family") == "hf"
                                    else spec for m, spec in output["modalities"].items()}
        return output


def _view_property(modality: str) -> property:
    return property(lambda self: self.tower_config(modality), doc=f"Typed config of the {modality} tower, or None.")


for _modality in MODALITIES:
    setattr(TowerConfigViews, f"{_modality}_config", _view_property(_modality))

__all__ = ["CodeBindDecoderConfig", "DecoderConfig", "CodeBindTowerConfig", "TowerConfigViews"]
