"""The low-level half of `codebind_hf.adapters.io`'s atomic writes: switching a folder for its new version in one
step, naming and healing what an interrupted write leaves behind, and the crash points fault-injection tests use.

A new version of a folder is written beside it (``.<name>.tmp-<host>-<pid>-<random>``), flushed to disk, then
switched with the old one by one ``renameat2(RENAME_EXCHANGE)`` (Linux; ``renamex_np(RENAME_SWAP)`` on macOS): at
every instant the folder's name points at a complete version, the old or the new. Where the file system cannot
exchange, the old folder is first renamed aside (``.<name>.old-...``) and the new one renamed in; a crash between
the two renames leaves no folder, and `recover_leftovers` (run by every atomic write and by the loaders) puts the
old version back. Leftovers of dead writers are removed; those of a live process (same host, pid alive) are left
alone, since that writer is still at work.

Code outside this module uses it through `codebind_hf.adapters.io`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_LEFTOVER = re.compile(r"^(tmp|old|del)-([0-9a-f]{4})-(\d+)-[0-9a-f]+$")
_crash_hook: Callable[[str], None] | None = None


# ---------------------------------------------------------------------------------------------- crash points
def crash_point(name: str) -> None:
    """A point of a writer where a crash must leave either the old or the new artifact. Does nothing unless a test
    installed a hook with `set_crash_hook` (fault-injection tests SIGKILL the process here)."""
    if _crash_hook is not None:
        _crash_hook(name)


def set_crash_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or, with None, remove) the function every `crash_point` calls with its name. For tests only."""
    global _crash_hook
    _crash_hook = hook


# ---------------------------------------------------------------------------------------------- names
def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]


def leftover_name(target: Path, kind: str) -> Path:
    """A fresh sibling of ``target`` for a writer's temporary (``kind="tmp"``), set-aside (``"old"``) or doomed
    (``"del"``) version; the name carries the writer's host and pid so that a later run can tell a dead writer's leftover from a live one."""
    return target.with_name(f".{target.name}.{kind}-{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _owner_alive(host: str, pid: int) -> bool:
    if host != _host_tag():
        return True  # another machine's writer (shared file system): cannot tell, so leave it
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_leftovers(target: str | os.PathLike, quiet: bool = False) -> list[str]:
    """Heal what interrupted atomic writes of ``target`` (a file or folder) left beside it.

    A set-aside previous version (``.<name>.old-*``) is moved back when ``target`` is missing (a crash between the
    two renames of the portable fallback); every other leftover of a dead writer (``.<name>.tmp-*``, a folder being
    deleted ``.<name>.del-*``, stale ``.old-*``) is removed. Problems (no write permission, say) are reported, not raised.

    Returns:
        `list[str]`: what was done, one sentence each (also logged as warnings unless ``quiet``).
    """
    target = Path(target)
    parent, prefix = target.parent, f".{target.name}."
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return []
    dead = []
    for entry in entries:
        match = _LEFTOVER.match(entry.name[len(prefix):])
        if match and not _owner_alive(match.group(2), int(match.group(3))):
            dead.append((match.group(1), Path(entry.path)))
    done = []
    olds = sorted((p for kind, p in dead if kind == "old"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    if olds and not os.path.lexists(target):
        try:
            os.rename(olds[0], target)
            done.append(f"restored {target} from {olds[0].name}, the previous version set aside by an interrupted save")
        except OSError as err:
            done.append(f"could not restore {target} from {olds[0]}: {err}")
    for kind, path in dead:
        if not os.path.lexists(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            done.append(f"removed {path.name}, left beside {target} by an interrupted write")
        except OSError as err:
            done.append(f"could not remove {path} (left by an interrupted write): {err}")
    if not quiet:
        for message in done:
            logger.warning(message)
    return done


# ---------------------------------------------------------------------------------------------- switching
@functools.lru_cache(maxsize=1)
def _swap_call():
    """``(function, flag)`` of the platform's atomic swap of two paths, or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        func = libc.renameat2
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        at_fdcwd, rename_exchange = -100, 2
        return lambda a, b: func(at_fdcwd, a, at_fdcwd, b, rename_exchange)
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        func = libc.renamex_np
        func.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        rename_swap = 2
        return lambda a, b: func(a, b, rename_swap)
    return None


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step; False where the platform or file system cannot (the caller
    then falls back to two renames)."""
    call = _swap_call()
    if call is None:
        return False
    if call(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (then the folders) to disk, so that the switch that follows never exposes
    files whose bytes a power cut would lose. Each file is a crash point."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            crash_point(f"wrote {os.path.relpath(path, folder)}")
    for root, _, _ in os.walk(folder):
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system can fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def switch_dir(staging: Path, directory: Path) -> None:
    """Put the complete folder ``staging`` in the place of ``directory`` atomically. Afterwards ``staging`` holds
    the previous version (or is gone), for the caller to delete."""
    crash_point("switch: before")
    if not os.path.lexists(directory):
        os.rename(staging, directory)
    elif exchange_paths(staging, directory):
        crash_point("switch: exchanged")
    else:
        aside = leftover_name(directory, "old")
        os.rename(directory, aside)
        crash_point("switch: previous version set aside")
        os.rename(staging, directory)
        crash_point("switch: new version in place")
        shutil.rmtree(aside, ignore_errors=True)
    fsync_dir(directory.parent)
    crash_point("switch: done")


def link_or_copy(source: str, destination: str) -> None:
    """A hard link (no bytes copied, same file system), or a copy where links are not possible."""
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


__all__ = ["crash_point", "set_crash_hook", "leftover_name", "recover_leftovers", "exchange_paths", "fsync_tree",
           "fsync_dir", "switch_dir", "link_or_copy"]
