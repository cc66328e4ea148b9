"""A full model's folder as one atomic, checksummed artifact: what `CodeBindModel.save_pretrained` and
`CodeBindModel.from_pretrained` wrap around transformers' own saving and loading.

``save_pretrained`` writes into a temporary folder beside the target (transformers' files plus
``model_checksums.json``, the sha256 of every weights file and shard index), then switches it with the target in
one step (`codebind_hf.adapters.io.write_dir_atomically`): config, weights and shard index change together, a
shard index or shard left by an earlier save never survives, and other files in the folder (a processor's,
a card) are kept. ``from_pretrained`` checks those sha256 before transformers reads a byte.
"""

from __future__ import annotations

import os
from pathlib import Path

from .integrity import IntegrityError, verify_checksum_list, write_checksum_list
from .io import write_dir_atomically
from .atomic_switch import recover_leftovers

MODEL_CHECKSUMS = "model_checksums.json"
# What one save_pretrained owns in its folder: replaced as a set (so stale shards and indexes go), the rest kept.
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
    MODEL_CHECKSUMS,
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def save_model_folder(save_directory: str | os.PathLike, save, is_main_process: bool = True) -> Path:
    """Run ``save(staging_dir)`` (transformers' ``save_pretrained`` into a fresh folder), list the weights' sha256
    in ``model_checksums.json``, and switch the folder into ``save_directory`` atomically.

    Returns:
        `Path`: ``save_directory``.
    """
    save_directory = Path(save_directory)
    if save_directory.is_file():
        raise NotADirectoryError(f"{save_directory} is a file; save_pretrained needs a folder")
    if not is_main_process:  # the main process writes the folder; the others must not race it
        return save_directory

    def write(staging: Path) -> None:
        save(staging)
        weights = [p.name for p in staging.iterdir() if p.is_file() and p.name.startswith(("model", "pytorch_model"))
                   and p.name.endswith(_WEIGHT_SUFFIXES)]
        write_checksum_list(staging, weights, MODEL_CHECKSUMS)

    return write_dir_atomically(save_directory, write, replaceable=MODEL_FILES, keep_others=True)


def check_model_source(name_or_path, **hub_kwargs) -> None:
    """Before a load: heal an interrupted save of a local folder, refuse a path that is neither a folder nor a Hub
    repo id (naming it), and verify the weights against ``model_checksums.json`` when the source has one (older
    saves have none). ``hub_kwargs``: ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``subfolder``.

    Raises:
        FileNotFoundError: no such folder and not a repo id. IntegrityError: a weights file differs from its checksum.
    """
    if name_or_path is None or not isinstance(name_or_path, (str, os.PathLike)):
        return
    path = Path(name_or_path)
    recover_leftovers(path)
    if path.is_dir():
        folder = path / hub_kwargs.get("subfolder", "")
        if (folder / MODEL_CHECKSUMS).is_file():
            verify_checksum_list(folder, MODEL_CHECKSUMS, what=f"model saved in {folder}")
        return
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; from_pretrained needs the folder holding config.json or a Hub repo id")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        raise FileNotFoundError(
            f"{name_or_path!r} is not a folder (no such directory) and not a Hub repo id ('user/name'); check the path"
        ) from None
    _verify_hub_checksums(str(name_or_path), hub_kwargs)


def _verify_hub_checksums(repo_id: str, hub_kwargs: dict) -> None:
    from transformers.utils.hub import cached_file

    kwargs = {k: hub_kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only", "subfolder") if hub_kwargs.get(k) is not None}
    try:
        listing = cached_file(repo_id, MODEL_CHECKSUMS, _raise_exceptions_for_missing_entries=False,
                              _raise_exceptions_for_connection_errors=False, **kwargs)
    except Exception:  # unreachable repo, gated, ...: transformers' own load reports it
        return
    if listing is None:
        return

    def locate(name: str) -> str:
        found = cached_file(repo_id, name, **kwargs)
        if found is None:
            raise IntegrityError(f"{repo_id}: {name} is listed in {MODEL_CHECKSUMS} but missing")
        return found

    verify_checksum_list(Path(listing).parent, MODEL_CHECKSUMS, what=f"model {repo_id}", locate=locate)


def explain_load_failure(name_or_path, model_class, error: Exception) -> Exception | None:
    """For a local folder transformers could not load: an error naming the unreadable weights file, or every tensor
    whose shape differs from what ``config.json`` builds (file, key, both shapes); None if neither explains it."""
    import torch
    from safetensors import safe_open

    folder = Path(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
    if folder is None or not folder.is_dir():
        return None
    files = sorted(folder.glob("model*.safetensors"))
    headers = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                headers[file] = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as err:  # safetensors raises its own error types, by version
            return ValueError(f"{file} is corrupted or truncated: its safetensors header cannot be read ({err})")
    if "mismatched" not in str(error) and "size" not in str(error):
        return None
    try:
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in model_class(model_class.config_class.from_pretrained(folder)).state_dict().items()}
    except Exception:
        return None
    wrong = [f"{file.name}: {key} has shape {shape}, the model of config.json expects {expected[key]}"
             for file, keys in headers.items() for key, shape in keys.items() if key in expected and expected[key] != shape]
    return ValueError(f"{folder}: tensors of the wrong shape: " + "; ".join(wrong[:10])) if wrong else None


__all__ = ["MODEL_CHECKSUMS", "MODEL_FILES", "save_model_folder", "check_model_source", "explain_load_failure"]
