"""The fenced code blocks of the documentation, and how the doc tests (test_docs.py) run them.

Which blocks run:

- ```` ```python ```` blocks: a ``>>>`` block is a doctest (outputs, where shown, are compared); any other is run as a
  script. Each block gets fresh globals, so it must define what it uses.
- ```` ```bash ```` blocks: every command (``\\`` continues a line, ``#`` starts a comment). Console scripts and
  ``python -m`` / ``python script.py`` run in this process through the same entry points; anything else
  (``accelerate launch``, ``cp "$(...)"``) runs in ``bash``.
- ```` ```yaml NAME ```` / ```` ```json NAME ````: a named file, written before the document's blocks run (a later
  block uses it, e.g. ``codebind-train --config NAME``).
- Unlabelled blocks (trees, tables, formulas) show output; they do not run.

A block that cannot run as written carries, on the first line after it, a visible note with the reason and the tiny
stand-in that runs instead::

    > Doc tests run a stand-in (needs a GPU): `python -m codebind_hf.training.train_path --config sun_d ...`

The reason must start with one of `REASONS`. The stand-in is either the block with a few changes, written as
"`NEW` for `OLD`" pairs (``rows = 16`` for ``rows = 1000``), or backticked commands (or Python statements, for a
python block) run instead of it.
"""

from __future__ import annotations

import doctest
import logging
import os
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from user_world import ROOT, SCRIPTS

DOCUMENTS = ("README.md", "docs/*.md", "training/README.md")
RUNNABLE = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}
FILES = ("yaml", "yml", "json")
REASONS = ("needs a GPU", "needs several GPUs", "needs real weights", "installs packages", "runs for hours",
           "runs for minutes", "starts several processes")
_FENCE = re.compile(r"^(?P<fence>```+)(?P<info>.*)$")
_STAND_IN = re.compile(r"^> Doc tests run a stand-in \((?P<reason>[^)]+)\): (?P<code>.*`.+)$")
# Names the documents use that a user replaces by theirs; the doc tests map them into the world's folder.
SUBSTITUTIONS = {"/data/benchmarks": "benchmarks"}


@dataclass
class Block:
    """One fenced block: where it is, its language, its text, and its stand-in if it cannot run as written."""

    doc: str
    line: int
    lang: str
    name: str | None
    code: str
    reason: str | None = None
    stand_in: list[str] = field(default_factory=list)  # commands / statements run instead of the block
    replacements: list[tuple[str, str]] = field(default_factory=list)  # (old, new): the block with these changes

    def code_to_run(self) -> str:
        """The block itself, the block with the note's replacements, or the note's commands."""
        if self.replacements:
            code = self.code
            for old, new in self.replacements:
                if old not in code:
                    raise ValueError(f"{self.id}: the stand-in replaces {old!r}, which the block does not contain")
                code = code.replace(old, new)
            return code
        return "\n".join(self.stand_in) + "\n" if self.stand_in else self.code

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str | None:
        """``python`` / ``shell`` (run), ``file`` (written), or None (shown only)."""
        if self.lang in FILES and self.name:
            return "file"
        return RUNNABLE.get(self.lang)


