"""Nothing lost: every writer, SIGKILLed at each of its crash points, leaves the old artifact or the new one —
never neither, never a mix — and the next save or load heals what the kill left behind."""

import json
import shutil

import pytest
import torch

from codebind_hf import CodeBindModel
from codebind_hf.adapters import atomic_switch
from codebind_hf.adapters.atomic_switch import recover_leftovers
from codebind_hf.adapters.io import ArtifactFormat, write_dir_atomically, write_files_atomically
from codebind_hf.adapters.paths import read_path_artifact
from codebind_hf.index.core import CodeBindIndex
from fault_injection import crash_points, leftovers, run_in_child, run_killed_at
from tiny_models import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def without_exchange(write):
    """``write`` on a platform without an atomic exchange: the two-rename fallback."""

    def run():
        atomic_switch.exchange_paths = lambda a, b: False  # in the forked child only
        write()

    return run


def kill_everywhere(tmp_path, reset, write, check) -> list[str]:
    """Kill ``write`` at each crash point after ``reset()``; ``check()`` says "old" or "new" (and fails otherwise).
    Returns the outcome per point."""
    reset()
    points = crash_points(write, tmp_path)
    assert any(p.startswith("wrote ") for p in points) and "switch: before" in points, points
    outcomes = []
    for n in range(1, len(points) + 1):
        reset()
        run_killed_at(write, n)
        outcome = check()
        assert outcome in ("old", "new"), f"killed at {points[n - 1]!r}: {outcome}"
        outcomes.append(outcome)
    assert outcomes[0] == "old" and outcomes[-1] == "new", list(zip(points, outcomes))
    # One switch: old up to its start, new from its end, and never back.
    first_new = outcomes.index("new")
    assert set(outcomes[first_new:]) == {"new"}, list(zip(points, outcomes))
    assert first_new > points.index("switch: before") and first_new <= points.index("switch: done")
    return outcomes


def assert_next_save_heals(tmp_path, reset, write, check, folder, n: int) -> None:
    reset()
    run_killed_at(write, n)
    run_in_child(write)  # a later process saves again
    assert check() == "new"
    assert leftovers(folder.parent) == []


# ---------------------------------------------------------------------------------------------- full model
@pytest.fixture(scope="module")
def two_models():
    torch.manual_seed(0)
    old = CodeBindModel(tiny_config(decoder=False, initializer_range=0.02)).eval()
    new = CodeBindModel(tiny_config(decoder=False, initializer_range=0.03)).eval()
    return old, new


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_save_pretrained_killed_anywhere_loads_old_or_new(two_models, tmp_path, exchange):
    old, new = two_models
    key = "shared_heads.depth.proj.weight"
    old_w, new_w = old.state_dict()[key], new.state_dict()[key]
    assert not torch.equal(old_w, new_w)
    pristine, folder = tmp_path / "pristine", tmp_path / "work" / "model"
    old.save_pretrained(pristine, max_shard_size="100KB")  # sharded: its index must not survive the new save
    (pristine / "preprocessor_config.json").write_text("{}")  # someone else's file: kept
    assert (pristine / "model.safetensors.index.json").is_file()

    def reset():
        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.parent.mkdir()
        shutil.copytree(pristine, folder)

    write = (lambda: new.save_pretrained(folder)) if exchange else without_exchange(lambda: new.save_pretrained(folder))

    def check():
        loaded = CodeBindModel.from_pretrained(folder)
        weights = "old" if torch.equal(loaded.state_dict()[key], old_w) else "new" if torch.equal(loaded.state_dict()[key], new_w) else "?"
        config = {0.02: "old", 0.03: "new"}.get(loaded.config.initializer_range, "?")
        assert weights == config, f"a mix: weights {weights}, config {config}"
        files = {p.name for p in folder.iterdir()}
        assert "preprocessor_config.json" in files
        assert ("model.safetensors.index.json" in files) == (weights == "old")  # no stale index
        return weights

    kill_everywhere(tmp_path, reset, write, check)
    assert_next_save_heals(tmp_path, reset, write, check, folder, n=2)


# ---------------------------------------------------------------------------------------------- small artifacts
def test_save_path_killed_anywhere_reads_old_or_new(tmp_path):
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False)).eval()
    key = "specific_heads.depth.depth.proj.weight"
    pristine, folder = tmp_path / "pristine", tmp_path / "work" / "path"
    model.save_path("depth", pristine)
    old_w = model.state_dict()[key].clone()
    with torch.no_grad():
        model.specific_heads["depth"]["depth"].proj.weight.add_(1.0)
    new_w = model.state_dict()[key].clone()

    def reset():
        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.parent.mkdir()
        shutil.copytree(pristine, folder)

    def check():
        _, state = read_path_artifact(folder)
        return "old" if torch.equal(state[key], old_w) else "new" if torch.equal(state[key], new_w) else "?"

    write = without_exchange(lambda: model.save_path("depth", folder))
    kill_everywhere(tmp_path, reset, write, check)
    assert_next_save_heals(tmp_path, reset, lambda: model.save_path("depth", folder), check, folder, n=1)


