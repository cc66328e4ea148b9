"""codebind-embed: the model's codes and embeddings, the same dataset and index from 1 and 2 processes, resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codebind_hf import CodeBindModel
from codebind_hf.cli import embed
from codebind_hf.index.core import CodeBindIndex
from tiny_models import save_depth_model_and_data

datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")
TESTS = Path(__file__).resolve().parent
ROWS = 37  # 5 shards of 8, the last one short


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    save_depth_model_and_data(root, ROWS)
    return root


def _embed(workdir, out, **kwargs):
    model = CodeBindModel.from_pretrained(workdir / "model")
    data = datasets.load_from_disk(str(workdir / "data"))
    options = {"id_column": "name", "batch_size": 4, "shard_size": 8, "progress": False, **kwargs}
    return embed.embed_dataset(model, data, "depth", "depth", out, model_name="tiny", **options)


def _columns(folder):
    data = datasets.load_from_disk(str(folder)).with_format("torch", columns=["codes", "embedding"])
    return datasets.load_from_disk(str(folder))["id"][:], data[:]["codes"], data[:]["embedding"]


def test_rows_hold_the_models_codes_and_embeddings(workdir, tmp_path, one_thread):
    _embed(workdir, tmp_path / "float", index="flat")
    ids, codes, embeddings = _columns(tmp_path / "float" / "dataset")
    model = CodeBindModel.from_pretrained(workdir / "model").eval()
    x = torch.tensor(datasets.load_from_disk(str(workdir / "data"))["depth"][:])
    with torch.no_grad():
        out = model(depth_values=x)
        floats = model.get_features("depth", x, quantize=False)
        quantized = model.get_features("depth", x)
    assert list(ids) == [f"item{i}" for i in range(ROWS)]
    assert datasets.load_from_disk(str(tmp_path / "float" / "dataset")).features["codes"].feature.dtype == "int16"
    assert torch.equal(codes.long(), out.codes["depth"])
    assert torch.allclose(embeddings, floats, atol=1e-6)
    index = CodeBindIndex.load(tmp_path / "float" / "index", backend="torch", codebook=model)
    assert index.ids == list(ids) and torch.equal(index.codes, out.codes["depth"])
    manifest = json.loads((tmp_path / "float" / embed.MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"] == ROWS and manifest["identity"]["shard_size"] == 8
    _embed(workdir, tmp_path / "quantized", quantized=True)
    assert torch.equal(_columns(tmp_path / "quantized" / "dataset")[2], quantized)  # bit-exact decode


def test_interrupted_job_resumes_shard_by_shard(workdir, tmp_path, monkeypatch, one_thread):
    original, calls = embed._embed_shard, []

    def failing(*args):
        if len(calls) == 2:
            raise RuntimeError("killed")
        calls.append(args[7])  # the shard's first row
        return original(*args)

    monkeypatch.setattr(embed, "_embed_shard", failing)
    with pytest.raises(RuntimeError, match="killed"):
        _embed(workdir, tmp_path / "job")
    assert sorted(p.name for p in (tmp_path / "job" / "shards").iterdir()) == ["shard-000000000000", "shard-000000000008"]
    assert not json.loads((tmp_path / "job" / embed.MANIFEST).read_text())["complete"]
    calls.clear()
    monkeypatch.setattr(embed, "_embed_shard", lambda *args: calls.append(args[7]) or original(*args))
    _embed(workdir, tmp_path / "job")
    assert calls == [16, 24, 32]  # only the shards not written before
    _embed(workdir, tmp_path / "fresh")
    for resumed, fresh in zip(_columns(tmp_path / "job" / "dataset"), _columns(tmp_path / "fresh" / "dataset")):
        assert resumed == fresh if isinstance(resumed, list) else torch.equal(resumed, fresh)
    with pytest.raises(ValueError, match="holds an embedding job for .* use another output_dir"):
        _embed(workdir, tmp_path / "job", shard_size=4)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}  # fmt: skip


def test_one_and_two_processes_write_the_same_dataset_and_index(workdir, tmp_path, one_thread):
    _embed(workdir, tmp_path / "one", index="ivf", ivf_lists=4)
    args = ["--model", str(workdir / "model"), "--dataset", str(workdir / "data"), "--column", "depth", "--modality",
            "depth", "--id_column", "name", "--batch_size", "4", "--shard_size", "8", "--index", "ivf", "--ivf_lists",
            "4", "--output_dir", str(tmp_path / "two")]  # fmt: skip
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(29600 + os.getpid() % 1000), "-m", "codebind_hf.cli.embed", *args]  # fmt: skip
    # accelerate 1.x's --cpu runs a single process; --multi_gpu with ACCELERATE_USE_CPU gives gloo processes.
    done = subprocess.run(command, env={**_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[process 0] shard-000000000000" in done.stdout and "[process 1] shard-000000000008" in done.stdout
    one, two = _columns(tmp_path / "one" / "dataset"), _columns(tmp_path / "two" / "dataset")
    assert one[0] == two[0] and torch.equal(one[1], two[1]) and torch.equal(one[2], two[2])
    for name in ("codes.safetensors", "centroids.safetensors", "index.json"):
        assert (tmp_path / "one" / "index" / name).read_bytes() == (tmp_path / "two" / "index" / name).read_bytes()
