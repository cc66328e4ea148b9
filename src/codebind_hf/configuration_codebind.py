"""Configuration of CodeBind models: towers per modality, codebooks, decoder and training paths."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .modalities import MODALITIES, canonical_modality
from .validation import check_fields, check_keys

TOWER_FAMILIES = ("hf", "imagebind", "vitlens")
LOSS_NAMES = ("align", "recon", "vq", "ctr", "cuni", "cm", "orth", "uni")

# App. Table 1 (CodeBind-IB), per target modality; align = recon = 1 everywhere.
_PAPER_WEIGHTS = {
    "vision": {"vq": 10.0, "ctr": 0.01, "cuni": 0.01, "cm": 0.05, "orth": 0.1, "uni": 1.0},
    "depth": {"vq": 1000.0, "ctr": 0.01, "cuni": 0.01, "cm": 0.1, "orth": 0.1, "uni": 1.0},
    "audio": {"vq": 50.0, "ctr": 0.01, "cuni": 0.01, "cm": 1.0, "orth": 0.1, "uni": 1.0},
    "thermal": {"vq": 1000.0, "ctr": 0.05, "cuni": 0.05, "cm": 1.0, "orth": 1.0, "uni": 1.0},
    "tactile": {"vq": 1000.0, "ctr": 0.01, "cuni": 0.01, "cm": 0.1, "orth": 0.05, "uni": 0.1},
    "eeg": {"vq": 10.0, "ctr": 0.01, "cuni": 0.01, "cm": 0.1, "orth": 0.05, "uni": 0.1},
}
# Modalities the paper gives no weights for (IMU, point clouds) start from these.
_DEFAULT_WEIGHTS = {"vq": 10.0, "ctr": 0.01, "cuni": 0.01, "cm": 0.1, "orth": 0.1, "uni": 1.0}


def paper_loss_weights(target: str) -> dict[str, float]:
    """The paper's loss weights for a path with this target modality (App. Table 1)."""
    weights = {"align": 1.0, "recon": 1.0}
    weights.update(_PAPER_WEIGHTS.get(canonical_modality(target), _DEFAULT_WEIGHTS))
    return weights


@dataclass
class QuantizerConfig:
    """Codebook settings shared by every [`CompositionalQuantizer`] of the model."""

    shared_codebook_size: int = 1024
    specific_codebook_size: int = 256
    codevector_dim: int = 8
    decay: float = 0.99
    commitment_weight: float = 0.25
    eps: float = 1e-5
    usage_decay: float = 0.99
    reinit_temperature: float = 10.0
    dead_code_alpha: float = 1e-3

    def quantizer_kwargs(self) -> dict:
        """Keyword arguments of `CompositionalQuantizer` other than the codebook size."""
        kwargs = asdict(self)
        kwargs.pop("shared_codebook_size")
        kwargs.pop("specific_codebook_size")
        return kwargs


@dataclass
class DecoderConfig:
    """Reconstruction decoder (training only): a ViT of ``num_layers`` blocks of width ``hidden_size``."""

    enabled: bool = True
    hidden_size: int = 512
    num_layers: int = 8
    num_heads: int = 16
    mlp_ratio: float = 4.0


@dataclass
class PathConfig:
    """One bridge-target path: the target modality trained against its bridges."""

    bridges: list[str] = field(default_factory=lambda: ["text", "vision"])
    temperature: float = 0.05
    loss_weights: dict[str, float] = field(default_factory=dict)
    adaptive_weights: bool = False
    orthogonality_variant: str = "paper"
    code_matching_variant: str = "paper"
    # How the target tower is tuned: "lora" (peft, rank/alpha on the last blocks), "headtune" or "fulltune".
    mode: str = "lora"
    lora_rank: int = 4
    lora_alpha: int = 8
    lora_last_n_blocks: int = 6


def _dataclass_from(cls, value, what: str):
    value = {} if value is None else value
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict or {cls.__name__}, got {type(value).__name__}")
    check_keys(value, [f.name for f in fields(cls)], what)
    check_fields(value, {f.name: _FIELD_TYPES[f.type] for f in fields(cls)}, what, required=())
    return cls(**value)


# Annotation (a string, under `from __future__ import annotations`) -> the JSON types a config file may hold.
_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list, "dict[str, float]": dict,
                "dict | None": (dict, type(None)), "list | None": (list, tuple, type(None))}
# Keys of a saved config.json that are transformers' own, not CodeBind's.
_GENERIC_KEYS = {f.name for f in fields(PreTrainedConfig)} | {
    "model_type", "name_or_path", "_name_or_path", "auto_map", "_commit_hash", "torch_dtype", "output_attentions",
    "_attn_implementation", "_attn_implementation_autoset", "attn_implementation", "num_labels",
}


