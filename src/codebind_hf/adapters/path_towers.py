"""Paths that carry their own tower: how a path brings a new modality (a sensor beyond the nine) to any base model.

A path whose target is not one of the nine known modalities (`codebind_hf.modalities.MODALITIES`) carries what a
base model cannot have: in ``path.safetensors`` the target's whole tower (its full weights; with LoRA, the weights LoRA
starts from and the adapters), and in ``path_config.json`` the modality's spec (``modality_spec``: tower settings,
input key, sample shape, processor component). Loading it into a base model that lacks the modality adds the modality
first (`CodeBindModel.add_modality`), then loads the path as any other; removing the path removes the modality again.
The base model's fingerprint then covers the bridges only (their towers and shared heads): the target's tower is the
path's own. The card says which sensor, shape and preprocessing the path expects.

`codebind_hf.adapters.paths` calls the hooks below; nothing else does.
"""

from __future__ import annotations

from ..feature_extraction_array_sensor import processor_component
from ..modalities import canonical_modality, is_known
from .state import adapter_state

SPEC_KEY = "modality_spec"


def carries_tower(target: str) -> bool:
    """Whether the path of ``target`` carries its tower and spec: every modality beyond the nine known ones."""
    return not is_known(canonical_modality(target))


def carried_prefixes(target: str) -> tuple[str, ...]:
    """State-dict prefixes a path of ``target`` carries besides its own modules (the tower, for a new modality)."""
    return (f"towers.{target}.",) if carries_tower(target) else ()


def path_tower_record(model, target: str) -> dict:
    """What ``path_config.json`` records of a carried tower: ``{"modality_spec": ...}`` (nothing for the nine)."""
    return {SPEC_KEY: model.config.modality_spec(target)} if carries_tower(target) else {}


def carried_spec(model, target: str) -> dict | None:
    """The spec of ``target`` when its modality came with a loaded path (to put back if a replacement fails)."""
    return model.config.modality_spec(target) if target in adapter_state(model).path_modalities else None


def path_modality_spec(config: dict, source) -> dict | None:
    """The spec a path artifact carries; a path of an unknown modality without one is refused by name."""
    target = canonical_modality(config["modality"])
    spec = config.get(SPEC_KEY)
    if spec is None and not is_known(target):
        raise ValueError(
            f"{source}: the path is for modality {target!r}, which is none of the known ones, and its path_config.json "
            f"carries no {SPEC_KEY!r} (tower, input key, shape, processor): a path of a new modality carries its tower; "
            "save it again with this codebind_hf"
        )
    return spec


def attach_carried_tower(model, target: str, spec: dict | None) -> None:
    """Give ``model`` the carried modality before the path's checks: added if the base lacks it (and recorded, so
    `release_carried_tower` removes it), refused if the base has its own modality of that name with another tower."""
    if spec is None:
        return
    if target in model.towers:
        ours = {k: v for k, v in model.config.modality_spec(target).items() if k != "processor"}
        theirs = {k: v for k, v in spec.items() if k != "processor"}
        if ours != theirs:
            raise ValueError(
                f"This base model has its own {target!r} modality, with another spec than the path's ({ours} here, "
                f"{theirs} in the path); remove_modality({target!r}) first to use the path's tower"
            )
        return
    model.add_modality(target, spec)
    adapter_state(model).path_modalities.add(target)


def release_carried_tower(model, target: str) -> None:
    """Remove a modality that came with a path (after `remove_path`, or a failed load); others are left alone."""
    state = adapter_state(model)
    if target in state.path_modalities and target not in model.quantizers:
        state.path_modalities.discard(target)
        model.remove_modality(target)


def carried_tower_card(config: dict) -> str:
    """The card's section on the sensor a carrying path expects (empty for the nine known modalities)."""
    spec = config.get(SPEC_KEY)
    if spec is None:
        return ""
    target = config["modality"]
    tower = spec["tower"]
    backbone = tower.get("backbone", {})
    model_type = backbone.get("model_type", tower.get("family"))
    processor = spec.get("processor")
    steps = processor_component(processor).describe() if processor else "none recorded: pass tensors of the shape above"
    shape = " × ".join(map(str, spec.get("sample_shape", []))) or f"{spec.get('sample_ndim')} dims"
    return (
        f"\n\n## Sensor: {target}\n\n"
        f"- **Sensor**: {spec.get('description') or target}\n"
        f"- **One sample**: {shape} (input key `{spec['input_key']}`)\n"
        f"- **Preprocessing**: {steps}\n"
        f"- **Tower**: carried by this path ({tower.get('family')} / {model_type}); a base model without a {target} "
        "modality gets it from here\n\n"
        "```python\n"
        "model.load_path(\"<this repo>\")  # adds the modality, then the path\n"
        f"processor.add_modality(\"{target}\", model.modality_processor(\"{target}\"))\n"
        f"features = model.get_features(\"{target}\", processor({target}=arrays)[\"{spec['input_key']}\"])\n"
        "```\n"
    )


__all__ = ["carries_tower", "carried_prefixes", "path_tower_record", "carried_spec", "path_modality_spec",
           "attach_carried_tower", "release_carried_tower", "carried_tower_card", "SPEC_KEY"]
