"""Nothing lost, for the writers of a run: checkpoints (with rotation), the feature cache and index builds, each
SIGKILLed at every crash point, leave something the next run can use — the old checkpoint or the new one, a cache
that is complete and right or is rebuilt, a build that resumes to the uninterrupted index."""

import shutil

import pytest
import torch

from codebind_hf.index.core import CodeBindIndex
from codebind_hf.training.checkpointing import (
    TRAINED_STATE,
    read_trainer_state,
    register_hooks,
    resolve_checkpoint,
    save_checkpoint,
)
from codebind_hf.adapters.integrity import load_checked_safetensors
from fault_injection import crash_points, leftovers, run_in_child, run_killed_at
from test_atomic_writes import kill_everywhere

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- checkpoints
def test_save_checkpoint_with_rotation_killed_anywhere_resumes_from_old_or_new(tmp_path):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    register_hooks(accelerator, lambda: model, "depth")
    pristine, run = tmp_path / "pristine", tmp_path / "run"
    with torch.no_grad():
        model.weight.zero_()
    save_checkpoint(accelerator, pristine, 2, {"global_step": 2}, limit=1)
    with torch.no_grad():
        model.weight.fill_(1.0)

    def reset():
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(pristine, run)

    def check():
        folder = resolve_checkpoint(run, "latest")
        weight = load_checked_safetensors(folder / TRAINED_STATE)["weight"]
        kind = {("checkpoint-2", 0.0): "old", ("checkpoint-4", 1.0): "new"}.get((folder.name, float(weight.mean())), "?")
        assert read_trainer_state(folder)["global_step"] == {"old": 2, "new": 4}.get(kind), (folder, kind)
        return kind

    write = lambda: save_checkpoint(accelerator, run, 4, {"global_step": 4}, limit=1)  # noqa: E731
    outcomes = kill_everywhere(tmp_path, reset, write, check)
    assert len(outcomes) >= 8  # every file of the checkpoint, the switch, the rotation
    reset()
    run_killed_at(write, 3)
    run_in_child(write)
    assert check() == "new" and [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-4"]
    assert leftovers(run / "checkpoints") == []


# ---------------------------------------------------------------------------------------------- feature cache
class _FakeFeatures:
    """What `FeatureCache._encode_rows` returns, without a model: row ``r`` gets ``value + r`` (the writer under test
    is the cache's file protocol, not the towers)."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, model, collator, items, device, accelerator, text_from_table):
        import numpy as np

        return {"__cb_ok": [True] * len(items),
                "__cb_vision": [np.full((1, 4), self.value + row, np.float32) for row, _ in items]}


def test_feature_cache_build_killed_anywhere_is_complete_and_right_or_rebuilt(tmp_path, monkeypatch):
    import datasets
    from accelerate import Accelerator

    from codebind_hf.training.feature_cache import FeatureCache

    accelerator = Accelerator(cpu=True)
    rows = datasets.Dataset.from_dict({"image": list(range(6))})
    cache = FeatureCache(tmp_path / "cache", {"what": "toy"}, ["vision"])

    def build(value):
        monkeypatch.setattr(FeatureCache, "_encode_rows", lambda self, *a: _FakeFeatures(value)(*a))
        cache.build(accelerator, None, rows, None, batch_size=4)

    def state():
        if not cache.complete:
            return "incomplete"
        table, _ = cache.load()
        values = [float(v[0][0]) for v in table["__cb_vision"]]
        assert values in ([10.0 + r for r in range(6)], [20.0 + r for r in range(6)]), f"a mix: {values}"
        return "old" if values[0] == 10.0 else "new"

    build(10.0)
    assert state() == "old"
    pristine = tmp_path / "pristine"
    shutil.copytree(cache.folder, pristine)
    points = crash_points(lambda: build(20.0), tmp_path)
    seen = []
    for n in range(1, len(points) + 1):
        shutil.rmtree(cache.folder)
        shutil.copytree(pristine, cache.folder)
        run_killed_at(lambda: build(20.0), n)
        seen.append(state())
    # A rebuild first withdraws the old info: from then on the cache is incomplete until the new one is whole.
    assert seen[-1] == "new" and "incomplete" in seen and set(seen) <= {"old", "incomplete", "new"}
    assert set(seen[seen.index("new"):]) == {"new"}
    # A bit flipped in a shard makes the cache incomplete (rebuilt, with a warning naming the file).
    shard = next(cache.folder.glob("shard-*.arrow"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    assert state() == "incomplete"


# ---------------------------------------------------------------------------------------------- index builds
def test_index_build_killed_anywhere_resumes_to_the_uninterrupted_index(tmp_path):
    import datasets

    from codebind_hf import CodeBindModel
    from tiny_models import tiny_config

    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False)).eval()
    depth = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    data = datasets.Dataset.from_dict({"depth": depth.tolist(), "name": [f"i{k}" for k in range(6)]})
    out = tmp_path / "build"

    def build():
        return CodeBindIndex.build_from_dataset(model, data, "depth", "depth", output_dir=out, id_column="name",
                                                batch_size=2, shard_size=3, progress=False, backend="torch")

    reference = CodeBindIndex.build_from_dataset(model, data, "depth", "depth", id_column="name", batch_size=2,
                                                 shard_size=3, progress=False, backend="torch")
    points = crash_points(build, tmp_path)
    assert sum(p.startswith("file shard-") for p in points) >= 4 and "switch: before" in points
    for n in range(1, len(points) + 1, 2):  # every other point keeps this test short; the rest are alike
        shutil.rmtree(out, ignore_errors=True)
        run_killed_at(build, n)
        resumed = build()
        assert resumed.ids == reference.ids and torch.equal(resumed.codes, reference.codes), points[n - 1]
        assert torch.equal(CodeBindIndex.load(out / "index").codes, reference.codes)
