"""Transformers checkpoints as towers: loading one (or rebuilding its architecture from a saved config), taking its
component and projection, what it can pool, where its blocks are and which of their linears LoRA wraps.

A tower of family ``"hf"`` names its backbone in one of two ways (see [`HFBackboneTower`]):

- ``pretrained``: a Hub id or a local folder (with ``revision`` and ``subfolder``), loaded with
  ``AutoModel.from_pretrained`` (through the Hugging Face cache, as transformers does) when the model is built;
- ``backbone``: a config dict with ``model_type``, built with random weights (``AutoModel.from_config``).

What a model's config *saves* for a ``pretrained`` tower is the second form plus ``source`` (id, revision asked for,
commit resolved): the tower's weights are in the model's own files, so loading a saved model needs neither the
network nor the source checkpoint (`saved_tower_spec`).
"""

from __future__ import annotations

import inspect
import typing

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig

POOLINGS = ("cls", "eos", "mean", "pooler")
# Keys of a tower spec that say where a checkpoint is; a saved config records them under ``source``.
CHECKPOINT_KEYS = ("pretrained", "revision", "subfolder")
# What a backbone's forward takes first, in the order a model's signature is searched.
INPUT_ARGUMENTS = ("input_ids", "pixel_values", "input_values", "input_features")
# Dims of one sample without the batch axis, where a family's main input differs from the default of its name.
_SAMPLE_NDIM = {"audio-spectrogram-transformer": 2, "clap_audio_model": 3}
_SAMPLE_NDIM_BY_INPUT = {"input_ids": 1, "pixel_values": 3, "input_values": 1, "input_features": 2}
# Checkpoint projections beside a component (CLIP's, CLAP's), tried in this order.
_PROJECTIONS = {"vision_model": ("visual_projection", "vision_projection"), "text_model": ("text_projection",),
                "audio_model": ("audio_projection",)}

# LoRA targets per family (the config's ``model_type``): the attention and MLP linears of a block, as named in
# transformers 5 (CLAP's patch-merging ``downsample`` is left out). A family not listed gets every linear of its blocks.
_BERT_STYLE = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
_CLIP_STYLE = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
_VIT_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2")
_WAV2VEC2_STYLE = ("q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense")
LORA_TARGETS = {
    "bert": _BERT_STYLE, "roberta": _BERT_STYLE, "clap_text_model": _BERT_STYLE, "clap_audio_model": _BERT_STYLE,
    "clip_vision_model": _CLIP_STYLE, "clip_text_model": _CLIP_STYLE, "siglip_vision_model": _CLIP_STYLE,
    "siglip_text_model": _CLIP_STYLE, "whisper": _CLIP_STYLE,
    "vit": _VIT_STYLE, "audio-spectrogram-transformer": _VIT_STYLE,
    "wav2vec2": _WAV2VEC2_STYLE, "hubert": _WAV2VEC2_STYLE,
}


# ---------------------------------------------------------------------------- where the checkpoint is
def checkpoint_source(spec: dict) -> dict | None:
    """The checkpoint a tower spec starts from: ``{"pretrained", "revision", "subfolder", "commit"}`` (``commit``
    only once resolved, in a saved config), or ``None`` for a tower built from a config alone.

    Example:

    ```python
    >>> checkpoint_source({"family": "hf", "pretrained": "org/tiny-clip", "revision": "v1"})
    {'pretrained': 'org/tiny-clip', 'revision': 'v1', 'subfolder': None, 'commit': None}
    >>> checkpoint_source({"family": "hf", "backbone": {"model_type": "bert"}}) is None
    True

    ```
    """
    if spec.get("pretrained") is not None:
        return {"pretrained": str(spec["pretrained"]), "revision": spec.get("revision"),
                "subfolder": spec.get("subfolder"), "commit": None}
    source = spec.get("source")
    return dict(source) if isinstance(source, dict) else None


def _describe(spec: dict) -> str:
    source = checkpoint_source(spec) or {}
    revision = source.get("commit") or source.get("revision")
    sub = f", subfolder {source['subfolder']!r}" if source.get("subfolder") else ""
    return f"{source.get('pretrained')!r}" + (f" (revision {revision!r}{sub})" if revision or sub else "")


def _hub_kwargs(spec: dict, commit: str | None = None) -> dict:
    kwargs = {"revision": commit or spec.get("revision")}
    if spec.get("subfolder"):
        kwargs["subfolder"] = spec["subfolder"]
    return kwargs


def _load_error(spec: dict, what: str, err: Exception) -> OSError:
    return OSError(
        f"could not load the {what} of the pretrained tower {_describe(spec)}: {err} (expected a local folder with "
        "config.json and weights, or a Hub repo id reachable now or in the Hugging Face cache)"
    )


