"""Checksums on everything written and read back: for each artifact kind, one flipped bit and a truncation are
refused on load with an error naming the file — and a resume never continues from a corrupt checkpoint silently."""

import json
import logging
import re

import pytest
import torch

from codebind_hf import CodeBindModel
from codebind_hf.adapters.integrity import IntegrityError, load_checked_safetensors, save_checked_safetensors
from tiny_models import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def flip_bit(path, offset: int = -1) -> None:
    """Flip the lowest bit of one byte (default: the last one, inside a safetensors file's tensor data)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_json_value(path, old: str, new: str) -> None:
    """A one-character edit that keeps the JSON valid (what a flipped bit in a digit or letter does)."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


CORRUPTIONS = {"bit flip": flip_bit, "truncation": truncate}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CodeBindModel(tiny_config(decoder=False)).eval()


# ---------------------------------------------------------------------------------------------- full model
@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_full_model_weights(model, tmp_path, corrupt, sharded):
    model.save_pretrained(tmp_path / "m", **({"max_shard_size": "100KB"} if sharded else {}))
    target = sorted((tmp_path / "m").glob("model*.safetensors"))[-1]
    corrupt(target)
    with pytest.raises(IntegrityError, match=re.escape(str(target)) + " is corrupted or truncated"):
        CodeBindModel.from_pretrained(tmp_path / "m")


def test_full_model_with_a_missing_shard_names_it(model, tmp_path):
    model.save_pretrained(tmp_path / "m", max_shard_size="100KB")
    shard = sorted((tmp_path / "m").glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(IntegrityError, match=re.escape(str(shard)) + " is missing: model_checksums.json lists it"):
        CodeBindModel.from_pretrained(tmp_path / "m")


# ---------------------------------------------------------------------------------------------- small artifacts
@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_path_artifact(model, tmp_path, corrupt):
    folder = model.save_path("depth", tmp_path / "path")
    corrupt(folder / "path.safetensors")
    with pytest.raises(ValueError, match=r"path\.safetensors is corrupted or truncated"):
        model.load_path(folder, replace=True)


@pytest.mark.parametrize("kind", ["bond", "projector"])
@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_bond_and_projector_artifacts(tmp_path, kind, corrupt):
    from codebind_hf.adapters.bond_io import BOND_ARTIFACT
    from codebind_hf.adapters.projector import PROJECTOR_ARTIFACT

    fmt = {"bond": BOND_ARTIFACT, "projector": PROJECTOR_ARTIFACT}[kind]
    state = {"w": torch.randn(4, 3)}
    config = {"format": fmt.format, "version": fmt.version, "shapes": {"w": [4, 3]}, **{k: None for k in fmt.required_keys}}
    folder = fmt.save(tmp_path / kind, state, config)
    corrupt(folder / fmt.weights_file)
    with pytest.raises(ValueError, match=re.escape(fmt.weights_file) + " is corrupted or truncated"):
        fmt.read(folder)


# ---------------------------------------------------------------------------------------------- index
@pytest.fixture
def saved_index(model, tmp_path):
    from codebind_hf.index.core import CodeBindIndex

    index = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    index.add_inputs(model, "depth", torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2)),
                     ids=["item-1", "item-2", "item-3", "item-4"])
    return index.save(tmp_path / "index")


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_index_codes(saved_index, corrupt):
    from codebind_hf.index.core import CodeBindIndex

    corrupt(saved_index / "codes.safetensors")
    with pytest.raises(ValueError, match=r"codes\.safetensors"):
        CodeBindIndex.load(saved_index, backend="torch")


@pytest.mark.parametrize("corrupt", [lambda p: edit_json_value(p, "item-3", "item-7"), truncate],
                         ids=["bit flip in an id", "truncation"])
def test_index_ids_and_metadata(saved_index, corrupt):
    from codebind_hf.index.core import CodeBindIndex

    corrupt(saved_index / "index.json")
    with pytest.raises(IntegrityError, match=r"index\.json (does not match its checksum|is corrupted or truncated)"):
        CodeBindIndex.load(saved_index, backend="torch")


