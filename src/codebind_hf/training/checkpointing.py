"""Checkpoints of a path run: `accelerator.save_state` folders with only the trained tensors, rotation, resume.

A checkpoint ``<output_dir>/checkpoints/checkpoint-<step>/`` holds what Accelerate saves (optimizer, scheduler,
RNG states) except the model: a save hook replaces the full state dict (frozen bridges included) by
``trained_state.safetensors`` — trainable parameters, the path's codebook buffers and the decoder — and
``trainer_state.json`` records the step, epoch, adaptive-weight balancer and counters. Resuming rebuilds the
frozen parts from the base model and loads these tensors strictly.

Nothing lost, nothing silent: every process writes into ``checkpoints/.checkpoint-<step>.staging``; the main process
adds the trainer state and ``checkpoint_checksums.json`` (the sha256 of every file) and switches the folder into
place in one step (`codebind_hf.adapters.io.commit_dir`), so a checkpoint is complete or absent. Rotation deletes
atomically too. Resuming verifies the checksums: ``"latest"`` falls back to the newest intact checkpoint with a
warning naming the corrupt one; an explicit folder that does not verify is an error naming the file.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import torch

from ..adapters.integrity import (
    IntegrityError,
    load_checked_safetensors,
    read_sealed_json,
    save_checked_safetensors,
    verify_checksum_list,
    write_checksum_list,
    write_sealed_json,
)
from ..adapters.io import commit_dir, recover_leftovers, remove_dir_atomically

logger = logging.getLogger("codebind_hf.training")

TRAINED_STATE = "trained_state.safetensors"
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_CHECKSUMS = "checkpoint_checksums.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_STAGING = re.compile(r"^\.checkpoint-(\d+)\.staging$")


def trained_state_keys(model, path: str) -> list[str]:
    """Names of the tensors a run changes: trainable parameters, the path's codebooks, the decoder."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    prefixes = (f"quantizers.{path}.", "decoder.")
    return sorted(k for k in model.state_dict() if k in trainable or k.startswith(prefixes))


def trained_state_dict(model, path: str) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: state[k].detach().contiguous().cpu() for k in trained_state_keys(model, path)}


def atomic_write_json(path: Path, value: dict) -> None:
    """``value`` as indented JSON (other values through ``str``), written atomically and sealed with its checksum
    (`codebind_hf.adapters.integrity.seal_json`)."""
    write_sealed_json(path, value, indent=2)


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``tensors`` as a safetensors file carrying the checksum of its tensors, written atomically."""
    save_checked_safetensors(tensors, path)


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
    state = load_checked_safetensors(file, "trained tensors")  # truncated or bit-flipped: an error naming the file
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


def verify_checkpoint(folder: Path) -> None:
    """Check every file of a checkpoint against ``checkpoint_checksums.json`` (checkpoints of older versions,
    without one, are accepted as they are).

    Raises:
        IntegrityError: naming the missing, truncated or corrupted file.
    """
    folder = Path(folder)
    if (folder / CHECKPOINT_CHECKSUMS).is_file():
        verify_checksum_list(folder, CHECKPOINT_CHECKSUMS, what=f"checkpoint {folder.name}")
    read_trainer_state(folder)


def resolve_checkpoint(output_dir, spec: str | None) -> Path | None:
    """``"latest"`` -> the newest intact checkpoint of ``output_dir`` (None if there is none; a corrupt newer one is
    skipped with a warning naming it); a folder -> itself, verified.

    Raises:
        IntegrityError: the given folder, or every checkpoint of ``output_dir``, fails its checksums.
    """
    if spec is None:
        return None
    if spec == "latest":
        found, refused = list_checkpoints(output_dir), []
        for folder in reversed(found):
            try:
                verify_checkpoint(folder)
            except (IntegrityError, FileNotFoundError) as err:
                refused.append(str(err))
                logger.warning("checkpoint %s is corrupt and is skipped: %s", folder, err)
                continue
            if refused:
                logger.warning("resuming from %s, the newest intact checkpoint, instead of %d newer corrupt one(s)",
                               folder.name, len(refused))
            return folder
        if refused:
            raise IntegrityError(f"every checkpoint of {output_dir} is corrupt; not resuming from any: " + "; ".join(refused))
        return None
    folder = Path(spec)
    recover_leftovers(folder)
    if not (folder / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"resume_from_checkpoint={spec!r} is not a checkpoint folder (no {TRAINER_STATE})")
    verify_checkpoint(folder)
    return folder


def rotate_checkpoints(output_dir, limit: int | None) -> list[Path]:
    """Delete the oldest checkpoints (each atomically) so at most ``limit`` remain; returns the deleted folders."""
    if not limit:
        return []
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - limit)]
    for folder in doomed:
        remove_dir_atomically(folder)
    return doomed


def save_checkpoint(accelerator, output_dir, step: int, trainer_state: dict, limit: int | None) -> Path:
    """``save_state`` into a staging folder (all processes), then the trainer state, the checksums and the switch
    into ``checkpoint-<step>`` (main process), then rotation."""
    root = Path(output_dir) / "checkpoints"
    folder, staging = root / f"checkpoint-{step}", root / f".checkpoint-{step}.staging"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for entry in root.iterdir():  # staging folders of interrupted saves (no other save runs now)
            if _STAGING.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
        staging.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(staging / TRAINER_STATE, trainer_state)
        names = [p.relative_to(staging).as_posix() for p in sorted(staging.rglob("*")) if p.is_file()]
        write_checksum_list(staging, names, CHECKPOINT_CHECKSUMS)
        recover_leftovers(folder)
        commit_dir(staging, folder)
        rotate_checkpoints(output_dir, limit)
    accelerator.wait_for_everyone()
    return folder


FINISHED_MARKER = "train_results.json"  # written last by a run that finished


def claim_output_dir(output_dir, overwrite: bool, resume: bool, what: str = "training run") -> None:
    """Refuse an ``output_dir`` holding a finished run unless ``overwrite`` (``--overwrite_output_dir``) or ``resume``
    (``--resume_from_checkpoint``). Overwriting starts afresh: the old run's results and checkpoints are removed
    first (atomically, by the main process), so nothing of it can be resumed or mistaken for the new run."""
    from accelerate import PartialState

    from ..validation import check_output_dir_free

    output_dir = Path(output_dir)
    finished = check_output_dir_free(output_dir, FINISHED_MARKER, what, overwrite=overwrite, resume=resume)
    if finished and overwrite and not resume and PartialState().is_main_process:
        logger.warning("--overwrite_output_dir: replacing the finished run in %s (its results and checkpoints)", output_dir)
        (output_dir / FINISHED_MARKER).unlink()
        remove_dir_atomically(output_dir / "checkpoints")


def read_trainer_state(folder: Path) -> dict:
    """``trainer_state.json`` of a checkpoint, its seal checked."""
    return read_sealed_json(Path(folder) / TRAINER_STATE, "trainer state")


__all__ = [
    "TRAINED_STATE",
    "TRAINER_STATE",
    "CHECKPOINT_CHECKSUMS",
    "verify_checkpoint",
    "claim_output_dir",
    "FINISHED_MARKER",
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