def _check_config_document(config: "CodeBindConfig", extra: dict) -> None:
    """A config.json with a typo'd key or a wrongly typed field is refused before anything is built (a silent
    default ``embed_dim=1024`` would only fail later, as a shape error)."""
    ours = [f.name for f in fields(config) if f.name not in _GENERIC_KEYS]
    check_keys(extra, [*ours, *_GENERIC_KEYS], "CodeBindConfig", shown=ours)
    check_fields({k: getattr(config, k) for k in ours}, {k: _FIELD_TYPES.get(config.__dataclass_fields__[k].type, object)
                                                         for k in ours}, "CodeBindConfig", required=())


def normalize_path_config(target: str, path: dict | PathConfig | None) -> dict:
    """A path's settings as a plain dict: known keys only, canonical bridge names, paper weights filled in."""
    target = canonical_modality(target)
    path_config = _dataclass_from(PathConfig, path, f"paths[{target!r}]")
    path_config.bridges = [canonical_modality(b) for b in path_config.bridges]
    path_config.loss_weights = {**paper_loss_weights(target), **path_config.loss_weights}
    return asdict(path_config)


@strict(accept_kwargs=True)
class CodeBindConfig(PreTrainedConfig):
    r"""
    Configuration of a [`CodeBindModel`].

    Args:
        modalities (`dict[str, dict]`, *optional*):
            Tower configuration per modality (canonical names: text, vision, audio, depth, thermal, imu,
            tactile, eeg, point). Each dict has ``"family"`` (``"hf"``: any transformers backbone given as
            ``"backbone"``, a config dict with ``model_type``; ``"imagebind"``: ImageBind towers; ``"vitlens"``: ViT-Lens
            lenses and CLIP towers, see `codebind_hf.encoders.vitlens`) and optional
            head settings ``head_dropout``, ``head_layer_norm_eps``, ``head_bias``, ``logit_scale``,
            ``logit_scale_learnable``, ``has_specific`` (default: every modality but text).
        bridges (`list[str]`, *optional*, defaults to `["text", "vision"]`): frozen modalities that define the space.
        paths (`dict[str, dict]`, *optional*): per target modality, a [`PathConfig`] as dict. Each path owns one
            shared codebook, a specific codebook and specific head for every non-text modality of the path.
        embed_dim (`int`, *optional*, defaults to 1024): width of shared embeddings (ImageBind's output width).
        specific_dim (`int`, *optional*, defaults to 1024): width of specific embeddings.
        quantizer (`dict`, *optional*): a [`QuantizerConfig`] as dict.
        decoder (`dict`, *optional*): a [`DecoderConfig`] as dict.

    Example:

    ```python
    >>> from codebind_hf import CodeBindConfig
    >>> text = {"family": "hf", "backbone": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
    ...         "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 100}}
    >>> audio = {"family": "hf", "backbone": {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2,
    ...          "num_attention_heads": 4, "intermediate_size": 64, "image_size": 16, "patch_size": 8,
    ...          "num_channels": 1}}
    >>> config = CodeBindConfig(modalities={"text": text, "audio": audio}, bridges=["text"],
    ...                         paths={"audio": {"bridges": ["text"]}}, embed_dim=64, specific_dim=64)
    >>> config.path_config("audio").loss_weights["vq"]
    50.0

    ```
    """

    model_type = "codebind"

    modalities: dict | None = None
    bridges: list | None = None
    paths: dict | None = None
    embed_dim: int = 1024
    specific_dim: int = 1024
    quantizer: dict | None = None
    decoder: dict | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _check_config_document(self, kwargs)
        self.modalities = {canonical_modality(m): dict(cfg) for m, cfg in (self.modalities or {}).items()}
        self.bridges = [canonical_modality(m) for m in (self.bridges if self.bridges is not None else ["text", "vision"])]
        self.bridges = [m for m in self.bridges if m in self.modalities] if self.bridges else []
        self.quantizer = asdict(_dataclass_from(QuantizerConfig, self.quantizer, "quantizer"))
        self.decoder = asdict(_dataclass_from(DecoderConfig, self.decoder, "decoder"))
        self.paths = {canonical_modality(t): normalize_path_config(t, p) for t, p in (self.paths or {}).items()}
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """`PreTrainedConfig.from_dict`; a saved CodeBind config (``model_type`` ``"codebind"``) must have every
        field that shapes the model, since a missing one would silently take its default."""
        if isinstance(config_dict, dict) and config_dict.get("model_type") == cls.model_type:
            ours = [f.name for f in fields(cls) if f.name not in _GENERIC_KEYS]
            check_keys(config_dict, [*ours, *_GENERIC_KEYS], "CodeBindConfig (config.json)", shown=ours)
            missing = [key for key in ("modalities", "embed_dim", "specific_dim") if key not in config_dict]
            if missing:
                raise ValueError(
                    f"this CodeBind config (config.json) lacks {missing}; a saved config has them all, so the file "
                    "is incomplete or was edited"
                )
        return super().from_dict(config_dict, **kwargs)

    def validate_architecture(self):
        """Reject configurations that cannot build a model, naming the offending entry."""
        for name, tower in self.modalities.items():
            if tower.get("family") not in TOWER_FAMILIES:
                raise ValueError(f"modalities[{name!r}]['family'] must be one of {TOWER_FAMILIES}, got {tower.get('family')!r}")
            if tower["family"] == "hf" and not isinstance(tower.get("backbone"), dict):
                raise ValueError(f"modalities[{name!r}] of family 'hf' needs a 'backbone' config dict with a 'model_type'")
        quantizer = QuantizerConfig(**self.quantizer)
        for what, dim in (("embed_dim", self.embed_dim), ("specific_dim", self.specific_dim)):
            if dim <= 0 or dim % quantizer.codevector_dim:
                raise ValueError(f"{what}={dim} must be a positive multiple of quantizer.codevector_dim={quantizer.codevector_dim}")
        for target, path in self.paths.items():
            if target not in self.modalities:
                raise ValueError(f"paths[{target!r}]: the target modality has no tower; modalities are {sorted(self.modalities)}")
            for bridge in path["bridges"]:
                if bridge not in self.modalities:
                    raise ValueError(f"paths[{target!r}]: bridge {bridge!r} has no tower; modalities are {sorted(self.modalities)}")
            unknown = sorted(set(path["loss_weights"]) - set(LOSS_NAMES))
            if unknown:
                raise ValueError(f"paths[{target!r}].loss_weights has unknown losses {unknown}; expected {list(LOSS_NAMES)}")
            for key in ("orthogonality_variant", "code_matching_variant"):
                if path[key] not in ("paper", "official"):
                    raise ValueError(f"paths[{target!r}].{key} must be 'paper' or 'official', got {path[key]!r}")
            if self.specific_dim != self.embed_dim and path["loss_weights"].get("orth", 0.0) > 0:
                raise ValueError(
                    f"paths[{target!r}] uses the orthogonality loss, which needs specific_dim == embed_dim; "
                    f"got specific_dim={self.specific_dim}, embed_dim={self.embed_dim} (or set loss_weights['orth'] = 0)"
                )
            if path["mode"] not in ("lora", "headtune", "fulltune"):
                raise ValueError(f"paths[{target!r}].mode must be 'lora', 'headtune' or 'fulltune', got {path['mode']!r}")
            if path["lora_rank"] < 1 or path["lora_last_n_blocks"] < 1:
                raise ValueError(f"paths[{target!r}]: lora_rank and lora_last_n_blocks must be >= 1")
            if path["temperature"] <= 0:
                raise ValueError(f"paths[{target!r}].temperature must be positive, got {path['temperature']}")

    # ------------------------------------------------------------------ typed views
    @property
    def quantizer_config(self) -> QuantizerConfig:
        return QuantizerConfig(**self.quantizer)

    @property
    def decoder_config(self) -> DecoderConfig:
        return DecoderConfig(**self.decoder)

    def path_config(self, target: str) -> PathConfig:
        target = canonical_modality(target)
        if target not in self.paths:
            raise KeyError(f"No path for target modality {target!r}; configured paths: {sorted(self.paths)}")
        return PathConfig(**self.paths[target])

    def has_specific(self, modality: str) -> bool:
        """Whether a modality has a specific part (all but text, unless its tower config says otherwise)."""
        modality = canonical_modality(modality)
        return bool(self.modalities[modality].get("has_specific", modality != "text"))

    def path_modalities(self, target: str) -> list[str]:
        """The modalities a path touches: its bridges, then its target."""
        path = self.path_config(target)
        return [*path.bridges, canonical_modality(target)]


__all__ = [
    "CodeBindConfig",
    "QuantizerConfig",
    "DecoderConfig",
    "PathConfig",
    "paper_loss_weights",
    "normalize_path_config",
    "MODALITIES",
    "LOSS_NAMES",
]
