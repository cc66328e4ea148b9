"""build_index_from_dataset over several processes: the same index as one process, shards split by rank, resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codebind_hf import CodeBindModel
from codebind_hf.index import build as index_build
from codebind_hf.index.core import CodeBindIndex, build_index_from_dataset
from tiny_models import save_depth_model_and_data

datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")
TESTS = Path(__file__).resolve().parent
ROWS = 37  # 5 shards of 8, the last one short
OPTIONS = {"id_column": "name", "metadata_columns": ["label"], "batch_size": 4, "shard_size": 8, "progress": False,
           "backend": "torch"}  # fmt: skip
INDEX_FILES = ("codes.safetensors", "index.json")

# The script each launched process runs: the same call as the single-process build.
LAUNCHED = """
import os
import sys
import datasets
import torch
from codebind_hf import CodeBindModel
from codebind_hf.index.core import build_index_from_dataset

torch.set_num_threads(1)
root, out = sys.argv[1], sys.argv[2]
model = CodeBindModel.from_pretrained(root + "/model")
data = datasets.load_from_disk(root + "/data")
index = build_index_from_dataset(model, data, "depth", "depth", out, **{options})
# One file per rank: the processes' stdout interleaves.
with open(out + "-rank" + os.environ["RANK"] + ".txt", "w") as report:
    report.write(f"built {len(index)} {index.ids[0]} {index.ids[-1]}")
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    save_depth_model_and_data(root, ROWS, labels=True)
    return root


def _inputs(workdir):
    return CodeBindModel.from_pretrained(workdir / "model"), datasets.load_from_disk(str(workdir / "data"))


class _AtBarrier(Exception):
    """A rank stopped at a barrier: the others' turn."""


class _FakeState:
    """One rank of a two-process run, driven in this process: ranks run one after the other, so a rank other than
    the main one stops at the barrier after its shards (where it would wait for the main one to assemble them)."""

    def __init__(self, rank: int):
        self.process_index, self.num_processes, self.is_main_process = rank, 2, rank == 0
        self.barriers = 0

    def wait_for_everyone(self):
        self.barriers += 1
        if self.barriers == 3 and not self.is_main_process:
            raise _AtBarrier


def _as_rank(monkeypatch, rank):
    monkeypatch.setattr(index_build, "_launched_processes", lambda: 2)
    monkeypatch.setattr(index_build, "process_state", lambda: _FakeState(rank))


def _run_rank_1(*args, **kwargs):
    with pytest.raises(_AtBarrier):
        build_index_from_dataset(*args, **kwargs)


def test_ranks_write_their_own_shards_and_the_main_one_assembles(workdir, tmp_path, monkeypatch, one_thread):
    model, data = _inputs(workdir)
    single = build_index_from_dataset(model, data, "depth", "depth", tmp_path / "one", **OPTIONS)
    out = tmp_path / "two"
    written = []
    original = index_build._write_shard
    monkeypatch.setattr(index_build, "_write_shard", lambda index, pending, stem: (written.append(stem.name),
                                                                                   original(index, pending, stem))[1])  # fmt: skip
    _as_rank(monkeypatch, 1)
    _run_rank_1(model, data, "depth", "depth", out, **OPTIONS)  # rank 1 first: it leaves shards 1 and 3
    assert written == ["shard-000000000008", "shard-000000000024"]
    written.clear()
    _as_rank(monkeypatch, 0)
    index = build_index_from_dataset(model, data, "depth", "depth", out, **OPTIONS)
    assert written == ["shard-000000000000", "shard-000000000016", "shard-000000000032"]
    assert index.ids == single.ids and index.metadata == single.metadata and torch.equal(index.codes, single.codes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows_done"] == ROWS and len(manifest["shards"]) == 5
    for name in INDEX_FILES:
        assert (out / "index" / name).read_bytes() == (tmp_path / "one" / "index" / name).read_bytes()


def test_a_killed_run_keeps_complete_shards_and_rewrites_half_written_ones(workdir, tmp_path, monkeypatch, one_thread):
    model, data = _inputs(workdir)
    out = tmp_path / "b"
    _as_rank(monkeypatch, 1)
    _run_rank_1(model, data, "depth", "depth", out, **OPTIONS)
    (out / "shards" / "shard-000000000024.json").unlink()  # killed between the codes and the ids of shard 3
    written = []
    original = index_build._write_shard
    monkeypatch.setattr(index_build, "_write_shard", lambda index, pending, stem: (written.append(stem.name),
                                                                                   original(index, pending, stem))[1])  # fmt: skip
    _run_rank_1(model, data, "depth", "depth", out, **OPTIONS)  # rank 1 again, as a rerun does
    assert written == ["shard-000000000024"]
    codes = out / "shards" / "shard-000000000008.safetensors"
    blob = bytearray(codes.read_bytes())
    blob[-1] ^= 0x01
    codes.write_bytes(bytes(blob))
    with pytest.raises(Exception, match="shard-000000000008"):  # a corrupt shard is named, not rewritten
        build_index_from_dataset(model, data, "depth", "depth", out, **OPTIONS)


def test_refusals_before_anything_is_written(workdir, tmp_path, monkeypatch):
    model, data = _inputs(workdir)
    _as_rank(monkeypatch, 0)
    with pytest.raises(ValueError, match="needs a map-style dataset .* and an output_dir"):
        build_index_from_dataset(model, data, "depth", "depth", None, **OPTIONS)
    with pytest.raises(ValueError, match="IterableDataset"):
        build_index_from_dataset(model, data.to_iterable_dataset(), "depth", "depth", tmp_path / "s", **OPTIONS)
    monkeypatch.undo()
    build_index_from_dataset(model, data, "depth", "depth", tmp_path / "done", **OPTIONS)
    _as_rank(monkeypatch, 1)  # a non-main rank refuses a finished build exactly as the main one does
    with pytest.raises(FileExistsError, match="resume=True"):
        build_index_from_dataset(model, data, "depth", "depth", tmp_path / "done", **{**OPTIONS, "resume": False})


def test_two_gloo_processes_build_the_same_index_as_one(workdir, tmp_path, one_thread):
    model, data = _inputs(workdir)
    build_index_from_dataset(model, data, "depth", "depth", tmp_path / "one", **OPTIONS)
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED.replace("{options}", repr(OPTIONS)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(29700 + os.getpid() % 1000), str(script), str(workdir),
               str(tmp_path / "two")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}  # fmt: skip
    # accelerate 1.x's --cpu runs a single process; --multi_gpu with ACCELERATE_USE_CPU gives gloo processes.
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):  # every process returns the whole index
        assert (tmp_path / f"two-rank{rank}.txt").read_text() == f"built {ROWS} item0 item{ROWS - 1}"
    for name in INDEX_FILES:
        assert (tmp_path / "two" / "index" / name).read_bytes() == (tmp_path / "one" / "index" / name).read_bytes()
    two = CodeBindIndex.load(tmp_path / "two" / "index", backend="torch")
    assert two.ids == [f"item{i}" for i in range(ROWS)]