def backbone_view(spec: dict, commit: str | None = None) -> PreTrainedConfig:
    """The typed config of an ``hf`` tower: the checkpoint's own (``AutoConfig.from_pretrained``, at ``commit`` when
    given; kept in its ``_commit_hash``, which the weights are then loaded at and a saved config records) for a
    ``pretrained`` spec, else the one its ``backbone`` dict describes."""
    if spec.get("pretrained") is not None:
        try:
            view = AutoConfig.from_pretrained(str(spec["pretrained"]), **_hub_kwargs(spec, commit))
        except (OSError, ValueError) as err:
            raise _load_error(spec, "config", err) from err
        view._commit_hash = None if commit is None else str(commit)  # transformers' own attribute, never saved
        return view
    backbone = dict(spec["backbone"])
    return AutoConfig.for_model(backbone.pop("model_type"), **backbone)


def backbone_dict(view: PreTrainedConfig) -> dict:
    """A backbone config as a ``backbone`` dict of a tower spec (without where it was read from, nor a classifier's
    labels: JSON would turn their integer keys into strings, and a tower has no classifier)."""
    def strip(config: dict) -> dict:
        dropped = ("_name_or_path", "transformers_version", "_commit_hash", "id2label", "label2id")
        return {k: strip(v) if isinstance(v, dict) and "model_type" in v else v
                for k, v in config.items() if k not in dropped}

    return strip(view.to_dict())  # sub-configs too (CLIP's text_config / vision_config)


def saved_tower_spec(spec: dict, view: PreTrainedConfig) -> dict:
    """What a saved config holds for a tower: a ``pretrained`` spec becomes its architecture (``backbone``) plus the
    ``source`` it came from (id, revision asked for, commit resolved); any other spec is kept as it is."""
    if spec.get("pretrained") is None:
        return spec
    source = checkpoint_source(spec)
    source["commit"] = getattr(view, "_commit_hash", None)
    saved = {k: v for k, v in spec.items() if k not in CHECKPOINT_KEYS}
    return {**saved, "backbone": backbone_dict(view), "source": source}


# ---------------------------------------------------------------------------- building
def build_backbone(spec: dict, view: PreTrainedConfig, pooling: str) -> nn.Module:
    """The whole transformers model of a tower: loaded from its checkpoint (``pretrained``) or built from ``view``.

    A config-built backbone is asked for no pooling layer unless it is pooled with it (``add_pooling_layer``,
    where the class takes it), as this package's towers always were."""
    if spec.get("pretrained") is not None:
        kwargs = {**_hub_kwargs(spec, getattr(view, "_commit_hash", None)), "dtype": torch.get_default_dtype()}
        try:
            return AutoModel.from_pretrained(str(spec["pretrained"]), config=view, **kwargs)
        except (OSError, ValueError) as err:
            raise _load_error(spec, "weights", err) from err
    try:
        return AutoModel.from_config(view, add_pooling_layer=pooling == "pooler")
    except TypeError:
        return AutoModel.from_config(view)


def select_component(model: nn.Module, component: str | None, where: str) -> nn.Module:
    """``model``'s sub-model ``component`` (``"vision_model"``, ``"text_model"``, ``"audio_model"``, ``"encoder"``),
    or ``model`` itself when none is named."""
    if not component:
        return model
    try:
        found = model.get_submodule(component)
    except AttributeError:
        found = None
    if not isinstance(found, nn.Module) or isinstance(found, (nn.ModuleList, nn.ModuleDict)):
        choices = [name for name, child in model.named_children() if hasattr(child, "config")]
        raise ValueError(
            f"{where}: {type(model).__name__} has no component {component!r}; its sub-models are {choices}"
        )
    return found


def find_projection(model: nn.Module, component: str | None, name: str | None, where: str) -> nn.Module:
    """The checkpoint's projection of ``component`` (CLIP's ``visual_projection``, CLAP's ``audio_projection``,
    ...), or the module named ``name``."""
    candidates = (name,) if name else _PROJECTIONS.get(component or "", ())
    for candidate in candidates:
        module = getattr(model, candidate, None)
        if isinstance(module, nn.Module):
            return module
    found = [n for n, _ in model.named_children() if "projection" in n]
    raise ValueError(
        f"{where}: use_projection needs the checkpoint's projection of {component or 'the model'!r}; "
        f"{type(model).__name__} has none of {list(candidates) or ['(name it with projection=...)']} "
        f"(its projections: {found})"
    )


