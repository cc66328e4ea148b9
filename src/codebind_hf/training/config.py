"""Configuration of a path training run: typed sections, YAML/JSON files, and ``--set key=value`` overrides.

A run is configured by one file with the sections ``model``, ``path``, ``data``, ``cache``, ``codebooks`` and
``training``, plus ``modality`` for a new sensor the run adds to the base model (docs/new-sensor.md) (see ``codebind_hf/training/configs/*.yaml`` and docs/training.md), plus an optional list of ``stages`` (staged
training: each stage its own data, length and loss weights, run in order; see `StageArguments`). Every key of the
sections can be overridden on the command line with ``--set section.key=value`` (values are parsed as YAML, so
``--set training.learning_rate=1e-4`` or ``--set path.bridges=[text]`` work), and the most common keys also have
flags (``--output_dir``, ``--seed`` ...). Unknown sections or keys are errors that name the key and list the valid ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``5e-5`` as a float (YAML 1.1 needs a dot: ``5.0e-5``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.nan)$"),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


@dataclass
class ModelArguments:
    """The base model a path is trained on."""

    name_or_path: str | None = field(default=None, metadata={"help": "hub id or local folder of a CodeBindModel"})
    revision: str | None = field(default=None, metadata={"help": "hub revision of name_or_path"})
    config: dict | None = field(
        default=None, metadata={"help": "inline CodeBindConfig kwargs: a randomly initialised model (when name_or_path is null)"}
    )


@dataclass
class ModalityArguments:
    """A new modality (a sensor beyond the nine) the run adds to the base model before training its path, whose
    target it is (docs/new-sensor.md). Without a ``name`` the run adds nothing."""

    name: str | None = field(default=None, metadata={"help": "the new modality's name; path.target names it too"})
    tower: dict | None = field(default=None, metadata={"help": "its tower: family and settings, e.g. {family: hf, backbone: {...}}"})
    sample_shape: list | None = field(default=None, metadata={"help": "one sample, channels first, e.g. [2, 64, 64]"})
    input_key: str | None = field(default=None, metadata={"help": "the key of its tensor (default <name>_values)"})
    has_specific: bool = True
    description: str | None = field(default=None, metadata={"help": "the sensor in words, for the path's card"})
    processor: dict = field(default_factory=dict, metadata={
        "help": "CodeBindArraySensorFeatureExtractor settings (shape defaults to sample_shape): channel_order, mean, std, "
                "time_policy, nan_policy, ..."})
    compute_statistics: bool = field(default=False, metadata={
        "help": "set the processor's per-channel mean/std from the training split (its fit method)"})
    statistics_rows: int = field(default=1000, metadata={"help": "rows of the training split compute_statistics reads"})
    column: str | None = field(default=None, metadata={"help": "the dataset column of its arrays (default: the name)"})


@dataclass
class PathArguments:
    """The bridge-target path trained by this run (a `PathConfig` plus training-only switches)."""

    target: str = field(default="", metadata={"help": "target modality of the path (audio, depth, thermal, ...)"})
    bridges: list = field(default_factory=lambda: ["text", "vision"], metadata={"help": "frozen bridge modalities"})
    mode: str = field(default="lora", metadata={"help": "lora | headtune | fulltune | projector (MLP on cached features)"})
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE temperature"})
    loss_weights: dict = field(default_factory=dict, metadata={"help": "overrides of the paper's weights for this target"})
    adaptive_weights: bool = field(default=False, metadata={"help": "balance the weights from loss magnitudes (App. B.2)"})
    variants: Any = field(default_factory=dict, metadata={
        "help": "switch -> paper | official for each place the authors' code departs from the paper (docs/faithfulness.md); "
                "a bare 'official' sets all"})
    use_codebooks: bool = field(default=True, metadata={"help": "ablation: false trains without codebooks (no vq/ctr/cuni/cm)"})
    use_decoupling: bool = field(default=True, metadata={
        "help": "ablation: false trains without specific heads (no orth/uni, and no reconstruction)"})
    shared_codebook: str = field(default="path", metadata={"help": "path | modality (Table 7: a 'shared' codebook per modality)"})
    quantizer: dict = field(default_factory=dict, metadata={
        "help": "this path's codebook sizes / codevector_dim (QuantizerConfig keys); codevector_dim = embed_dim is standard VQ"})
    lora_rank: int = 4
    lora_alpha: int | None = field(default=None, metadata={"help": "peft scale is alpha / rank; null = the rank (scale 1, as the official LoRA)"})
    lora_last_n_blocks: int = 6
    lora_dropout: float = 0.0
    reconstruction: bool = field(default=True, metadata={
        "help": "the reconstruction term (ablation: false); builds the decoder if the model has none"})
    decoder: dict = field(default_factory=dict, metadata={"help": "DecoderConfig overrides used when building the decoder"})
    init_path: str | None = field(default=None, metadata={"help": "start from this path artifact (dir or hub id)"})
    init_trained_state: str | None = field(
        default=None, metadata={"help": "start from a run's trained_state.safetensors (staged runs pass it between stages)"}
    )
    projector_hidden_dim: int | None = field(
        default=None, metadata={"help": "projector mode: hidden width of the 2-layer MLP (default: the target tower's width)"}
    )

    def path_config(self) -> dict:
        """The `PathConfig` keys of this section."""
        keys = ("bridges", "temperature", "loss_weights", "adaptive_weights", "variants", "use_codebooks", "use_decoupling",
                "shared_codebook", "quantizer", "mode", "lora_rank", "lora_alpha", "lora_last_n_blocks")
        return {**{k: getattr(self, k) for k in keys}, "use_reconstruction": self.reconstruction}


@dataclass
class DataArguments:
    """Where the paired data comes from and how columns map to modalities (docs/training.md)."""

    dataset: Any = field(default=None, metadata={"help": "hub id, local folder, or (Python API) a Dataset/DatasetDict/dict"})
    name: str | None = field(default=None, metadata={"help": "hub dataset configuration name"})
    revision: str | None = None
    train_split: str = "train"
    eval_split: str | None = field(default=None, metadata={"help": "split for zero-shot accuracy; null: validation/test if present"})
    columns: dict = field(
        default_factory=dict,
        metadata={"help": "modality (or 'label', 'sampling_rate', 'grade') -> column name; defaults to the modality name"},
    )
    class_names: list | None = field(default=None, metadata={"help": "label names when the label column has none"})
    prompt_templates: Any = field(default="photo", metadata={"help": "a named template set or a list of '{}' templates"})
    processor: Any = field(
        default="imagebind",
        metadata={"help": "imagebind | arrays | a processor folder | 'module:callable' | (Python API) a callable"},
    )
    vision_input: str = field(default="images", metadata={"help": "images | videos: which processor argument vision uses"})
    sampling_rate: int | None = field(default=None, metadata={"help": "audio rate when there is no sampling_rate column"})
    skip_bad_rows: bool = field(default=False, metadata={"help": "skip (and count) rows that cannot be decoded"})
    repeat: int = field(default=1, metadata={"help": "visit each row this many times per epoch (official scale_factor)"})
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    num_workers: Any = field(default=0, metadata={"help": "data-loader workers: a number, or 'auto' (min(8, CPUs available))"})


@dataclass
class CacheArguments:
    """Frozen-feature cache: tower outputs of frozen towers computed once and stored with `datasets` (arrow)."""

    enabled: bool = False
    dir: str | None = field(default=None, metadata={"help": "cache folder; default <output_dir>/feature_cache"})
    target: bool = field(default=False, metadata={"help": "also cache the target tower (headtune only)"})
    dtype: str = field(default="float32", metadata={"help": "float32 | float16 storage"})
    batch_size: int = 64


@dataclass
class CodebookArguments:
    """The codebook life cycle the trainer runs (the model's forward never updates codebooks)."""

    kmeans_init: str = field(default="auto", metadata={"help": "auto (unless already initialised) | always | never"})
    kmeans_init_batches: int = field(default=1, metadata={"help": "batches whose head outputs seed k-means"})
    kmeans_iters: int = 10
    update_ema: bool = True
    reinit_dead_codes: bool = True


@dataclass
class TrainingArguments:
    """Optimisation, checkpointing, logging and the end-of-run artifacts."""

    output_dir: str = "outputs/codebind-path"
    seed: int = 43
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_train_epochs: int = 1
    max_train_steps: int | None = field(default=None, metadata={"help": "optimiser steps; overrides num_train_epochs"})
    learning_rate: float = field(default=5e-5, metadata={"help": "tower/LoRA and the target's shared head (official lr)"})
    learning_rate_new: float = field(default=5e-4, metadata={"help": "new modules: specific heads, decoder (official lr_new)"})
    weight_decay: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    warmup_steps: int = 0
    min_lr_ratio: float = field(default=1 / 50, metadata={"help": "cosine schedule ends at lr * min_lr_ratio"})
    max_grad_norm: float | None = 1.0
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    gradient_checkpointing: bool = False
    ddp_find_unused_parameters: bool = False
    checkpointing_steps: int | None = 500
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace a finished run in output_dir (refused otherwise; transformers' name)"}
    )
    max_steps_this_run: int | None = field(
        default=None, metadata={"help": "stop (with a checkpoint) after this many steps in this invocation; resume later"}
    )
    logging_steps: int = 10
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bar (e.g. when several runs share a terminal)"})
    eval_steps: int | None = field(default=None, metadata={"help": "zero-shot evaluation interval (and at the end)"})
    report_to: str = field(default="none", metadata={"help": "none | tensorboard | all"})
    tracker_project_name: str = "codebind-path"
    save_full_model: bool = True
    push_to_hub: bool = False
    hub_model_id: str | None = field(default=None, metadata={"help": "repo of the full model (push_to_hub)"})
    hub_path_repo_id: str | None = field(default=None, metadata={"help": "repo of the path artifact (push_to_hub)"})
    dump_state_dir: str | None = field(default=None, metadata={"help": "debug: each rank writes its trained tensors here"})


@dataclass
class StageArguments:
    """One stage of a staged run: its data (``data`` keys overriding the ``data`` section), its length and its
    loss weights (on top of ``path.loss_weights``). Stages run in order, each starting from the previous one's
    trained tensors with a fresh optimiser and schedule (docs/training.md)."""

    name: str = field(default="", metadata={"help": "folder name of the stage (default stage<k>)"})
    data: dict = field(default_factory=dict, metadata={"help": "data section overrides, e.g. {dataset: ./tier2}"})
    max_train_steps: int | None = field(default=None, metadata={"help": "optimiser steps of this stage"})
    num_train_epochs: int | None = field(default=None, metadata={"help": "epochs of this stage (without max_train_steps)"})
    loss_weights: dict = field(default_factory=dict, metadata={"help": "loss weight overrides for this stage"})


SECTIONS: dict[str, type] = {
    "model": ModelArguments,
    "modality": ModalityArguments,
    "path": PathArguments,
    "data": DataArguments,
    "cache": CacheArguments,
    "codebooks": CodebookArguments,
    "training": TrainingArguments,
}


@dataclass
class TrainConfig:
    """All settings of a run, one attribute per section.

    Example:

    ```python
    >>> from codebind_hf.training.config import TrainConfig
    >>> cfg = TrainConfig.from_dict({"model": {"name_or_path": "./codebind-ib-base"}, "path": {"target": "audio"},
    ...                              "training": {"learning_rate": 1e-4}})
    >>> cfg.path.target, cfg.training.learning_rate, cfg.training.adam_beta2
    ('audio', 0.0001, 0.95)

    ```
    """

    model: ModelArguments = field(default_factory=ModelArguments)
    modality: ModalityArguments = field(default_factory=ModalityArguments)
    path: PathArguments = field(default_factory=PathArguments)
    data: DataArguments = field(default_factory=DataArguments)
    cache: CacheArguments = field(default_factory=CacheArguments)
    codebooks: CodebookArguments = field(default_factory=CodebookArguments)
    training: TrainingArguments = field(default_factory=TrainingArguments)
    stages: list = field(default_factory=list)  # of StageArguments; empty: one plain run

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        if not isinstance(values, dict):
            raise TypeError(f"a training config must be a mapping of sections, got {type(values).__name__}")
        unknown = sorted(set(values) - set(SECTIONS) - {"stages"})
        if unknown:
            raise ValueError(f"Unknown config sections {unknown}; expected some of {sorted(SECTIONS) + ['stages']}")
        sections = {}
        for name, section_cls in SECTIONS.items():
            given = values.get(name) or {}
            if not isinstance(given, dict):
                raise TypeError(f"config section {name!r} must be a mapping, got {type(given).__name__}")
            known = {f.name for f in fields(section_cls)}
            bad = sorted(set(given) - known)
            if bad:
                raise ValueError(f"Unknown keys {bad} in config section {name!r}; valid keys are {sorted(known)}")
            sections[name] = section_cls(**{k: _coerce(name, f, given[k]) for f in fields(section_cls) if (k := f.name) in given})
        config = cls(**sections, stages=_stages_from(values.get("stages")))
        _modality_column(config)
        config.validate()
        return config

    def to_dict(self) -> dict:
        """Plain dict (a Python dataset/processor object is shown by its type name)."""
        out = {}
        for name in SECTIONS:
            section = asdict(getattr(self, name))
            for key, value in section.items():
                if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
                    section[key] = f"<{type(value).__name__}>"
            out[name] = section
        if self.stages:
            shown = lambda v: v if type(v) in (str, int, float, bool, list, dict, type(None)) else f"<{type(v).__name__}>"  # noqa: E731
            out["stages"] = [{f.name: getattr(stage, f.name) for f in fields(StageArguments)} for stage in self.stages]
            for stage in out["stages"]:
                stage["data"] = {k: shown(v) for k, v in stage["data"].items()}
        return out

    def validate(self) -> None:
        """Reject settings that cannot run, naming the key."""
        p, t, c, d = self.path, self.training, self.cache, self.data
        if not p.target:
            raise ValueError("path.target is required (the target modality of the path, e.g. 'audio')")
        if p.mode not in ("lora", "headtune", "fulltune", "projector"):
            raise ValueError(f"path.mode must be 'lora', 'headtune', 'fulltune' or 'projector', got {p.mode!r}")
        if c.target and p.mode not in ("headtune", "projector"):
            raise ValueError(
                f"cache.target=true needs path.mode='headtune' or 'projector' (the target tower must be frozen), got {p.mode!r}"
            )
        if p.mode == "projector":
            _validate_projector(self)
        if c.dtype not in ("float32", "float16"):
            raise ValueError(f"cache.dtype must be 'float32' or 'float16', got {c.dtype!r}")
        if t.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"training.mixed_precision must be 'no', 'fp16' or 'bf16', got {t.mixed_precision!r}")
        if self.codebooks.kmeans_init not in ("auto", "always", "never"):
            raise ValueError(f"codebooks.kmeans_init must be 'auto', 'always' or 'never', got {self.codebooks.kmeans_init!r}")
        for key in ("per_device_batch_size", "gradient_accumulation_steps", "num_train_epochs", "logging_steps"):
            if getattr(t, key) < 1:
                raise ValueError(f"training.{key} must be >= 1, got {getattr(t, key)}")
        if t.per_device_batch_size < 2:
            raise ValueError("training.per_device_batch_size must be >= 2 (contrastive losses need negatives)")
        if t.max_train_steps is not None and t.max_train_steps < 1:
            raise ValueError(f"training.max_train_steps must be >= 1, got {t.max_train_steps}")
        if d.repeat < 1:
            raise ValueError(f"data.repeat must be >= 1, got {d.repeat}")
        if d.num_workers != "auto" and (not isinstance(d.num_workers, int) or isinstance(d.num_workers, bool) or d.num_workers < 0):
            raise ValueError(f"data.num_workers must be an integer >= 0 or 'auto', got {d.num_workers!r}")
        if d.vision_input not in ("images", "videos"):
            raise ValueError(f"data.vision_input must be 'images' or 'videos', got {d.vision_input!r}")
        if t.report_to not in ("none", "tensorboard", "all"):
            raise ValueError(f"training.report_to must be 'none', 'tensorboard' or 'all', got {t.report_to!r}")
        if self.model.name_or_path is None and self.model.config is None:
            raise ValueError("set model.name_or_path (a CodeBindModel) or model.config (inline CodeBindConfig kwargs)")
        if t.push_to_hub and p.mode != "projector" and not (t.hub_model_id or t.hub_path_repo_id):
            raise ValueError("training.push_to_hub needs training.hub_path_repo_id (the path artifact) and/or "
                             "training.hub_model_id (the full model)")
        if t.max_steps_this_run is not None and t.max_steps_this_run < 1:
            raise ValueError(f"training.max_steps_this_run must be >= 1, got {t.max_steps_this_run}")
        if self.stages:
            _validate_stages(self)
        if self.modality.name is not None:
            _validate_modality(self)