def documents() -> list[Path]:
    found = []
    for pattern in DOCUMENTS:
        found += sorted(ROOT.glob(pattern))
    return found


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, with the stand-in note that follows it (if any)."""
    lines = path.read_text().splitlines()
    doc = path.relative_to(ROOT).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        info = match["info"].split()
        start, fence = i, match["fence"]
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            i += 1
        if i == len(lines):
            raise ValueError(f"{doc}:{start + 1}: a code fence is never closed")
        block = Block(doc, start + 1, info[0].lower() if info else "", info[1] if len(info) > 1 else None,
                      "\n".join(lines[start + 1 : i]) + "\n")
        i += 1
        after = next((line for line in lines[i:i + 2] if line.strip()), "")
        note = _STAND_IN.match(after)
        if note:
            block.reason = note["reason"]
            pairs = re.findall(r"`([^`]+)` for `([^`]+)`", note["code"])
            if pairs:
                block.replacements = [(old, new) for new, old in pairs]
            else:
                block.stand_in = re.findall(r"`([^`]+)`", note["code"])
        blocks.append(block)
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in read_blocks(path)]


# ---------------------------------------------------------------------------------------------- shell commands
def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(line.strip())
    return commands


def substitute(text: str) -> str:
    for name, ours in SUBSTITUTIONS.items():
        text = text.replace(name, ours)
    return text


class ConsoleState:
    """What a console script's ``main()`` may set for its process (logging, warning filters, argv, threads), put
    back after it ran in this one."""

    def __enter__(self):
        import torch

        root = logging.getLogger()
        self.root = (root.level, list(root.handlers))
        self.levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
                       if isinstance(logger, logging.Logger)}
        self.filters, self.argv, self.threads = list(warnings.filters), list(sys.argv), torch.get_num_threads()
        return self

    def __exit__(self, *exc):
        import torch

        root = logging.getLogger()
        for handler in root.handlers[:]:
            if handler not in self.root[1]:
                root.removeHandler(handler)
        root.setLevel(self.root[0])
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(self.levels.get(name, logging.NOTSET))
        warnings.filters[:] = self.filters
        sys.argv[:] = self.argv
        torch.set_num_threads(self.threads)
        return False


def _exit_code(call) -> int:
    try:
        code = call()
    except SystemExit as stop:
        code = stop.code
    return 0 if code is None else code if isinstance(code, int) else 1


def run_command(command: str, cwd: Path, env: dict) -> None:
    """Run one shell command as a user would, in-process where it is one of ours (see the module docstring)."""
    words = shlex.split(command, comments=True)
    assignments = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        assignments[key] = value
    program, args = words[0], words[1:]
    in_process = None
    if program in SCRIPTS:
        module, _, function = SCRIPTS[program].partition(":")
        in_process = lambda: getattr(import_module(module), function)(args)  # noqa: E731
    elif program in ("python", "python3") and args[:1] == ["-m"] and args[1].startswith("codebind_hf"):
        # Our modules run as `python -m` exactly as their `if __name__ == "__main__"` does: main(argv).
        in_process = lambda: import_module(args[1]).main(args[2:])  # noqa: E731
    elif program in ("python", "python3") and args[:1] == ["-c"]:
        in_process = lambda: exec(compile(args[1], "<python -c>", "exec"), {"__name__": "__main__"})  # noqa: E731, S102
    elif program in ("python", "python3") and args and args[0].endswith(".py"):
        in_process = lambda: (sys.argv.__setitem__(slice(None), list(args)),  # noqa: E731
                              runpy.run_path(str(cwd / args[0]), run_name="__main__"))
    if in_process is None:
        shell_env = {**env, **assignments, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])}
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=shell_env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode:
            raise AssertionError(f"`{command}` exited with {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return
    saved = {k: os.environ.get(k) for k in assignments}
    os.environ.update(assignments)
    try:
        with ConsoleState():
            code = _exit_code(in_process)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code != 0:
        raise AssertionError(f"`{command}` exited with {code}")


# ---------------------------------------------------------------------------------------------- python blocks
def run_python(code: str, name: str) -> None:
    """A ``>>>`` block as a doctest (shown outputs compared), any other block as a script; fresh globals."""
    namespace = {"__name__": "__doc_block__"}
    if ">>>" not in code:
        exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the documentation's own code
        return
    test = doctest.DocTestParser().get_doctest(code, namespace, name, name, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(test, out=report.append)
    if runner.failures:
        raise AssertionError("".join(report))


__all__ = ["Block", "ConsoleState", "all_blocks", "read_blocks", "documents", "shell_commands", "run_command", "run_python",
           "substitute", "REASONS", "SUBSTITUTIONS"]
