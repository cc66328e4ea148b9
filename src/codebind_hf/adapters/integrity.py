"""Checksums on what the library writes and reads back, verified on every load; a mismatch names the file.

Three forms, one per kind of file:

- **sealed JSON** (`seal_json` / `read_sealed_json`): the document carries the sha256 of its own canonical content
  under ``"content_sha256"`` (index and build manifests, trainer state, cache info, checksum lists);
- **checked safetensors** (`save_checked_safetensors` / `load_checked_safetensors`): the file's metadata carries the
  sha256 of its tensors' names, dtypes, shapes and bytes (checkpoint tensors, index codes, build shards);
- **checksum lists** (`write_checksum_list` / `verify_checksum_list`): a sealed JSON beside files written by other
  code (a full model's safetensors, Accelerate's checkpoint files, arrow shards), giving each file's sha256.

Files written by older versions carry no seal: they are read as before (a truncation still fails to parse).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .io import file_sha256, write_file_atomically

SEAL_KEY = "content_sha256"
TENSORS_KEY = "codebind_tensors_sha256"
CHECKSUM_FORMAT = "codebind-checksums"


class IntegrityError(ValueError):
    """A file we wrote does not read back as written (corrupted, truncated or edited); the message names it."""


# ---------------------------------------------------------------------------------------------- sealed JSON
def _canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal_json(payload: dict, **dumps_kwargs) -> str:
    """``payload`` as JSON text carrying the sha256 of its canonical form under ``"content_sha256"``.

    Example:

    ```python
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "state.json"
    >>> _ = path.write_text(seal_json({"step": 3}))
    >>> read_sealed_json(path)
    {'step': 3}
    >>> _ = path.write_text(path.read_text().replace("3", "4"))
    >>> read_sealed_json(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    codebind_hf.adapters.integrity.IntegrityError: .../state.json does not match its checksum ...

    ```
    """
    plain = json.loads(json.dumps(payload, default=str))  # the form a reader gets back
    plain.pop(SEAL_KEY, None)
    return json.dumps({**plain, SEAL_KEY: hashlib.sha256(_canonical(plain)).hexdigest()}, **dumps_kwargs)


def read_sealed_json(path: str | os.PathLike, what: str = "file", require_seal: bool = False) -> dict:
    """Parse a JSON object written with `seal_json` and check its seal (``require_seal=False`` also accepts
    documents without one, from older versions).

    Raises:
        FileNotFoundError: no such file. IntegrityError: not JSON, not an object, or the seal does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the {what})")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"{path} is corrupted or truncated: the {what} is not valid JSON ({err})") from None
    if not isinstance(payload, dict):
        raise IntegrityError(f"{path} is corrupted: the {what} must be a JSON object, got {type(payload).__name__}")
    seal = payload.pop(SEAL_KEY, None)
    if seal is None:
        if require_seal:
            raise IntegrityError(f"{path} has no {SEAL_KEY!r}: the {what} was not written by codebind_hf")
        return payload
    if hashlib.sha256(_canonical(payload)).hexdigest() != seal:
        raise IntegrityError(f"{path} does not match its checksum ({SEAL_KEY}): the {what} is corrupted or was edited")
    return payload


def write_sealed_json(path: str | os.PathLike, payload: dict, *, fsync: bool = False, **dumps_kwargs) -> Path:
    """`seal_json` written atomically (`codebind_hf.adapters.io.write_file_atomically`)."""
    return write_file_atomically(path, seal_json(payload, **dumps_kwargs), fsync=fsync)


# ---------------------------------------------------------------------------------------------- checked safetensors
def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checked_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``tensors`` atomically as safetensors whose metadata carries `tensors_sha256`."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    meta = {"format": "pt", **(metadata or {}), TENSORS_KEY: tensors_sha256(tensors)}
    return write_file_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checked_safetensors(path: str | os.PathLike, what: str = "tensors", require_seal: bool = False) -> dict[str, torch.Tensor]:
    """Load a safetensors file, refusing (naming it) one that is truncated, unreadable or whose tensors do not
    match the checksum in its metadata (files without one are accepted unless ``require_seal``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the {what})")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise IntegrityError(f"{path} is corrupted or truncated: the {what} cannot be read ({err})") from None
    recorded = metadata.get(TENSORS_KEY)
    if recorded is None:
        if require_seal:
            raise IntegrityError(f"{path} carries no {TENSORS_KEY!r}: the {what} was not written by codebind_hf")
        return tensors
    if tensors_sha256(tensors) != recorded:
        raise IntegrityError(f"{path} does not match its checksum ({TENSORS_KEY}): the {what} is corrupted")
    return tensors


# ---------------------------------------------------------------------------------------------- checksum lists
def write_checksum_list(folder: str | os.PathLike, names, list_name: str) -> Path:
    """Write ``folder/list_name``: the sha256 of each file ``names`` (paths relative to ``folder``), sealed."""
    folder = Path(folder)
    files = {name: file_sha256(folder / name) for name in sorted(names)}
    return write_sealed_json(folder / list_name, {"format": CHECKSUM_FORMAT, "version": 1, "files": files}, indent=1)


def verify_checksum_list(folder: str | os.PathLike, list_name: str, what: str = "folder", locate=None) -> dict[str, str]:
    """Check every file named in ``folder/list_name`` against its recorded sha256 (``locate(name)``, if given,
    returns the local path of a file, e.g. from the Hub cache).

    Returns:
        `dict[str, str]`: file name -> sha256, as recorded.

    Raises:
        IntegrityError: the list is corrupted, or a file is missing or differs (the message names it).
    """
    folder = Path(folder)
    listing = read_sealed_json(folder / list_name, f"checksum list of the {what}", require_seal=True)
    files = listing.get("files")
    if listing.get("format") != CHECKSUM_FORMAT or not isinstance(files, dict):
        raise IntegrityError(f"{folder / list_name} is not a codebind checksum list (expected format {CHECKSUM_FORMAT!r})")
    for name, recorded in files.items():
        path = Path(locate(name)) if locate is not None else folder / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing: {list_name} lists it as part of the {what}")
        found = file_sha256(path)
        if found != recorded:
            raise IntegrityError(
                f"{path} is corrupted or truncated: its sha256 is {found[:16]}…, {list_name} records {recorded[:16]}…"
            )
    return files


__all__ = [
    "IntegrityError",
    "seal_json",
    "read_sealed_json",
    "write_sealed_json",
    "tensors_sha256",
    "save_checked_safetensors",
    "load_checked_safetensors",
    "write_checksum_list",
    "verify_checksum_list",
]