def _modality_column(config: TrainConfig) -> None:
    """The modality block's ``column`` is ``data.columns.<name>``; both given and different is refused."""
    m, d = config.modality, config.data
    if m.name is None or m.column is None:
        return
    given = (d.columns or {}).get(m.name)
    if given is not None and given != m.column:
        raise ValueError(f"modality.column={m.column!r} and data.columns.{m.name}={given!r} name different columns; give one")
    d.columns = {**(d.columns or {}), m.name: m.column}


def _validate_modality(config: TrainConfig) -> None:
    from ..modalities import canonical_modality

    m, p = config.modality, config.path
    if canonical_modality(p.target) != canonical_modality(m.name):
        raise ValueError(f"modality.name={m.name!r} is the new modality the run trains, so path.target must name it too; "
                         f"got path.target={p.target!r}")
    if not isinstance(m.tower, dict) or "family" not in m.tower:
        raise ValueError(f"modality.tower must be a tower config with its 'family' (e.g. {{family: hf, backbone: {{...}}}}), "
                         f"got {m.tower!r}")
    if not m.sample_shape:
        raise ValueError("modality.sample_shape is required: the shape of one sample, channels first (e.g. [2, 64, 64])")
    if m.compute_statistics and {"mean", "std"} & set(m.processor):
        raise ValueError("modality.compute_statistics computes the processor's mean/std; drop modality.processor.mean/std "
                         "or compute_statistics")
    if m.statistics_rows < 1:
        raise ValueError(f"modality.statistics_rows must be >= 1, got {m.statistics_rows}")


