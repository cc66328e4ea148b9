"""Checkpoints of a path run: `accelerator.save_state` folders with only the trained tensors, rotation, resume.

A checkpoint ``<output_dir>/checkpoints/checkpoint-<step>/`` holds what Accelerate saves (optimizer, scheduler,
RNG states) except the model: a save hook replaces the full state dict (frozen bridges included) by
``trained_state.safetensors`` — trainable parameters, the path's codebook buffers and the decoder — and
``trainer_state.json`` records the step, epoch, adaptive-weight balancer and counters. Resuming rebuilds the
frozen parts from the base model and loads these tensors strictly.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..adapters.io import write_file_atomically, write_json_atomically

TRAINED_STATE = "trained_state.safetensors"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def trained_state_keys(model, path: str) -> list[str]:
    """Names of the tensors a run changes: trainable parameters, the path's codebooks, the decoder."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    prefixes = (f"quantizers.{path}.", "decoder.")
    return sorted(k for k in model.state_dict() if k in trainable or k.startswith(prefixes))


def trained_state_dict(model, path: str) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: state[k].detach().contiguous().cpu() for k in trained_state_keys(model, path)}


def atomic_write_json(path: Path, value: dict) -> None:
    """``value`` as indented JSON (other values through ``str``), written atomically."""
    write_json_atomically(path, value, indent=2, default=str)


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``tensors`` as a safetensors file, written atomically."""
    write_file_atomically(path, lambda tmp: save_file(tensors, tmp))


def register_hooks(accelerator, get_model, path: str) -> None:
    """Make ``save_state``/``load_state`` store only the trained tensors of the (unwrapped) model."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            atomic_save_file(trained_state_dict(get_model(), path), Path(output_dir) / TRAINED_STATE)
        weights.clear()  # nothing else: the frozen base is rebuilt from model.name_or_path

    def load_hook(models, input_dir):
        models.clear()
        load_trained_state(get_model(), path, Path(input_dir) / TRAINED_STATE)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def load_trained_state(model, path: str, file: Path) -> None:
    """Load ``trained_state.safetensors``; every expected tensor must be there with the same shape."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: not a checkpoint written by codebind-train")
    state = load_file(str(file))
    expected = set(trained_state_keys(model, path))
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise ValueError(
            f"Checkpoint {file.parent} does not match this run's trainable tensors (different mode/path/config?): "
            f"missing {missing[:8]}, unexpected {extra[:8]}"
        )
    own = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"Checkpoint {file.parent} has tensors of other shapes: {wrong[:8]}")
    model.load_state_dict(state, strict=False)


def list_checkpoints(output_dir) -> list[Path]:
    """Checkpoint folders of a run, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found) if (p / TRAINER_STATE).is_file()]


def resolve_checkpoint(output_dir, spec: str | None) -> Path | None:
    """``"latest"`` -> the newest complete checkpoint of ``output_dir`` (None if there is none); a folder -> itself."""
    if spec is None:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    folder = Path(spec)
    if not (folder / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"resume_from_checkpoint={spec!r} is not a checkpoint folder (no {TRAINER_STATE})")
    return folder


def rotate_checkpoints(output_dir, limit: int | None) -> list[Path]:
    """Delete the oldest checkpoints so at most ``limit`` remain; returns the deleted folders."""
    if not limit:
        return []
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - limit)]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def save_checkpoint(accelerator, output_dir, step: int, trainer_state: dict, limit: int | None) -> Path:
    """``save_state`` into ``checkpoint-<step>`` (all processes), then the trainer state and rotation (main)."""
    folder = Path(output_dir) / "checkpoints" / f"checkpoint-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        atomic_write_json(folder / TRAINER_STATE, trainer_state)  # written last: marks the checkpoint complete
        rotate_checkpoints(output_dir, limit)
    accelerator.wait_for_everyone()
    return folder


def read_trainer_state(folder: Path) -> dict:
    return json.loads((Path(folder) / TRAINER_STATE).read_text())


__all__ = [
    "TRAINED_STATE",
    "TRAINER_STATE",
    "trained_state_keys",
    "trained_state_dict",
    "register_hooks",
    "load_trained_state",
    "list_checkpoints",
    "resolve_checkpoint",
    "rotate_checkpoints",
    "save_checkpoint",
    "read_trainer_state",
    "atomic_write_json",
    "atomic_save_file",
]
