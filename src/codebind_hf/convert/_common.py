"""What every checkpoint converter shares: JSON arguments, strict key accounting, loading into a built model and
writing the result atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ..adapters.io import write_dir_atomically


def read_json_argument(value, what: str) -> Mapping:
    """A dict given as a dict, an inline JSON object (a string starting with ``{``) or a JSON file path."""
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if text.lstrip().startswith("{"):
            loaded = json.loads(text)
        elif not Path(text).is_file():
            raise FileNotFoundError(f"{what}: {text!r} is neither an inline JSON object nor an existing JSON file")
        else:
            loaded = json.loads(Path(text).read_text())
    else:
        loaded = value
    if not isinstance(loaded, Mapping):
        raise TypeError(f"{what} must be a JSON object (dict), got {type(loaded).__name__}")
    return loaded


def account_weights(
    state_dict: Mapping[str, torch.Tensor],
    renamed: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size],
    to_ours: Callable[[str], str | None],
    to_reference: Callable[[str], str],
    disagreement: str,
    mismatch_hint: str,
    synthesized: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Check that ``renamed`` (our names) is exactly what ``expected`` needs, less the ``synthesized`` keys the
    converter fills itself; otherwise raise a `ValueError` listing every extra, missing or mismatched weight with
    its checkpoint / reference name.

    Args:
        state_dict: the checkpoint as loaded (to name the sources of extra weights).
        renamed: the checkpoint's weights under our names.
        expected: our name -> the shape the model needs.
        to_ours / to_reference: the key renaming in both directions.
        disagreement: start of the message for extra/missing keys (what disagrees with what).
        mismatch_hint: what a shape mismatch usually means (e.g. the wrong configuration argument).
    """
    needed = set(expected) - set(synthesized)
    extra, missing = sorted(set(renamed) - needed), sorted(needed - set(renamed))
    if extra or missing:
        problems = []
        if extra:
            sources = sorted(k for k in state_dict if to_ours(k) in extra)
            problems.append(f"checkpoint weights the model has no place for: {extra} (checkpoint keys {sources})")
        if missing:
            problems.append(
                f"weights the model needs but the checkpoint lacks: {missing} "
                f"(reference keys {[to_reference(k) for k in missing]})"
            )
        raise ValueError(f"{disagreement}: " + "; ".join(problems))
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k])}" for k, v in renamed.items() if v.shape != expected[k]
    ]
    if mismatched:
        raise ValueError(f"Shape mismatches ({mismatch_hint}): {mismatched}")


def load_converted_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    """``load_state_dict(weights, strict=False)``, then refuse any unexpected key and any unfilled weight under
    ``prefixes`` (the converted parts; the rest of the model keeps its fresh initialisation)."""
    result = model.load_state_dict(weights, strict=False)
    unfilled = sorted(k for k in result.missing_keys if k.startswith(prefixes))
    if result.unexpected_keys or unfilled:
        raise ValueError(
            f"The model built from the config does not match the converted towers: unexpected {sorted(result.unexpected_keys)}, "
            f"unfilled {unfilled} (do config_overrides change the towers?)"
        )


# What a model + processor folder holds; an existing output folder with anything else is not replaced.
_SAVED_SUFFIXES = (".json", ".safetensors", ".txt", ".md", ".jinja")


def write_model_folder_atomically(output_dir: str | os.PathLike, write: Callable[[Path], None],
                                  folders: tuple[str, ...] = ()) -> Path:
    """Fill a temporary sibling folder through ``write(staging)``, then switch it in for ``output_dir``
    (`codebind_hf.adapters.io.write_dir_atomically`). An existing ``output_dir`` is replaced only if it holds nothing
    but model/processor files and the sub-folders named in ``folders`` (e.g. ``"paths"``, which ``write`` fills)."""
    output_dir = Path(output_dir)
    existing = [p for p in output_dir.iterdir()] if output_dir.is_dir() else []
    replaceable = [p.name for p in existing if (p.name.endswith(_SAVED_SUFFIXES) and p.is_file())
                   or (p.name in folders and p.is_dir())]
    return write_dir_atomically(output_dir, write, replaceable)


def save_pretrained_atomically(output_dir: str | os.PathLike, *objects, **save_kwargs) -> Path:
    """``save_pretrained`` every object (a model, then e.g. its processor) into a temporary sibling folder that then
    replaces ``output_dir`` (`write_model_folder_atomically`). An existing ``output_dir`` is replaced only if it holds
    nothing but model/processor files; ``save_kwargs`` go to the first object."""

    def write(staging: Path) -> None:
        for i, obj in enumerate(objects):
            obj.save_pretrained(staging, **(save_kwargs if i == 0 else {}))

    return write_model_folder_atomically(output_dir, write)


__all__ = ["read_json_argument", "account_weights", "load_converted_weights", "save_pretrained_atomically",
           "write_model_folder_atomically"]
