"""LoRA on the last blocks of a target tower, through peft (never a private LoRA).

peft wraps each targeted ``nn.Linear`` in place (``base_layer`` + ``lora_A``/``lora_B``); only the LoRA
matrices are trainable. The targets come from the tower itself (``tower.lora_target_modules(n)``), so
the same call works for ImageBind towers and transformers backbones. Which tensors are LoRA's is read from peft's
tuner layers (`lora_keys`), never from parameter names; the settings live in the model's registry
(`codebind_hf.adapters.state.AdapterState.lora`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..modalities import canonical_modality
from .state import adapter_state


def add_lora(
    model: nn.Module,
    modality: str,
    r: int | None = None,
    lora_alpha: int | None = None,
    last_n_blocks: int | None = None,
    dropout: float = 0.0,
    adapter_name: str = "default",
) -> list[str]:
    """Inject LoRA (rank ``r``) into the linears of the last ``last_n_blocks`` blocks of ``model.towers[modality]``.

    Settings left as ``None`` come from the path config of ``modality`` (``lora_rank``, ``lora_alpha``,
    ``lora_last_n_blocks``; paper: rank 4 on the last 6 blocks), or those defaults when the modality has no path.
    A tower with fewer blocks than asked gets LoRA on all of them. Returns the wrapped module names (relative
    to the tower); the settings are recorded in ``model.lora_settings[modality]`` so path artifacts can re-create them.

    Example:

    ```python
    >>> from codebind_hf.adapters.lora import add_lora, lora_state_dict  # doctest: +SKIP
    >>> add_lora(model, "audio", r=4, last_n_blocks=6)  # doctest: +SKIP

    ```
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:  # pragma: no cover - peft is in the [train] extra
        raise ImportError("LoRA needs peft: pip install 'codebind-hf[train]'") from err
    modality = canonical_modality(modality)
    if modality not in model.towers:
        raise ValueError(f"No tower for modality {modality!r}; the model has {sorted(model.towers)}")
    tower = model.towers[modality]
    settings = adapter_state(model).lora
    paths = getattr(getattr(model, "config", None), "paths", {}) or {}
    path = paths.get(modality, {})
    r = path.get("lora_rank", 4) if r is None else r
    lora_alpha = (path.get("lora_alpha") or r) if lora_alpha is None else lora_alpha  # default scale 1 (alpha = rank)
    last_n_blocks = min(path.get("lora_last_n_blocks", 6), tower.num_blocks) if last_n_blocks is None else last_n_blocks
    if not 1 <= last_n_blocks <= tower.num_blocks:
        raise ValueError(f"last_n_blocks must lie in [1, {tower.num_blocks}] for the {modality} tower, got {last_n_blocks}")
    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    if modality in settings:
        raise ValueError(f"The {modality} tower already has LoRA: {settings[modality]}")
    targets = tower.lora_target_modules(last_n_blocks)
    config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    inject_adapter_in_model(config, tower, adapter_name=adapter_name)
    settings[modality] = {"r": r, "lora_alpha": lora_alpha, "last_n_blocks": last_n_blocks, "dropout": dropout}
    return targets


# ---------------------------------------------------------------------------- which tensors are LoRA's
def lora_keys(module: nn.Module) -> dict[str, str | None]:
    """The state-dict keys of ``module`` that peft's tuner layers own, each mapped to its key in the plain module.

    As peft counts them, everything on a tuner layer belongs to it: the wrapped layer, whose tensors map to the
    keys they had before the injection (``q.base_layer.weight`` -> ``q.weight``), and the adapter tensors, which
    map to None (``q.lora_A.default.weight``). Keys of modules without LoRA are not in the result.
    """
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # without peft there is no LoRA to see
        return {}
    owned: dict[str, str | None] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, BaseTunerLayer):
            prefix = f"{name}." if name else ""
            for key in layer.state_dict():
                child, _, rest = key.partition(".")
                owned[prefix + key] = prefix + rest if child == "base_layer" else None
    return owned