@pytest.mark.parametrize("kind", ["bond", "projector"])
def test_bond_and_projector_formats_killed_anywhere(tmp_path, kind):
    from codebind_hf.adapters.bond_io import BOND_ARTIFACT
    from codebind_hf.training.projector import PROJECTOR_ARTIFACT

    fmt: ArtifactFormat = {"bond": BOND_ARTIFACT, "projector": PROJECTOR_ARTIFACT}[kind]
    folder = tmp_path / "work" / kind

    def config(state):
        return {"format": fmt.format, "version": fmt.version, "shapes": {k: list(v.shape) for k, v in state.items()},
                **{k: None for k in fmt.required_keys}}

    old, new = {"w": torch.zeros(3, 2)}, {"w": torch.ones(3, 2)}

    def reset():
        shutil.rmtree(folder.parent, ignore_errors=True)
        fmt.save(folder, old, config(old))

    def check():
        _, state = fmt.read(folder)
        return "old" if torch.equal(state["w"], old["w"]) else "new" if torch.equal(state["w"], new["w"]) else "?"

    kill_everywhere(tmp_path, reset, lambda: fmt.save(folder, new, config(new)), check)


# ---------------------------------------------------------------------------------------------- index
def test_index_save_killed_anywhere_loads_old_or_new(tmp_path):
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False)).eval()
    depth = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    old = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    old.add_inputs(model, "depth", depth[:3], ids=["a", "b", "c"])
    new = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    new.add_inputs(model, "depth", depth, ids=list("abcde"))
    pristine, folder = tmp_path / "pristine", tmp_path / "work" / "index"
    old.save(pristine)

    def reset():
        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.parent.mkdir()
        shutil.copytree(pristine, folder)

    def check():
        loaded = CodeBindIndex.load(folder, backend="torch")
        for name, reference in (("old", old), ("new", new)):
            if loaded.ids == reference.ids:
                assert torch.equal(loaded.codes, reference.codes), f"{name} ids with other codes: a mix"
                return name
        return f"? ids {loaded.ids}"

    kill_everywhere(tmp_path, reset, without_exchange(lambda: new.save(folder)), check)


# ---------------------------------------------------------------------------------------------- generic helpers
def test_write_files_atomically_switches_all_files_together_and_keeps_others(tmp_path):
    folder = tmp_path / "work" / "processor"

    def reset():
        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in ("a.json", "b.json"):
            (folder / name).write_text('"old"')
        (folder / "mine.txt").write_text("kept")

    def write():
        write_files_atomically(folder, lambda d: [(d / n).write_text('"new"') for n in ("a.json", "b.json")])

    def check():
        assert (folder / "mine.txt").read_text() == "kept"
        values = {json.loads((folder / n).read_text()) for n in ("a.json", "b.json")}
        assert len(values) == 1, f"a mix: {values}"
        return values.pop()

    kill_everywhere(tmp_path, reset, write, check)


def test_a_killed_first_save_leaves_nothing_that_loads_and_is_cleaned(tmp_path):
    folder = tmp_path / "new"

    def write():
        write_dir_atomically(folder, lambda d: (d / "x.bin").write_bytes(b"1"), replaceable=["*.bin"])

    points = crash_points(write, tmp_path)
    shutil.rmtree(folder)
    run_killed_at(write, points.index("switch: before") + 1)
    assert not folder.exists() and len(leftovers(tmp_path)) == 1
    messages = recover_leftovers(folder, quiet=True)
    assert len(messages) == 1 and "removed" in messages[0] and leftovers(tmp_path) == []


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    folder = tmp_path / "model"
    staging = atomic_switch.leftover_name(folder, "tmp")  # named after this (live) process
    staging.mkdir()
    assert recover_leftovers(folder, quiet=True) == [] and staging.is_dir()


def test_the_platform_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "1").write_text("a"), (b / "2").write_text("b")
    if not atomic_switch.exchange_paths(a, b):
        pytest.skip("no atomic exchange on this platform/file system (the two-rename fallback is tested above)")
    assert [p.name for p in a.iterdir()] == ["2"] and [p.name for p in b.iterdir()] == ["1"]