def output_width(module: nn.Module) -> int:
    """Width of what a projection gives out: its last linear layer's ``out_features``."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no linear layer; it is not a projection")
    return linears[-1].out_features


def input_argument(model: nn.Module, modality: str | None = None) -> str:
    """The forward argument a backbone takes its input through: ``input_ids`` for text and ``pixel_values`` for any
    other modality where the forward has them (as this package's towers always did), else the first of
    `INPUT_ARGUMENTS` it has (``input_values`` for wav2vec2 and AST, ``input_features`` for CLAP and Whisper)."""
    parameters = inspect.signature(model.forward).parameters
    usual = "input_ids" if modality == "text" else "pixel_values"
    if modality is not None and usual in parameters:
        return usual
    for name in parameters:
        if name in INPUT_ARGUMENTS:
            return name
    raise ValueError(f"{type(model).__name__}.forward takes none of {list(INPUT_ARGUMENTS)}; set input_kwarg")


def default_sample_ndim(model_type: str | None, input_kwarg: str) -> int:
    """Dims of one input sample, without the batch axis, for a family's main input."""
    return _SAMPLE_NDIM.get(model_type, _SAMPLE_NDIM_BY_INPUT.get(input_kwarg, 3))


def _output_classes(annotation) -> list[type]:
    if isinstance(annotation, str):
        return []
    args = typing.get_args(annotation)
    return [a for a in (args or (annotation,)) if isinstance(a, type)]


def check_pooling(model: nn.Module, pooling: str, where: str) -> None:
    """Refuse a pooling the backbone cannot give: ``pooler`` needs a forward whose output has a ``pooler_output``
    (and, with a ``pooler`` layer, that layer built)."""
    if pooling not in POOLINGS:
        raise ValueError(f"{where}: pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    if pooling != "pooler":
        return
    outputs = _output_classes(inspect.signature(model.forward).return_annotation)
    fields = {f for cls in outputs for f in getattr(cls, "__dataclass_fields__", {})}
    if (outputs and "pooler_output" not in fields) or (hasattr(model, "pooler") and model.pooler is None):
        raise ValueError(
            f"{where}: pooling 'pooler' needs the model's pooler output, which {type(model).__name__} does not give; "
            "use 'cls', 'eos' or 'mean'"
        )


def drop_unused_pooler(model: nn.Module, pooling: str) -> None:
    """A pooling layer the tower does not pool with is removed (its weights would be saved and never trained)."""
    if pooling != "pooler" and isinstance(getattr(model, "pooler", None), nn.Module):
        model.pooler = None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the token states over the attention mask (every token without one).

    Example:

    ```python
    >>> import torch
    >>> hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> mean_pool(hidden, torch.tensor([[1, 1, 0]])).item(), round(mean_pool(hidden, None).item(), 3)
    (2.0, 34.667)

    ```
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)


# ---------------------------------------------------------------------------- blocks and LoRA targets
def _has_attention(module: nn.Module) -> bool:
    return any("attn" in name or "attention" in name for name, _ in module.named_modules())


def find_blocks(model: nn.Module, num_layers: int | None, name: str | None = None) -> str:
    """Name of the transformer blocks of ``model`` (an ``nn.ModuleList`` of modules with attention): the one with
    ``num_layers`` blocks, else the outermost such list (CLAP's audio stages), else any list of ``num_layers``
    modules (blocks without attention, as `PrecomputedEmbeddingModel`'s MLPs, even none); ``name`` picks one."""
    if name:
        found = model.get_submodule(name) if name in dict(model.named_modules()) else None
        if not isinstance(found, nn.ModuleList):
            raise ValueError(f"{type(model).__name__} has no block list {name!r}")
        return name
    lists = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) and all(_has_attention(block) for block in m)]
    for list_name, blocks in lists:
        if len(blocks) == num_layers:
            return list_name
    outermost = [n for n, _ in lists if not any(n.startswith(other + ".") for other, _ in lists)]
    if len(outermost) == 1:
        return outermost[0]
    for list_name, blocks in model.named_modules():
        if isinstance(blocks, nn.ModuleList) and len(blocks) == num_layers:
            return list_name
    raise ValueError(
        f"could not find the transformer blocks of {type(model).__name__} (lists of attention blocks: "
        f"{[n for n, _ in lists]}); name them with blocks=..."
    )


def _linears(block: nn.Module) -> list[str]:
    """Names of the linear layers of a block, a LoRA-wrapped one counting as the linear it wraps (so the targets
    stay the same once LoRA is in)."""
    found = [n for n, m in block.named_modules()
             if isinstance(m, nn.Linear) or isinstance(getattr(m, "base_layer", None), nn.Linear)]
    return [n for n in found if not any(n.startswith(outer + ".") for outer in found)]


def lora_targets(blocks: nn.ModuleList, prefix: str, last_n_blocks: int, model_type: str | None,
                 names: list[str] | None = None) -> list[str]:
    """Full names (with ``prefix``) of the linears LoRA wraps in the last ``last_n_blocks`` blocks: those whose names
    end with one of ``names``, else the family's attention and MLP linears (`LORA_TARGETS`), else every linear."""
    wanted = tuple(names) if names else LORA_TARGETS.get(model_type)
    first = max(0, len(blocks) - last_n_blocks)
    found = []
    for index in range(first, len(blocks)):
        for name in _linears(blocks[index]):
            if wanted is None or any(name == w or name.endswith("." + w) for w in wanted):
                found.append(f"{prefix}.{index}.{name}")
    if names and not found:
        raise ValueError(
            f"lora_target_modules {list(names)} match no linear layer of the blocks; a block has {_linears(blocks[-1])}"
        )
    return found


__all__ = [
    "POOLINGS", "LORA_TARGETS", "checkpoint_source", "backbone_view", "backbone_dict", "saved_tower_spec",
    "build_backbone", "select_component", "find_projection", "output_width", "input_argument", "default_sample_ndim",
    "check_pooling", "drop_unused_pooler", "mean_pool", "find_blocks", "lora_targets",
]