def _validate_projector(config: TrainConfig) -> None:
    p, t = config.path, config.training
    if p.adaptive_weights:
        raise ValueError("path.adaptive_weights balances the CodeBind terms; path.mode='projector' has only 'align'")
    extra = sorted(set(p.loss_weights) - {"align"})
    if extra:
        raise ValueError(f"path.mode='projector' trains only the 'align' term; path.loss_weights sets {extra}")
    if t.push_to_hub:
        raise ValueError("training.push_to_hub is not available for path.mode='projector': upload <output_dir>/projector "
                         "with huggingface_hub.upload_folder")
    if p.projector_hidden_dim is not None and p.projector_hidden_dim < 1:
        raise ValueError(f"path.projector_hidden_dim must be >= 1, got {p.projector_hidden_dim}")


def _validate_stages(config: TrainConfig) -> None:
    from ..configuration_codebind import LOSS_NAMES

    names = [s.name for s in config.stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    data_keys = {f.name for f in fields(DataArguments)}
    for k, stage in enumerate(config.stages):
        where = f"stages[{k}] ({stage.name!r})"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", stage.name):
            raise ValueError(f"{where}: name must be letters, digits, '_', '-' or '.' (it names a folder)")
        bad = sorted(set(stage.data) - data_keys)
        if bad:
            raise ValueError(f"{where}: unknown data keys {bad}; valid keys are {sorted(data_keys)}")
        bad = sorted(set(stage.loss_weights) - set(LOSS_NAMES))
        if bad:
            raise ValueError(f"{where}: unknown losses {bad} in loss_weights; expected some of {list(LOSS_NAMES)}")
        if config.path.mode == "projector" and set(stage.loss_weights) - {"align"}:
            raise ValueError(f"{where}: path.mode='projector' trains only the 'align' term")
        for key in ("max_train_steps", "num_train_epochs"):
            value = getattr(stage, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    if config.training.resume_from_checkpoint not in (None, "latest"):
        raise ValueError("a staged run resumes with training.resume_from_checkpoint='latest' (each stage keeps its own "
                         f"checkpoints), got {config.training.resume_from_checkpoint!r}")


def _stages_from(values) -> list[StageArguments]:
    """``stages`` entries as `StageArguments`, unknown keys named; names default to ``stage<k>``."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise TypeError(f"stages must be a list of mappings, got {type(values).__name__}")
    known = {f.name for f in fields(StageArguments)}
    stages = []
    for k, entry in enumerate(values):
        if isinstance(entry, StageArguments):
            stages.append(entry)
            continue
        if not isinstance(entry, dict):
            raise TypeError(f"stages[{k}] must be a mapping, got {type(entry).__name__}")
        bad = sorted(set(entry) - known)
        if bad:
            raise ValueError(f"Unknown keys {bad} in stages[{k}]; valid keys are {sorted(known)}")
        for key in ("data", "loss_weights"):
            if not isinstance(entry.get(key) or {}, dict):
                raise TypeError(f"stages[{k}].{key} must be a mapping, got {type(entry[key]).__name__}")
        stages.append(StageArguments(**{"name": f"stage{k}", **{key: v for key, v in entry.items() if v is not None}}))
    return stages


def _coerce(section: str, spec, value):
    """Check a scalar against the field's annotation (``float``, ``int | None`` ...), naming the key if it is wrong."""
    kind = str(spec.type).split("|")[0].strip()
    if value is None or kind not in ("int", "float", "bool", "str"):
        return value
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, bool):  # YAML 1.1 reads `no`/`yes` as booleans (mixed_precision: no)
        return "yes" if value else "no"
    expected = {"int": int, "float": float, "bool": bool, "str": str}[kind]
    if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
        raise TypeError(f"{section}.{spec.name} must be {spec.type}, got {value!r} ({type(value).__name__})")
    return value


def resolve_num_workers(value) -> int:
    """``data.num_workers``: a number as given; ``"auto"`` is min(8, the CPUs this process may use), so the bundled
    configs neither starve a GPU node nor swamp a 2-core laptop.

    Example:

    ```python
    >>> from codebind_hf.training.config import resolve_num_workers
    >>> resolve_num_workers(3), 1 <= resolve_num_workers("auto") <= 8
    (3, True)

    ```
    """
    if value != "auto":
        return int(value)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cpus)


