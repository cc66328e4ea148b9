"""Moving artifacts safely: atomic folder writes, checksums, and Hub transfers whose errors never show the token."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_dir_atomically(directory: str | os.PathLike, write: Callable[[Path], None], replaceable: Iterable[str]) -> Path:
    """Fill a temporary sibling folder through ``write(staging_dir)``, then rename it to ``directory``.

    An existing ``directory`` is replaced only if it holds nothing but files named in ``replaceable`` (so a
    mistyped folder cannot wipe, say, a training run); if anything fails, the previous folder is left as it was.

    Returns:
        `Path`: ``directory``.
    """
    directory = Path(directory)
    replaceable = set(replaceable)
    if directory.exists():
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} exists and is not a directory")
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in replaceable)
        if foreign:
            raise FileExistsError(
                f"{directory} holds other files {foreign[:5]}; write into a new or empty directory (or one holding "
                f"only {sorted(replaceable)}), since it is replaced as a whole"
            )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0o700; the result should look like any other folder
    old = None
    try:
        write(staging)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(directory, old)
        os.replace(staging, directory)
    except BaseException:
        if old is not None and not directory.exists():
            os.replace(old, directory)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and directory.exists():
            shutil.rmtree(old, ignore_errors=True)
    return directory


@contextlib.contextmanager
def token_kept_out_of_errors(token: str | bool | None):
    """Re-raise any error with the Hub token (the one given, or the saved one) scrubbed from its message, its
    string attributes and its chained causes; the error keeps its type."""
    try:
        yield
    except Exception as err:
        secrets = {token} if isinstance(token, str) and token else set()
        with contextlib.suppress(Exception):
            from huggingface_hub import get_token

            saved = get_token()
            if saved:
                secrets.add(saved)
        if not secrets:
            raise
        seen, current = set(), err
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            _scrub(current, secrets)
            current = current.__cause__ or current.__context__
        if any(secret in str(err) for secret in secrets):  # a custom __str__ we cannot edit
            raise RuntimeError(f"Hub request failed ({type(err).__name__}); its message held the token and is withheld") from None
        raise


def _scrub(err: BaseException, secrets: set[str]) -> None:
    def clean(value):
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "hf_***")
        return value

    err.args = tuple(clean(a) for a in err.args)
    for name, value in list(vars(err).items()):
        if isinstance(value, str) and any(secret in value for secret in secrets):
            with contextlib.suppress(AttributeError):
                setattr(err, name, clean(value))


def resolve_hub_revision(name_or_path, revision: str | None = None, token=None, cache_dir=None, local_files_only: bool = False):
    """The commit a Hub id's revision resolves to (a `huggingface_hub.ResolvedRevision`, whose ``.resolved`` is the
    commit hash), or None for a local folder and on any failure (the caller's own loading reports those)."""
    if name_or_path is None or os.path.isdir(str(name_or_path)):
        return None
    try:
        from huggingface_hub import HfApi, constants

        return HfApi().resolve_revision(
            str(name_or_path), revision=revision, token=token, cache_dir=cache_dir,
            local_files_only=local_files_only or constants.is_offline_mode(),
        )
    except Exception:
        return None


def download_snapshot(repo_id: str, allow_patterns: list[str], revision: str | None = None, token=None) -> Path:
    """`huggingface_hub.snapshot_download` of the files matching ``allow_patterns``; a string that is neither a
    folder nor a valid repo id is a `FileNotFoundError` naming it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise FileNotFoundError(f"{repo_id!r} is neither a local directory nor a Hub repo id ({err})") from None
    with token_kept_out_of_errors(token):
        return Path(snapshot_download(repo_id, revision=revision, token=token, allow_patterns=allow_patterns))


__all__ = ["file_sha256", "write_dir_atomically", "token_kept_out_of_errors", "resolve_hub_revision", "download_snapshot"]