def lora_adapter_keys(module: nn.Module, prefix: str = "") -> set[str]:
    """Keys (with ``prefix``) of the LoRA adapter tensors in ``module`` (see `lora_keys`)."""
    return {prefix + key for key, plain in lora_keys(module).items() if plain is None}


def plain_state_keys(module: nn.Module) -> set[str]:
    """The state-dict keys ``module`` has without its LoRA (see `lora_keys`)."""
    owned = lora_keys(module)
    return {owned.get(key, key) for key in module.state_dict()} - {None}


def lora_state_dict(model: nn.Module, modality: str) -> dict[str, torch.Tensor]:
    """The LoRA weights of a tower, keyed by their full names in ``model``."""
    modality = canonical_modality(modality)
    if modality not in model.towers:
        return {}
    prefix = f"towers.{modality}."
    adapters = lora_adapter_keys(model.towers[modality], prefix)
    return {k: v for k, v in model.towers[modality].state_dict(prefix=prefix).items() if k in adapters}


# ---------------------------------------------------------------------------- taking LoRA off
def _take_off(model: nn.Module, modality: str, merge: bool) -> None:
    """Put every tuner layer of the tower back to its base layer (after folding the update in, with ``merge``)."""
    from peft.tuners.tuners_utils import BaseTunerLayer  # only reached when LoRA was added, so peft is there

    tower = model.towers[modality]
    for name, layer in list(tower.named_modules()):
        if isinstance(layer, BaseTunerLayer):
            if merge:
                layer.merge()
            parent, _, child = name.rpartition(".")
            setattr(tower.get_submodule(parent) if parent else tower, child, layer.get_base_layer())
    if hasattr(tower, "peft_config"):  # left by peft's injection; a later add_lora would warn about it
        del tower.peft_config
    adapter_state(model).lora.pop(modality, None)


def remove_lora(model: nn.Module, modality: str) -> None:
    """Drop the LoRA adapters of a tower: it regains its plain modules, keys and weights."""
    _take_off(model, canonical_modality(modality), merge=False)


def merge_lora(model: nn.Module, modality: str) -> None:
    """Fold the LoRA update into the base weights and remove the adapters (the tower regains its plain keys)."""
    _take_off(model, canonical_modality(modality), merge=True)


def set_trainable(model: nn.Module, target: str, mode: str) -> list[str]:
    """Freeze everything but what ``mode`` trains for the path of ``target``; return the trainable names.

    - ``lora``: LoRA matrices of the target tower + the target's shared head + the path's specific heads;
    - ``headtune``: the target's shared head + the path's specific heads;
    - ``fulltune``: the whole target tower + those heads.
    In every mode also the path's own copies of base tensors (``path_owned.<target>.*``: its bridge heads and CLS
    tokens with ``variants.bridge_heads: official``); the base's bridges stay frozen; codebooks are EMA buffers.
    """
    target = canonical_modality(target)
    if mode not in ("lora", "headtune", "fulltune"):
        raise ValueError(f"mode must be 'lora', 'headtune' or 'fulltune', got {mode!r}")
    if mode == "lora" and target not in adapter_state(model).lora:
        raise ValueError(f"mode 'lora' needs LoRA on the {target} tower first: call add_lora(model, {target!r})")
    heads = (f"shared_heads.{target}.", f"specific_heads.{target}.", f"logit_scales.{target}.", f"path_owned.{target}.")
    adapters = lora_adapter_keys(model.towers[target], f"towers.{target}.") if mode == "lora" else set()
    trainable = []
    for name, param in model.named_parameters():
        keep = name.startswith(heads) or name in adapters
        if mode == "fulltune":
            keep = keep or name.startswith(f"towers.{target}.")
        if name.startswith("decoder."):
            keep = True  # training-only reconstruction decoder
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


__all__ = [
    "add_lora",
    "lora_keys",
    "lora_adapter_keys",
    "plain_state_keys",
    "lora_state_dict",
    "remove_lora",
    "merge_lora",
    "set_trainable",
]