# ---------------------------------------------------------------------------------------------- files and overrides
def load_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML or JSON config; a bare name (``audioset``) is looked up in the packaged ``codebind_hf/training/configs``."""
    path = Path(path)
    if not path.exists() and not path.suffix and (CONFIG_DIR / f"{path}.yaml").exists():
        path = CONFIG_DIR / f"{path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"config file {str(path)!r} not found (bundled configs: {available})")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else _yaml(text)
    return values or {}


def apply_override(values: dict, assignment: str, parse: bool = True) -> None:
    """Apply one ``section.key=value`` (value parsed as YAML unless ``parse=False``; nested dict keys with more dots)."""
    if "=" not in assignment:
        raise ValueError(f"--set expects section.key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"--set key must look like section.key (e.g. training.learning_rate), got {key!r}")
    value = (_yaml(raw) if raw.strip() else None) if parse else raw
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"--set {key}: {part!r} is not a mapping in the config")
        node = child
    node[parts[-1]] = value


# Flags for the most used keys: flag name -> dotted key.
FLAG_KEYS = {
    "output_dir": "training.output_dir",
    "resume_from_checkpoint": "training.resume_from_checkpoint",
    "max_train_steps": "training.max_train_steps",
    "max_steps_this_run": "training.max_steps_this_run",
    "num_train_epochs": "training.num_train_epochs",
    "seed": "training.seed",
    "mixed_precision": "training.mixed_precision",
    "report_to": "training.report_to",
    "per_device_batch_size": "training.per_device_batch_size",
    "learning_rate": "training.learning_rate",
    "dataset": "data.dataset",
    "model_name_or_path": "model.name_or_path",
}


# Flags whose value is taken verbatim (paths, ids, names), not parsed as YAML.
STRING_FLAGS = ("output_dir", "resume_from_checkpoint", "mixed_precision", "report_to", "dataset", "model_name_or_path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codebind-train",
        description="Train one CodeBind bridge-target path with Accelerate (docs/training.md).",
    )
    parser.add_argument("--config", required=True, help="YAML/JSON file, or the name of a bundled config (e.g. 'sun_d')")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config key (repeatable); the value is parsed as YAML")
    for flag, key in FLAG_KEYS.items():
        parser.add_argument(f"--{flag}", default=None, help=f"same as --set {key}=...")
    parser.add_argument("--push_to_hub", action="store_true", default=None, help="same as --set training.push_to_hub=true")
    parser.add_argument("--overwrite_output_dir", action="store_true", default=None,
                        help="replace a finished run in output_dir (same as --set training.overwrite_output_dir=true)")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Config file, then ``--set`` overrides, then explicit flags (the last word wins)."""
    args = build_parser().parse_args(argv)
    values = load_config_file(args.config)
    for assignment in args.overrides:
        apply_override(values, assignment)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            apply_override(values, f"{key}={value}", parse=flag not in STRING_FLAGS)
    if args.push_to_hub:
        apply_override(values, "training.push_to_hub=true")
    if args.overwrite_output_dir:
        apply_override(values, "training.overwrite_output_dir=true")
    return TrainConfig.from_dict(values)


__all__ = [
    "ModelArguments",
    "ModalityArguments",
    "PathArguments",
    "DataArguments",
    "CacheArguments",
    "CodebookArguments",
    "TrainingArguments",
    "StageArguments",
    "TrainConfig",
    "SECTIONS",
    "load_config_file",
    "apply_override",
    "build_parser",
    "parse_args",
    "resolve_num_workers",
]
