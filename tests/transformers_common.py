"""transformers' own common test classes (ModelTesterMixin, ConfigTester, ProcessorTesterMixin), for our tests.

transformers' wheel ships no tests; its source distribution on PyPI does. `common_tests()` fetches the sdist of the
*installed* release with pip (once), extracts the three common files into a cache folder as the package
``transformers_common_tests`` and adds the folder to ``sys.path``. The few modules those files import from the
rest of transformers' repository (not in the sdist) are written as stubs, each saying why it cannot apply.

Cache: ``$CODEBIND_TRANSFORMERS_TESTS_CACHE`` or ``~/.cache/codebind_hf/transformers-tests``. Run this file as a
script to fill the cache ahead of an offline run: ``python tests/transformers_common.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_processing_common.py")

# Modules the common files import from transformers' repository outside the sdist, as stub sources.
STUBS = {
    "exporters/test_export.py": (
        "# Stub: tests/exporters/ is not in the sdist. Our export coverage is tests/test_export.py (torch.export of\n"
        "# get_features with a dynamic batch, torch.compile parity).\n"
        "class ExportTesterMixin:\n    pass\n"
    ),
    "generation/test_utils.py": (
        "# Stub: tests/generation/ is not in the sdist, and CodeBind does not generate (no `generate`), so the\n"
        "# generation tests cannot apply; ModelTesterMixin only checks that the mixin is not inherited.\n"
        "class GenerationTesterMixin:\n    pass\n"
    ),
    "utils/test_configuration_utils.py": (
        "# Stub: tests/utils/ is not in the sdist. ConfigTester reads `config_common_kwargs` only for configs without\n"
        "# sub-configs (check_config_arguments_init returns first otherwise); CodeBindConfig has one (the decoder).\n"
        "config_common_kwargs = {}\n"
    ),
}
# A top-level module of transformers' utils/ folder (not in the sdist), imported by the processing tests.
HUB_STUB = (
    "# Stub: utils/fetch_hub_objects_for_ci.py is not in the sdist; CI uses it to map test media URLs to a local\n"
    "# cache. Without it the URL is returned as is; our processor tests give local inputs.\n"
    "def url_to_local_path(url, return_url_if_not_found=True):\n    return url\n"
)


def cache_dir() -> Path:
    root = os.environ.get("CODEBIND_TRANSFORMERS_TESTS_CACHE") or Path.home() / ".cache" / "codebind_hf" / "transformers-tests"
    return Path(root) / transformers.__version__


def _download_sdist(version: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-binary", ":all:",
               "--no-deps", "-q", "-d", str(into)]
    # pip prepares the sdist's metadata; the installed build tools do (fast), else an isolated build env does.
    for extra in (["--no-build-isolation"], []):
        result = subprocess.run(command + extra, capture_output=True, text=True, timeout=600)
        archives = sorted(into.glob(f"transformers-{version}.tar.gz"))
        if result.returncode == 0 and archives:
            return archives[0]
    raise RuntimeError(f"pip download transformers=={version} failed: {(result.stderr or result.stdout).strip()[-500:]}")


def _extract(archive: Path, version: str, package: Path) -> None:
    package.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for name in COMMON_FILES:
            member = tar.getmember(f"transformers-{version}/tests/{name}")
            (package / name).write_bytes(tar.extractfile(member).read())
    (package / "__init__.py").write_text(f"# transformers {version} common tests, from its PyPI sdist.\n")
    for relative, source in STUBS.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    (package.parent / "fetch_hub_objects_for_ci.py").write_text(HUB_STUB)


def ensure_cached() -> Path:
    """The folder holding ``transformers_common_tests`` for the installed release, fetched on first use.

    Raises:
        RuntimeError: when the sdist cannot be downloaded (no network, PyPI unreachable).
    """
    folder = cache_dir()
    if (folder / PACKAGE / "__init__.py").is_file():
        return folder
    version = transformers.__version__
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=folder.parent))
    try:
        archive = _download_sdist(version, staging / "download")
        _extract(archive, version, staging / "tree" / PACKAGE)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging / "tree", folder)  # whole or not at all: a concurrent run sees no half-written cache
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def common_tests():
    """Import path set up for ``transformers_common_tests``; skips the calling test module when it cannot be fetched."""
    import pytest

    try:
        folder = ensure_cached()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"transformers {transformers.__version__} common tests unavailable (PyPI unreachable?): {error}",
                    allow_module_level=True)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


if __name__ == "__main__":
    print(ensure_cached())
