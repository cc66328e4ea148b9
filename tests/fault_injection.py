"""Kill a writer at each of its crash points: a forked child runs it with a hook (`set_crash_hook`) that SIGKILLs
it at the n-th `crash_point`, as a crashing machine would (no ``finally``, no cleanup).

Forking (not a fresh interpreter) keeps each kill in the tens of milliseconds: the child starts with everything
the test already imported and built.
"""

from __future__ import annotations

import os
import signal
import time
import traceback

import torch

from codebind_hf.adapters.atomic_switch import set_crash_hook


def _run_child(action, hook, log_path=None) -> int:
    """Fork, run ``action`` in the child with ``hook`` installed; the child's wait status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
            set_crash_hook(hook)
            action()
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError("the forked writer hung")
        time.sleep(0.005)


def crash_points(action, tmp_path) -> list[str]:
    """The names of the crash points ``action`` passes, in order (a dry run in a child)."""
    log = tmp_path / "crash-points.log"
    log.write_text("")

    def record(name: str) -> None:
        with open(log, "a") as handle:
            handle.write(name + "\n")

    status = _run_child(action, record)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the writer failed without a kill (status {status})"
    return log.read_text().splitlines()


def run_killed_at(action, n: int) -> None:
    """Run ``action`` in a child SIGKILLed at its ``n``-th crash point (1-based); asserts that it was killed."""
    seen = [0]

    def hook(name: str) -> None:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    status = _run_child(action, hook)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"not killed at point {n} (status {status})"


def run_in_child(action) -> None:
    """Run ``action`` in a forked child to completion (what a later, uninterrupted process does)."""
    status = _run_child(action, None)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child failed (status {status})"


def leftovers(folder) -> list[str]:
    """Hidden temporaries and set-aside versions in ``folder`` (what an interrupted write leaves)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name))
