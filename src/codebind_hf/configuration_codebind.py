"""Configuration of CodeBind models: towers per modality, codebooks, decoder and training paths."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_subconfigs import (
    CodeBindDecoderConfig,
    CodeBindTowerConfig,
    DecoderConfig,
    TowerConfigViews,
    check_hf_tower,
)
from .modalities import INPUT_KEYS, MODALITIES, canonical_modality, check_input_keys, modality_entry, modality_spec
from .validation import check_fields, check_keys

TOWER_FAMILIES = ("hf", "imagebind", "vitlens")
LOSS_NAMES = ("align", "recon", "vq", "ctr", "cuni", "cm", "orth", "uni")
# One switch per place where the authors' code (Visual-AI/CodeBind) departs from the paper: "paper" (the default)
# or "official" (what that code runs). docs/faithfulness.md says what each changes and which test pins it.
VARIANTS = (
    "orthogonality",  # pooled <s, p>^2 | Frobenius norm of the token cross-similarity
    "code_matching",  # softmax of -|z - e|^2 | softmax of the cosine, log(p + 1e-10)
    "codevector_contrastive",  # d_pos / d_neg | cross-entropy of the double softmax
    "code_loss_gradients",  # cm and ctr train the heads | cm, ctr (and cuni) carry no gradient
    "balancer",  # adaptive weights: EMA to the alignment magnitude | per-loss ratios, sine interval
    "dead_codes",  # only rarely used codes move, EMA reset | every code blended, EMA kept
    "ema_init",  # N0 = 0 after k-means | N0 = k-means cluster sizes
    "kmeans_data",  # k-means on kmeans_init_batches batches, all tokens | first batch, CLS only
    "quantizer_output",  # unit codevectors | raw code vectors, L2 over the whole part afterwards
    "bridge_heads",  # bridge heads and CLS tokens: the base's, frozen | the path's own copies, trained (path_owned)
)
# Path settings of older releases, read into `variants`.
_LEGACY_VARIANT_KEYS = {"orthogonality_variant": "orthogonality", "code_matching_variant": "code_matching"}
SHARED_CODEBOOK_MODES = ("path", "modality")

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
    # Per modality, the codevector width of its specific codebook (the authors' ``codevector_dim.<m>``); the
    # shared codebook and modalities not listed use ``codevector_dim``.
    specific_codevector_dims: dict[str, int] = field(default_factory=dict)

    def quantizer_kwargs(self) -> dict:
        """Keyword arguments of `CompositionalQuantizer` other than the codebook size (and per-modality widths)."""
        kwargs = asdict(self)
        for key in ("shared_codebook_size", "specific_codebook_size", "specific_codevector_dims"):
            kwargs.pop(key)
        return kwargs

    def specific_codevector_dim(self, modality: str) -> int:
        """Codevector width of the specific codebook of ``modality``."""
        return int(self.specific_codevector_dims.get(canonical_modality(modality), self.codevector_dim))


@dataclass
class PathConfig:
    """One bridge-target path: the target modality trained against its bridges.

    ``variants`` maps each name of ``VARIANTS`` to ``"paper"`` (default) or ``"official"`` (a bare string sets all);
    the ``use_*`` switches and ``shared_codebook`` are the ablations of the paper (Tables 6-7): no codebooks, no
    specific part (which also turns reconstruction off), no reconstruction, one "shared" codebook per modality. ``quantizer`` overrides the model's
    `QuantizerConfig` for this path's codebooks (sizes; ``codevector_dim`` equal to the widths is standard VQ).
    ``lora_alpha`` ``None`` means the rank (LoRA scale 1, as the authors' LoRA). ``specific_dims`` gives this path's
    specific widths per modality where they differ from the model's.
    """

    bridges: list[str] = field(default_factory=lambda: ["text", "vision"])
    temperature: float = 0.05
    loss_weights: dict[str, float] = field(default_factory=dict)
    adaptive_weights: bool = False
    variants: dict[str, str] = field(default_factory=dict)
    use_codebooks: bool = True
    use_decoupling: bool = True
    use_reconstruction: bool = True
    shared_codebook: str = "path"
    quantizer: dict = field(default_factory=dict)
    # This path's specific width per modality (the authors' per-experiment widths; 0 = no specific part); modalities
    # not listed take the model's `specific_dims` / `specific_dim`.
    specific_dims: dict[str, int] = field(default_factory=dict)
    # How the target tower is tuned: "lora" (peft, rank/alpha on the last blocks), "headtune" or "fulltune".
    mode: str = "lora"
    lora_rank: int = 4
    lora_alpha: int | None = None
    lora_last_n_blocks: int = 6

    @property
    def orthogonality_variant(self) -> str:
        return self.variants.get("orthogonality", "paper")

    @property
    def code_matching_variant(self) -> str:
        return self.variants.get("code_matching", "paper")


def _dataclass_from(cls, value, what: str):
    value = {} if value is None else value
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict or {cls.__name__}, got {type(value).__name__}")
    check_keys(value, [f.name for f in fields(cls)], what)
    check_fields(value, {f.name: _FIELD_TYPES.get(f.type, object) for f in fields(cls)}, what, required=())
    return cls(**value)


def normalize_variants(variants, where: str = "variants") -> dict[str, str]:
    """Every name of ``VARIANTS`` with its value (``"paper"`` unless given); a bare ``"paper"``/``"official"`` sets all.

    Example:

    ```python
    >>> from codebind_hf.configuration_codebind import normalize_variants
    >>> normalize_variants({"code_matching": "official"})["code_matching"], normalize_variants("official")["ema_init"]
    ('official', 'official')

    ```
    """
    if isinstance(variants, str):
        variants = {name: variants for name in VARIANTS}
    if not isinstance(variants, dict):
        raise TypeError(f"{where} must be a mapping of switch -> 'paper' | 'official' (or one of those), got {variants!r}")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"{where} has unknown switches {unknown}; expected some of {list(VARIANTS)}")
    out = {name: variants.get(name, "paper") for name in VARIANTS}
    bad = {k: v for k, v in out.items() if v not in ("paper", "official")}
    if bad:
        raise ValueError(f"{where}: each switch is 'paper' or 'official'; got {bad}")
    return out


# Annotation (a string, under `from __future__ import annotations`) -> the JSON types a config file may hold.
_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list, "dict[str, float]": dict,
                "dict": dict, "dict[str, int]": dict, "dict[str, str]": (dict, str), "int | None": (int, type(None)),
                "dict | None": (dict, type(None)), "list | None": (list, tuple, type(None))}
# Keys of a saved config.json that are transformers' own, not CodeBind's.
_GENERIC_KEYS = {f.name for f in fields(PreTrainedConfig)} | {
    "model_type", "name_or_path", "_name_or_path", "auto_map", "_commit_hash", "torch_dtype", "output_attentions",
    "_attn_implementation", "_attn_implementation_autoset", "attn_implementation", "num_labels",
    # attributes every transformers config may carry (set by transformers' own code and tests, saved when changed)
    "tie_word_embeddings", "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id",
    "decoder_start_token_id", "is_decoder", "add_cross_attention", "tokenizer_class", "prefix", "finetuning_task",
    "task_specific_params", "pruned_heads", "torchscript", "use_bfloat16", "tf_legacy_loss",
}


def _check_config_document(config: "CodeBindConfig", extra: dict) -> None:
    """A config.json with a typo'd key or a wrongly typed field is refused before anything is built (a silent
    default ``embed_dim=1024`` would only fail later, as a shape error)."""
    ours = [f.name for f in fields(config) if f.name not in _GENERIC_KEYS]
    check_keys(extra, [*ours, *_GENERIC_KEYS], "CodeBindConfig", shown=ours)
    check_fields({k: getattr(config, k) for k in ours}, {k: _FIELD_TYPES.get(config.__dataclass_fields__[k].type, object)
                                                         for k in ours}, "CodeBindConfig", required=())


def _modality_ints(table, what: str) -> dict[str, int]:
    """A ``{modality: int}`` table with canonical names (``None`` is empty); other values are refused by name."""
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise TypeError(f"{what} must be a mapping of modality -> int, got {type(table).__name__}")
    bad = {k: v for k, v in table.items() if isinstance(v, bool) or not isinstance(v, int)}
    if bad:
        raise TypeError(f"{what}: every width must be an int, got {bad}")
    return {canonical_modality(m): int(v) for m, v in table.items()}


def normalize_path_config(target: str, path: dict | PathConfig | None) -> dict:
    """A path's settings as a plain dict: known keys only, canonical bridge names, paper weights and every variant
    filled in, ``lora_alpha`` resolved (the rank when unset); pre-``variants`` keys are read into ``variants``."""
    target = canonical_modality(target)
    if isinstance(path, dict) and set(path) & set(_LEGACY_VARIANT_KEYS):
        path = dict(path)
        legacy = {_LEGACY_VARIANT_KEYS[k]: path.pop(k) for k in list(path) if k in _LEGACY_VARIANT_KEYS}
        given = path.get("variants") or {}
        path["variants"] = {name: given for name in VARIANTS} if isinstance(given, str) else {**legacy, **given}
    path_config = _dataclass_from(PathConfig, path, f"paths[{target!r}]")
    path_config.bridges = [canonical_modality(b) for b in path_config.bridges]
    path_config.loss_weights = {**paper_loss_weights(target), **path_config.loss_weights}
    path_config.variants = normalize_variants(path_config.variants, f"paths[{target!r}].variants")
    path_config.specific_dims = _modality_ints(path_config.specific_dims, f"paths[{target!r}].specific_dims")
    if "specific_codevector_dims" in (path_config.quantizer or {}):
        path_config.quantizer = {**path_config.quantizer, "specific_codevector_dims": _modality_ints(
            path_config.quantizer["specific_codevector_dims"], f"paths[{target!r}].quantizer.specific_codevector_dims")}
    if path_config.lora_alpha is None:
        path_config.lora_alpha = path_config.lora_rank
    if not path_config.use_decoupling:  # the decoder reads shared ⊕ specific tokens: nothing to reconstruct from
        path_config.use_reconstruction = False
    return asdict(path_config)


@strict(accept_kwargs=True)
class CodeBindConfig(TowerConfigViews, PreTrainedConfig):
    r"""
    Configuration of a [`CodeBindModel`].

    Args:
        modalities (`dict[str, dict]`, *optional*):
            Tower configuration per modality (the known names: text, vision, audio, depth, thermal, imu,
            tactile, eeg, point; any other identifier with its spec, ``{"tower": {...}, "sample_shape": [...],
            "input_key": ..., "processor": {...}}``, see `codebind_hf.modalities.modality_entry`). Each dict has ``"family"`` (``"hf"``: any transformers backbone given as
            ``"backbone"``, a config dict with ``model_type``; ``"imagebind"``: ImageBind towers; ``"vitlens"``: ViT-Lens
            lenses and CLIP towers, see `codebind_hf.encoders.vitlens`) and optional
            head settings ``head_dropout``, ``head_layer_norm_eps``, ``head_bias``, ``logit_scale``,
            ``logit_scale_learnable``, ``has_specific`` (default: every modality but text).
        bridges (`list[str]`, *optional*, defaults to `["text", "vision"]`): frozen modalities that define the space.
        paths (`dict[str, dict]`, *optional*): per target modality, a [`PathConfig`] as dict. Each path owns one
            shared codebook, a specific codebook and specific head for every non-text modality of the path.
        embed_dim (`int`, *optional*, defaults to 1024): width of shared embeddings (ImageBind's output width).
        specific_dim (`int`, *optional*, defaults to 1024): width of specific embeddings.
        specific_dims (`dict[str, int]`, *optional*): per-modality specific widths (the authors' layout: e.g. vision
            24, audio 24, depth 16, text 0); modalities not listed use ``specific_dim``, and 0 means no specific part.
            The codevector width of each modality's specific codebook is ``quantizer.specific_codevector_dims``.
        quantizer (`dict`, *optional*): a [`QuantizerConfig`] as dict.
        decoder ([`CodeBindDecoderConfig`] or `dict`, *optional*): the training-only reconstruction decoder, a typed
            sub-config (``config.sub_configs``).

    The towers' own configs are typed views: ``config.text_config``, ``config.vision_config``, ... (``None`` for a
    modality without a tower; the backbone's config class for family ``"hf"``, an [`CodeBindTowerConfig`] for
    ``"imagebind"``), and [`~CodeBindConfig.get_text_config`] returns the text tower's.

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
    sub_configs_defaults = {"decoder": CodeBindDecoderConfig}

    modalities: dict | None = None
    bridges: list | None = None
    paths: dict | None = None
    embed_dim: int = 1024
    specific_dim: int = 1024
    specific_dims: dict | None = None
    quantizer: dict | None = None
    decoder: dict | CodeBindDecoderConfig | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _check_config_document(self, kwargs)
        # The nine known modalities by name, any other with its spec (codebind_hf.modalities.modality_entry).
        self.modalities = {(name := canonical_modality(m)): modality_entry(name, cfg) for m, cfg in (self.modalities or {}).items()}
        check_input_keys(self.modalities)
        self.bridges = [canonical_modality(m) for m in (self.bridges if self.bridges is not None else ["text", "vision"])]
        self.bridges = [m for m in self.bridges if m in self.modalities] if self.bridges else []
        self.specific_dims = _modality_ints(self.specific_dims, "specific_dims")
        self.quantizer = asdict(_dataclass_from(QuantizerConfig, self.quantizer, "quantizer"))
        self.quantizer["specific_codevector_dims"] = _modality_ints(self.quantizer["specific_codevector_dims"],
                                                                    "quantizer.specific_codevector_dims")
        self.decoder = CodeBindDecoderConfig.coerce(self.decoder)
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
            if tower["family"] == "hf":
                check_hf_tower(name, tower)
        quantizer = QuantizerConfig(**self.quantizer)
        for what, dim in (("embed_dim", self.embed_dim), ("specific_dim", self.specific_dim)):
            if dim <= 0 or dim % quantizer.codevector_dim:
                raise ValueError(f"{what}={dim} must be a positive multiple of quantizer.codevector_dim={quantizer.codevector_dim}")
        self._validate_widths(quantizer)
        for target, path in self.paths.items():
            if target not in self.modalities:
                raise ValueError(f"paths[{target!r}]: the target modality has no tower; modalities are {sorted(self.modalities)}")
            for bridge in path["bridges"]:
                if bridge not in self.modalities:
                    raise ValueError(f"paths[{target!r}]: bridge {bridge!r} has no tower; modalities are {sorted(self.modalities)}")
            unknown = sorted(set(path["loss_weights"]) - set(LOSS_NAMES))
            if unknown:
                raise ValueError(f"paths[{target!r}].loss_weights has unknown losses {unknown}; expected {list(LOSS_NAMES)}")
            normalize_variants(path["variants"], f"paths[{target!r}].variants")
            self._validate_path_ablations(target, path, quantizer)
            narrow = {m: self.specific_width(m, target) for m in self.path_modalities(target)
                      if self.path_has_specific(target, m) and self.specific_width(m, target) != self.embed_dim}
            # Both forms (pooled <s, p>^2, the token cross-similarity S P^T) pair shared and specific dimensions.
            if narrow and path["loss_weights"].get("orth", 0.0) > 0 and path["use_decoupling"]:
                raise ValueError(
                    f"paths[{target!r}] uses the orthogonality loss, which needs specific_dim == embed_dim for every "
                    f"modality with a specific part; embed_dim={self.embed_dim}, specific widths {narrow} "
                    "(or set loss_weights['orth'] = 0)"
                )
            if path["mode"] not in ("lora", "headtune", "fulltune"):
                raise ValueError(f"paths[{target!r}].mode must be 'lora', 'headtune' or 'fulltune', got {path['mode']!r}")
            if path["lora_rank"] < 1 or path["lora_last_n_blocks"] < 1:
                raise ValueError(f"paths[{target!r}]: lora_rank and lora_last_n_blocks must be >= 1")
            if path["temperature"] <= 0:
                raise ValueError(f"paths[{target!r}].temperature must be positive, got {path['temperature']}")

    def _validate_path_ablations(self, target: str, path: dict, quantizer: QuantizerConfig) -> None:
        where = f"paths[{target!r}]"
        if path["shared_codebook"] not in SHARED_CODEBOOK_MODES:
            raise ValueError(f"{where}.shared_codebook must be one of {SHARED_CODEBOOK_MODES}, got {path['shared_codebook']!r}")
        overrides = _dataclass_from(QuantizerConfig, {**asdict(quantizer), **(path["quantizer"] or {})}, f"{where}.quantizer")
        if self.embed_dim % overrides.codevector_dim:
            raise ValueError(f"{where}.quantizer.codevector_dim={overrides.codevector_dim} must divide embed_dim={self.embed_dim}")
        unknown = sorted(set(path["specific_dims"]) - set(self.path_modalities(target)))
        if unknown:
            raise ValueError(f"{where}.specific_dims names {unknown}, not modalities of the path {self.path_modalities(target)}")
        for modality, width in path["specific_dims"].items():
            if width < 0 or (width > 0 and not self._tower_has_specific(modality)):
                raise ValueError(f"{where}.specific_dims[{modality!r}]={width}: must be >= 0, and 0 for a modality "
                                 "without a specific part (text by default)")
        for modality in self.path_modalities(target):
            width, dim = self.specific_width(modality, target), overrides.specific_codevector_dim(modality)
            if width % dim:
                raise ValueError(f"{where}.quantizer: the {modality} specific codevector width {dim} must divide its "
                                 f"specific width {width}")
        if min(overrides.shared_codebook_size, overrides.specific_codebook_size) < 1:
            raise ValueError(f"{where}.quantizer: codebook sizes must be >= 1")

    def _validate_widths(self, quantizer: QuantizerConfig) -> None:
        """Per-modality specific widths and codevector widths: towers that exist, and widths that split evenly."""
        for what, table in (("specific_dims", self.specific_dims),
                            ("quantizer.specific_codevector_dims", quantizer.specific_codevector_dims)):
            unknown = sorted(set(table) - set(self.modalities))
            if unknown:
                raise ValueError(f"{what} names modalities without a tower: {unknown}; modalities are {sorted(self.modalities)}")
        for modality, width in self.specific_dims.items():
            if width < 0 or (width > 0 and not self._tower_has_specific(modality)):
                raise ValueError(f"specific_dims[{modality!r}]={width}: must be >= 0, and 0 for a modality without a "
                                 "specific part (modalities[...]['has_specific'] false; text by default)")
            dim = quantizer.specific_codevector_dim(modality)
            if width % dim:
                raise ValueError(f"specific_dims[{modality!r}]={width} must be a multiple of its specific codevector width "
                                 f"{dim} (quantizer.specific_codevector_dims, default quantizer.codevector_dim)")
        bad = {m: d for m, d in quantizer.specific_codevector_dims.items() if d < 1}
        if bad:
            raise ValueError(f"quantizer.specific_codevector_dims must be positive, got {bad}")

    # ------------------------------------------------------------------ typed views
    @property
    def quantizer_config(self) -> QuantizerConfig:
        return QuantizerConfig(**self.quantizer)

    @property
    def decoder_config(self) -> CodeBindDecoderConfig:
        return self.decoder

    def path_config(self, target: str) -> PathConfig:
        target = canonical_modality(target)
        if target not in self.paths:
            raise KeyError(f"No path for target modality {target!r}; configured paths: {sorted(self.paths)}")
        return PathConfig(**self.paths[target])

    # ------------------------------------------------------------------ modality specs (new sensors)
    def input_key(self, modality: str) -> str:
        """The key of ``modality``'s tensor in a processor's output and in ``CodeBindModel.forward``."""
        modality = canonical_modality(modality)
        return INPUT_KEYS.get(modality) or self.modalities[modality]["input_key"]

    def modality_spec(self, modality: str) -> dict:
        """The spec of ``modality`` as ``CodeBindModel.add_modality`` takes it: ``{"tower": {...}, ...}``."""
        return modality_spec(self.modalities[canonical_modality(modality)])

    def _tower_has_specific(self, modality: str) -> bool:
        return bool(self.modalities[modality].get("has_specific", modality != "text"))

    def has_specific(self, modality: str) -> bool:
        """Whether a modality has a specific part (all but text, unless its tower config says otherwise, and not
        with a ``specific_dims`` width of 0)."""
        modality = canonical_modality(modality)
        return self._tower_has_specific(modality) and (self.specific_dims or {}).get(modality, self.specific_dim) > 0

    def specific_width(self, modality: str, path: str | None = None) -> int:
        """Width of the specific part of ``modality`` (0 without one): in ``path``, that path's ``specific_dims``
        where it lists the modality; else the model's ``specific_dims``, else ``specific_dim``.

        Example:

        ```python
        >>> from codebind_hf import CodeBindConfig
        >>> vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
        ...        "intermediate_size": 64, "image_size": 16, "patch_size": 8}
        >>> config = CodeBindConfig(modalities={"vision": {"family": "hf", "backbone": vit},
        ...                                     "depth": {"family": "hf", "backbone": {**vit, "num_channels": 1}}},
        ...                         embed_dim=32, specific_dim=32, specific_dims={"depth": 16},
        ...                         quantizer={"specific_codevector_dims": {"depth": 4}})
        >>> config.specific_width("vision"), config.specific_width("depth"), config.quantizer_config.specific_codevector_dim("depth")
        (32, 16, 4)

        ```
        """
        modality = canonical_modality(modality)
        if not self._tower_has_specific(modality):
            return 0
        own = (self.paths[canonical_modality(path)].get("specific_dims") or {}) if path is not None else {}
        return own[modality] if modality in own else (self.specific_dims or {}).get(modality, self.specific_dim)

    def path_has_specific(self, target: str, modality: str) -> bool:
        """Whether ``modality`` has a specific part in path ``target`` (a width above 0 there; off for every modality
        with use_decoupling false)."""
        return (self.specific_width(modality, target) > 0
                and bool(self.paths[canonical_modality(target)].get("use_decoupling", True)))

    def path_modalities(self, target: str) -> list[str]:
        """The modalities a path touches: its bridges, then its target."""
        path = self.path_config(target)
        return [*path.bridges, canonical_modality(target)]


__all__ = [
    "CodeBindConfig",
    "QuantizerConfig",
    "DecoderConfig",
    "CodeBindDecoderConfig",
    "CodeBindTowerConfig",
    "PathConfig",
    "paper_loss_weights",
    "normalize_path_config",
    "normalize_variants",
    "VARIANTS",
    "MODALITIES",
    "LOSS_NAMES",
]
