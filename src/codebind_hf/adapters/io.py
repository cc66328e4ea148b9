"""Moving artifacts safely: atomic file and folder writes, checksums, checked safetensors + json artifacts, and Hub
transfers whose errors never show the token."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..validation import check_finite_tensors
from .atomic_switch import crash_point, fsync_tree, leftover_name, link_or_copy, recover_leftovers, switch_dir


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_permissions(path: str | os.PathLike, mode: int) -> None:
    # mkstemp/mkdtemp make 0o600/0o700; the result should look like any other file or folder.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def write_file_atomically(path: str | os.PathLike, data: str | bytes | Callable[[Path], object], *,
                          fsync: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to a temporary file beside ``path``, then rename it over ``path``, so that a
    reader never sees a half-written file.

    ``data`` may also be a callable that writes the temporary file itself, given its path (for writers that only
    take a file name, such as `safetensors.torch.save_file`). With ``fsync=True`` the bytes reach the disk before
    the rename (a commit point that must survive a power cut).

    Example:

    ```python
    >>> import tempfile, torch
    >>> from safetensors.torch import load_file, save_file
    >>> folder = tempfile.mkdtemp()
    >>> path = write_file_atomically(folder + "/out/results.json", '{"a": 1}')
    >>> path.read_text()
    '{"a": 1}'
    >>> path = write_file_atomically(folder + "/w.safetensors", lambda tmp: save_file({"w": torch.ones(2)}, tmp))
    >>> load_file(path)["w"].tolist()
    [1.0, 1.0]

    ```

    Returns:
        `Path`: ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(leftover_name(path, "tmp"))
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if callable(data):
            os.close(handle)
            data(Path(tmp))
        else:
            with os.fdopen(handle, "wb") as out:
                out.write(data.encode("utf-8") if isinstance(data, str) else data)
        if fsync:
            with open(tmp, "rb+") as out:
                os.fsync(out.fileno())
        _default_permissions(tmp, 0o666)
        crash_point(f"file {path.name}: written")
        os.replace(tmp, path)
        crash_point(f"file {path.name}: renamed")
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomically(path: str | os.PathLike, payload, *, fsync: bool = False, **dumps_kwargs) -> Path:
    """`write_file_atomically` of ``json.dumps(payload, **dumps_kwargs)`` (no trailing newline is added).

    Example:

    ```python
    >>> import tempfile
    >>> write_json_atomically(tempfile.mkdtemp() + "/state.json", {"step": 3}, indent=2).read_text()
    '{\\n  "step": 3\\n}'

    ```

    Returns:
        `Path`: ``path``.
    """
    return write_file_atomically(path, json.dumps(payload, **dumps_kwargs), fsync=fsync)


def _staging_dir(directory: Path) -> Path:
    """An empty folder beside ``directory`` (same file system, so it can be switched into place), named so that a
    later run can tell a dead writer's leftover (`recover_leftovers`)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = leftover_name(directory, "tmp")
    staging.mkdir()
    _default_permissions(staging, 0o777)
    return staging


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def write_dir_atomically(directory: str | os.PathLike, write: Callable[[Path], None],
                         replaceable: Iterable[str] | None, *, keep_others: bool = False) -> Path:
    """Fill a temporary sibling folder through ``write(staging_dir)``, flush it to disk, then switch it with
    ``directory`` in one atomic step: a reader, or a crash at any point, sees the old folder or the new one, whole.

    An existing ``directory`` is replaced only if it holds nothing but files matching ``replaceable`` (names or
    `fnmatch` patterns), so a mistyped folder cannot wipe, say, a training run; ``replaceable=None`` replaces
    whatever it holds (for a folder the caller owns entirely, such as a cache entry). With ``keep_others`` the
    other files are kept instead: hard-linked (or copied) into the new version, while files matching
    ``replaceable`` that ``write`` did not produce are dropped (a stale shard index, say). Leftovers of interrupted
    writes beside ``directory`` are healed first (`recover_leftovers`). If anything fails, the previous folder is
    left as it was.

    Example:

    ```python
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "model"
    >>> _ = write_dir_atomically(folder, lambda d: (d / "a.bin").write_text("1"), replaceable=["*.bin"])
    >>> (folder / "notes.txt").write_text("mine")
    4
    >>> _ = write_dir_atomically(folder, lambda d: (d / "b.bin").write_text("2"), ["*.bin"], keep_others=True)
    >>> sorted(p.name for p in folder.iterdir())  # a.bin was ours and is gone; notes.txt is kept
    ['b.bin', 'notes.txt']

    ```

    Returns:
        `Path`: ``directory``.
    """
    directory = Path(directory)
    recover_leftovers(directory)
    patterns = None if replaceable is None else list(replaceable)
    if directory.exists():
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} exists and is not a directory")
        if patterns is not None and not keep_others:
            foreign = sorted(p.name for p in directory.iterdir() if not _matches(p.name, patterns))
            if foreign:
                raise FileExistsError(
                    f"{directory} holds other files {foreign[:5]}; write into a new or empty directory (or one "
                    f"holding only {sorted(patterns)}), since it is replaced as a whole"
                )
    staging = _staging_dir(directory)
    try:
        write(staging)
        if keep_others and directory.is_dir():
            _carry_over(directory, staging, patterns or [])
        fsync_tree(staging)
        switch_dir(staging, directory)
    finally:
        # the failed attempt, or (after an exchange) the previous version
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def commit_dir(staging: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Switch a folder that other code filled (``staging``, a sibling of ``directory``, e.g. where several processes
    wrote a checkpoint) into place as `write_dir_atomically` does: flushed, then one atomic switch; the previous
    version is deleted afterwards.

    Returns:
        `Path`: ``directory``.
    """
    staging, directory = Path(staging), Path(directory)
    if staging.parent.resolve() != directory.parent.resolve():
        raise ValueError(f"{staging} must be a sibling of {directory} (the switch is a rename)")
    try:
        fsync_tree(staging)
        switch_dir(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def remove_dir_atomically(directory: str | os.PathLike) -> None:
    """Delete a folder so that no half-deleted version is ever seen under its name: rename it aside first (a dead
    process's leftover is cleaned by `recover_leftovers`), then delete."""
    directory = Path(directory)
    if not directory.exists():
        return
    aside = leftover_name(directory, "del")
    os.rename(directory, aside)
    crash_point(f"remove {directory.name}: set aside")
    shutil.rmtree(aside, ignore_errors=True)


def _carry_over(old: Path, staging: Path, replaceable: list[str]) -> None:
    """Link the entries of ``old`` that are not the writer's (not matching ``replaceable``, not rewritten) into
    ``staging``."""
    for entry in sorted(old.iterdir()):
        target = staging / entry.name
        if os.path.lexists(target) or _matches(entry.name, replaceable):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=link_or_copy)
        else:
            link_or_copy(str(entry), str(target))


def write_files_atomically(directory: str | os.PathLike, write: Callable[[Path], None]) -> list[Path]:
    """Write files into ``directory`` as one atomic step, keeping the files ``write`` does not produce: the
    `write_dir_atomically` switch of a new version holding what ``write(staging_dir)`` wrote plus links to the
    other files already there.

    Example:

    ```python
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "model"
    >>> _ = write_files_atomically(folder, lambda d: (d / "a.txt").write_text("1"))
    >>> [p.name for p in write_files_atomically(folder, lambda d: (d / "b.txt").write_text("2"))]
    ['b.txt']
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']

    ```

    Returns:
        `list[Path]`: the paths written in ``directory``, by name.
    """
    names: list[str] = []

    def record(staging: Path) -> None:
        write(staging)
        names.extend(sorted(item.name for item in staging.iterdir()))

    write_dir_atomically(directory, record, replaceable=(), keep_others=True)
    return [Path(directory) / name for name in names]


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


@dataclass(frozen=True)
class ArtifactFormat:
    """One kind of small artifact: a folder holding a JSON config and a safetensors weights file (plus
    ``extra_files`` such as a card), which the config describes (``shapes``, ``weights_sha256``).

    Args:
        kind (`str`): what the artifact is called in errors ("path", "bond", ...).
        config_file (`str`), weights_file (`str`): the two file names.
        format (`str`): the value of the config's ``"format"`` key.
        version (`int`): the newest format version this library reads.
        required_keys (`tuple[str, ...]`): config keys besides ``shapes`` and ``weights_sha256`` a reader needs.
        extra_files (`tuple[str, ...]`): other files the folder may hold (downloaded and replaced with it).

    Example:

    ```python
    >>> import tempfile, torch
    >>> toy = ArtifactFormat("toy", "toy_config.json", "toy.safetensors", "codebind-toy", 1)
    >>> state = {"w": torch.ones(2, 3)}
    >>> config = {"format": "codebind-toy", "version": 1, "shapes": {"w": [2, 3]}}
    >>> folder = toy.save(tempfile.mkdtemp() + "/toy", state, config)
    >>> config, loaded = toy.read(folder)
    >>> sorted(config), torch.equal(loaded["w"], state["w"])
    (['format', 'shapes', 'version', 'weights_sha256'], True)

    ```
    """

    kind: str
    config_file: str
    weights_file: str
    format: str
    version: int
    required_keys: tuple[str, ...] = ()
    extra_files: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return (self.config_file, self.weights_file, *self.extra_files)

    def save(self, directory: str | os.PathLike, state: dict, config: dict,
             write_extra: Callable[[Path], None] | None = None) -> Path:
        """Write ``state`` and ``config`` to ``directory`` through `write_dir_atomically`; ``config`` gets the
        weights' ``weights_sha256`` (in place) before it is written, then ``write_extra(staging_dir)`` runs.

        Returns:
            `Path`: ``directory``.
        """

        check_finite_tensors(state, f"the {self.kind}'s weights")  # a NaN saved is a NaN loaded, silently

        def write(staging: Path) -> None:
            # One metadata key: safetensors writes a multi-key map in random order, and equal artifacts should be
            # byte-identical (the Hub then skips unchanged files).
            save_file(state, staging / self.weights_file, metadata={"format": "pt"})
            config["weights_sha256"] = file_sha256(staging / self.weights_file)
            (staging / self.config_file).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            if write_extra is not None:
                write_extra(staging)

        return write_dir_atomically(directory, write, replaceable=self.files)

    def local_dir(self, repo_id_or_dir: str | os.PathLike, revision: str | None = None, token=None) -> Path:
        """``repo_id_or_dir`` if it is a folder, else the snapshot of the Hub repo of that id (this format's files)."""
        directory = Path(repo_id_or_dir)
        recover_leftovers(directory)  # a save interrupted between its renames leaves the old version aside
        if not directory.is_dir():
            if directory.exists():
                raise NotADirectoryError(f"{directory} is a file; pass the folder holding {self.config_file}")
            directory = download_snapshot(str(repo_id_or_dir), list(self.files), revision=revision, token=token)
        return directory

    def read(self, directory: str | os.PathLike) -> tuple[dict, dict]:
        """Read and check a folder of this format on its own: format and version, required keys, checksum, readable
        safetensors, shapes as recorded. Every refusal names the file and what was expected.

        Returns:
            `tuple[dict, dict[str, torch.Tensor]]`: the config and the tensors.
        """
        directory = Path(directory)
        recover_leftovers(directory)
        config_file, weights_file = directory / self.config_file, directory / self.weights_file
        for file in (config_file, weights_file):
            if not file.is_file():
                raise FileNotFoundError(f"{file} not found: {directory} is not a CodeBind {self.kind} artifact")
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{config_file} is not valid JSON: {err}") from err
        if not isinstance(config, dict) or config.get("format") != self.format:
            raise ValueError(f"{config_file} is not a CodeBind {self.kind} config (expected format {self.format!r})")
        if config.get("version", 0) > self.version:
            raise ValueError(
                f"{config_file} has {self.kind} format version {config['version']}; this codebind_hf reads up to "
                f"{self.version} (upgrade codebind_hf; the {self.kind} was written by {config.get('library_version')})"
            )
        missing = sorted({*self.required_keys, "shapes", "weights_sha256"} - set(config))
        if missing:
            raise ValueError(f"{config_file} lacks the keys {missing}")
        checksum = file_sha256(weights_file)
        if checksum != config["weights_sha256"]:
            raise ValueError(
                f"{weights_file} is corrupted or truncated: its sha256 is {checksum[:16]}…, "
                f"{self.config_file} records {config['weights_sha256'][:16]}…"
            )
        try:
            state = load_file(weights_file)
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{weights_file} is corrupted or truncated: {err}") from err
        check_finite_tensors(state, str(weights_file))
        recorded = {k: list(v) for k, v in config["shapes"].items()}
        found = {k: list(v.shape) for k, v in state.items()}
        if recorded != found:
            diff = sorted(k for k in set(recorded) | set(found) if recorded.get(k) != found.get(k))
            raise ValueError(
                f"{weights_file} does not match the shapes in {self.config_file}: "
                + ", ".join(f"{k}: config {recorded.get(k)} vs file {found.get(k)}" for k in diff[:10])
            )
        return config, state


def push_folder(write: Callable[[Path], str | os.PathLike], repo_id: str, *, token: str | bool | None = None,
                private: bool | None = None, **upload_kwargs):
    """Upload what ``write(tmp_dir)`` writes (it returns the folder to upload) to ``repo_id`` as one commit, creating
    the repo (``private`` or not) if needed. Unchanged files are not re-uploaded and an unchanged folder makes no
    commit. ``upload_kwargs`` (``commit_message``, ``commit_description``, ``revision``, ``create_pr``) go to
    `huggingface_hub.HfApi.upload_folder`.

    Returns:
        `huggingface_hub.CommitInfo`. Errors never carry the token.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with token_kept_out_of_errors(token), tempfile.TemporaryDirectory() as tmp:
        folder = write(Path(tmp))
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        return api.upload_folder(repo_id=repo_id, folder_path=folder, **upload_kwargs)


__all__ = [
    "file_sha256",
    "crash_point",
    "recover_leftovers",
    "write_file_atomically",
    "write_json_atomically",
    "write_dir_atomically",
    "write_files_atomically",
    "commit_dir",
    "remove_dir_atomically",
    "ArtifactFormat",
    "push_folder",
    "token_kept_out_of_errors",
    "resolve_hub_revision",
    "download_snapshot",
]
