"""No system changes without consent: codebind-demo installs espeak-ng only with --install-system-deps, and
otherwise stops with the exact commands."""

import subprocess

import pytest

from codebind_hf.demo import data as demo_data
from codebind_hf.demo import run as demo_run


@pytest.fixture
def no_espeak(monkeypatch):
    """A machine with apt-get, without espeak-ng, not root; records the commands run."""
    ran = []
    installed = []

    def which(name):
        if name == "espeak-ng":
            return "/usr/bin/espeak-ng" if installed else None
        return {"apt-get": "/usr/bin/apt-get"}.get(name)

    def run(command, **kwargs):
        ran.append(command)
        if "install" in command:
            installed.append(True)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(demo_data.shutil, "which", which)
    monkeypatch.setattr(demo_data.subprocess, "run", run)
    monkeypatch.setattr(demo_data.os, "geteuid", lambda: 1000, raising=False)
    return ran


def test_a_missing_espeak_stops_with_the_exact_commands_and_runs_nothing(no_espeak):
    with pytest.raises(RuntimeError) as error:
        demo_data.ensure_espeak()
    message = str(error.value)
    assert "sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng" in message
    assert "codebind-demo --install-system-deps" in message and "changes nothing" in message
    assert no_espeak == []


def test_install_system_deps_runs_the_install_then_the_demo(no_espeak, monkeypatch):
    called = []
    monkeypatch.setattr(demo_run, "run_demo", lambda *args, **kwargs: called.append(args))
    assert demo_run.main(["--quick", "--install-system-deps", "--no-progress"]) == 0
    assert no_espeak == [["sudo", "apt-get", "update", "-qq"], ["sudo", "apt-get", "install", "-y", "-qq", "espeak-ng"]]
    assert len(called) == 1


def test_without_the_flag_the_demo_never_installs(no_espeak, monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="--install-system-deps"):
        demo_run.main(["--quick", "--no-progress", "--cache-dir", str(tmp_path), "--output", str(tmp_path / "out")])
    assert no_espeak == []


def test_a_failed_install_names_the_command(no_espeak, monkeypatch):
    monkeypatch.setattr(demo_data.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 100, "", "E: Unable to lock"))
    with pytest.raises(RuntimeError, match=r"`sudo apt-get update -qq` failed \(exit 100\): E: Unable to lock"):
        demo_data.ensure_espeak(install=True)
