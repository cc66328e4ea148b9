"""A new user's working folder, shared by the story tests (test_user_stories.py) and the doc-block tests (test_docs.py).

The session fixture `user_world` builds it once: the tiny ImageBind fixture converted by the console script in a
fresh process (``./codebind-ib-base``, also pushed to the local Hub as ``your-org/codebind-ib-base``), sample files
named as the docs name them (``dog.jpg``, ``dog.wav``, ``thermal.png`` ...), generated training data
(``./sun-rgbd``) and benchmark data (``./benchmarks``). Every ``your-org/...`` id lives on the session's local
Hub-compatible server (tests/hub_server.py); nothing leaves 127.0.0.1.

Commands run as a user runs them: console scripts (or ``python -m`` when they are not installed) in a fresh process
whose environment points `huggingface_hub` at the local server, with the worktree's ``src`` first on the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
BASE_REPO = "your-org/codebind-ib-base"
TOKEN = "hf_userWorldToken0123456789"  # the local server only checks that writes carry one


def _console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: console script -> ``"module:function"`` (no tomllib on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {name.strip(): target.strip().strip('"') for name, target in pairs}


SCRIPTS = _console_scripts()
SUN_CLASSES = ["bedroom", "kitchen", "office", "bathroom"]


def depth_maps(count: int, seed: int = 3) -> np.ndarray:
    """Depth maps in metres, ``(count, 48, 64)``: what a user passes as ``depth=``."""
    return np.random.default_rng(seed).uniform(0.5, 4.0, (count, 48, 64)).astype(np.float32)


@dataclass
class UserWorld:
    """The folder, the Hub endpoint, and how to run commands there."""

    root: Path
    endpoint: str

    def env(self, hf_home: str | os.PathLike | None = None) -> dict:
        """A user's environment: this worktree's package first, `huggingface_hub` on the local server with a token,
        and (``hf_home``) a Hugging Face cache of their own, as a colleague on another machine has."""
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])]),
            HF_ENDPOINT=self.endpoint, HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN, HF_HUB_DISABLE_TELEMETRY="1",
            TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",  # tiny tensors, shared cores
        )
        if hf_home is not None:
            env["HF_HOME"] = str(hf_home)
        return env

    @staticmethod
    def command(name: str) -> list[str]:
        """The console script ``name`` of this interpreter's environment, else ``python -m`` its module."""
        script = Path(sys.executable).parent / name
        if script.is_file():
            return [str(script)]
        return [sys.executable, "-m", SCRIPTS[name].partition(":")[0]]

    def run(self, argv: list[str], hf_home=None, timeout: int = 600) -> subprocess.CompletedProcess:
        """Run ``argv`` (``argv[0]`` a console script name or ``python``) in the folder; fail the test on an error."""
        head = [sys.executable] if argv[0] == "python" else self.command(argv[0])
        done = subprocess.run([*head, *argv[1:]], cwd=self.root, env=self.env(hf_home), capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(argv)}` exited with {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done

    def run_python(self, code: str, name: str, hf_home=None) -> subprocess.CompletedProcess:
        """Write ``code`` to ``<root>/<name>.py`` and run it in a fresh interpreter."""
        script = self.root / f"{name}.py"
        script.write_text(code)
        return self.run(["python", script.name], hf_home=hf_home)


def _write_samples(root: Path) -> None:
    from PIL import Image

    samples = FIXTURES / "imagebind_preprocessing"
    for thing in ("dog", "car", "bird"):
        shutil.copy(samples / f"{thing}_image.jpg", root / f"{thing}.jpg")
        shutil.copy(samples / f"{thing}_audio.wav", root / f"{thing}.wav")
    rng = np.random.default_rng(5)
    for name in ("thermal.png", "thermal2.png"):
        Image.fromarray(rng.integers(0, 256, (60, 80), dtype=np.uint8)).save(root / name)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(root / "touch.png")
    shutil.copy(FIXTURES / "imagebind_tiny" / "imagebind_tiny.pth", root / "imagebind_tiny.pth")
    shutil.copy(FIXTURES / "imagebind_tiny" / "config.json", root / "imagebind_tiny.json")


def _write_sun_rgbd(root: Path, rows: int = 8) -> None:
    """A SUN RGB-D-shaped dataset (``save_to_disk``): depth in metres, an RGB image and a scene label per row."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(4)
    features = datasets.Features({"depth": datasets.Array2D((48, 64), "float32"), "image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=SUN_CLASSES)})
    columns = {
        "depth": list(depth_maps(rows, seed=4)),
        "image": [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(rows)],
        "label": [i % len(SUN_CLASSES) for i in range(rows)],
    }
    datasets.DatasetDict(train=datasets.Dataset.from_dict(columns, features=features)).save_to_disk(str(root / "sun-rgbd"))


@pytest.fixture(scope="session")
def user_world(hub_server, tmp_path_factory) -> UserWorld:
    """The user's folder (see the module docstring), built once per session."""
    from codebind_hf.evaluation.fixtures import write_fixtures

    world = UserWorld(tmp_path_factory.mktemp("user-world"), hub_server.endpoint)
    _write_samples(world.root)
    _write_sun_rgbd(world.root)
    write_fixtures(world.root / "benchmarks", ["nyu_d", "sun_d"], num_items=4)
    world.run(["codebind-convert-imagebind", "imagebind_tiny.pth", "./codebind-ib-base",
               "--imagebind-config", "imagebind_tiny.json", "--push-to-hub", BASE_REPO])
    return world


__all__ = ["UserWorld", "user_world", "depth_maps", "BASE_REPO", "SCRIPTS", "ROOT", "SUN_CLASSES"]