# ---------------------------------------------------------------------------------------------- index builds
@pytest.mark.parametrize("file, corrupt", [
    ("shards/shard-000000000000.safetensors", flip_bit), ("shards/shard-000000000000.safetensors", truncate),
    ("shards/shard-000000000000.json", lambda p: edit_json_value(p, "i1", "i7")), ("manifest.json", truncate),
])
def test_index_build_shards_and_manifest(model, tmp_path, file, corrupt):
    import datasets

    from codebind_hf.index.core import CodeBindIndex

    data = datasets.Dataset.from_dict({"depth": torch.randn(6, 1, 16, 16).tolist(), "name": [f"i{k}" for k in range(6)]})

    calls = []

    def stopping(values):  # the second batch fails: an interrupted build whose first shard is committed
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stop")
        return torch.tensor(values)

    def build(processor=None):
        return CodeBindIndex.build_from_dataset(model, data, "depth", "depth", output_dir=tmp_path / "b", processor=processor,
                                                id_column="name", batch_size=3, shard_size=3, progress=False, backend="torch")

    with pytest.raises(RuntimeError, match="stop"):
        build(stopping)
    corrupt(tmp_path / "b" / file)
    with pytest.raises((IntegrityError, ValueError), match=re.escape(str(tmp_path / "b" / file))):
        build()  # the resume reads the committed shard first


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture
def run(tmp_path):
    """A run folder with checkpoints 2 and 4 of a tiny model (trained tensors, optimizer, trainer state)."""
    from accelerate import Accelerator

    from codebind_hf.training.checkpointing import register_hooks, save_checkpoint

    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(torch.nn.Linear(3, 2), torch.optim.Adam(torch.nn.Linear(3, 2).parameters()))
    register_hooks(accelerator, lambda: model, "depth")
    for step in (2, 4):
        save_checkpoint(accelerator, tmp_path / "run", step, {"global_step": step}, limit=None)
    return tmp_path / "run"


@pytest.mark.parametrize("file, corrupt", [
    ("trained_state.safetensors", flip_bit), ("trained_state.safetensors", truncate),
    ("optimizer.bin", flip_bit), ("trainer_state.json", lambda p: edit_json_value(p, '"global_step": 4', '"global_step": 5')),
])
def test_checkpoint_files_are_verified_before_resuming(run, caplog, file, corrupt):
    from codebind_hf.training.checkpointing import resolve_checkpoint

    bad = run / "checkpoints" / "checkpoint-4" / file
    corrupt(bad)
    with pytest.raises((IntegrityError, ValueError), match=re.escape(str(bad))):
        resolve_checkpoint(run, str(bad.parent))  # an explicit checkpoint: stop, naming the file
    with caplog.at_level(logging.WARNING, logger="codebind_hf.training"):
        chosen = resolve_checkpoint(run, "latest")  # "latest": the previous one, saying so
    assert chosen.name == "checkpoint-2"
    assert "checkpoint-4 is corrupt and is skipped" in caplog.text and file in caplog.text
    assert "resuming from checkpoint-2, the newest intact checkpoint" in caplog.text


def test_no_intact_checkpoint_stops_the_resume(run):
    from codebind_hf.training.checkpointing import resolve_checkpoint

    for step in (2, 4):
        flip_bit(run / "checkpoints" / f"checkpoint-{step}" / "trained_state.safetensors")
    with pytest.raises(IntegrityError, match=r"every checkpoint of .* is corrupt; not resuming"):
        resolve_checkpoint(run, "latest")


# ---------------------------------------------------------------------------------------------- state files
@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_checked_safetensors_such_as_a_stage_s_final_state(tmp_path, corrupt):
    path = save_checked_safetensors({"a": torch.randn(5, 4), "b": torch.arange(3)}, tmp_path / "final_state.safetensors")
    assert torch.equal(load_checked_safetensors(path)["b"], torch.arange(3))
    corrupt(path)
    with pytest.raises(IntegrityError, match=re.escape(str(path))):
        load_checked_safetensors(path)


def test_feature_cache_shards_are_verified_and_a_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    from codebind_hf.adapters.integrity import write_checksum_list, write_sealed_json
    from codebind_hf.training.feature_cache import CACHE_CHECKSUMS, INFO_FILE, FeatureCache

    cache = FeatureCache(tmp_path, {"what": "toy"}, ["vision"])
    cache.folder.mkdir(parents=True)
    (cache.folder / "shard-00000-of-00001.arrow").write_bytes(b"features" * 100)
    write_checksum_list(cache.folder, ["shard-00000-of-00001.arrow"], CACHE_CHECKSUMS)
    write_sealed_json(cache.folder / INFO_FILE, {"key": cache.key, "checksums": CACHE_CHECKSUMS})
    assert cache.complete
    flip_bit(cache.folder / "shard-00000-of-00001.arrow", 17)
    with caplog.at_level(logging.WARNING, logger="codebind_hf.training"):
        assert not cache.complete
    assert "is corrupt and is rebuilt" in caplog.text and "shard-00000-of-00001.arrow is corrupted" in caplog.text
    edit_json_value(cache.folder / INFO_FILE, cache.key[:6], "ffffff" if cache.key[:6] != "ffffff" else "000000")
    assert not cache.complete and "feature cache info" in caplog.text
    json.loads((cache.folder / INFO_FILE).read_text())  # (still valid JSON: the seal caught the edit)
