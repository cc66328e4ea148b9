"""codebind-train: losses fall, exact resume, what trains in each mode, path artifacts, the feature cache,
data sources and bad rows, config handling, the console entry, two processes, and the cache benchmark."""

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codebind_hf import CodeBindModel
from codebind_hf.training.batching import EpochBatchSampler, PathCollator, pick
from codebind_hf.training.checkpointing import rotate_checkpoints
from codebind_hf.training.config import CONFIG_DIR, TrainConfig, apply_override, load_config_file, parse_args
from codebind_hf.training.data import load_dataset_dict, prepare_columns, resolve_columns
from codebind_hf.training.feature_cache import FeatureCache, tower_fingerprint
from codebind_hf.losses.objective import PathObjective
from codebind_hf.training.train_path import train
from training_toys import CLASSES, ToyProcessor, tiny_run_values, tiny_training_workdir, toy_columns
from tiny_models import tiny_config

TESTS = Path(__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_training_workdir(tmp_path_factory.mktemp("training"))


def run_config(workdir, output_dir, *overrides) -> TrainConfig:
    values = tiny_run_values(workdir, output_dir, str(workdir / "data"))
    for assignment in overrides:
        apply_override(values, assignment)
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def straight_run(workdir):
    """30 LoRA steps with checkpoints at 10 and 20, the full model not saved (so LoRA stays unmerged)."""
    torch.set_num_threads(1)
    output = workdir / "straight"
    result = train(run_config(workdir, output, "training.save_full_model=false"), processor=ToyProcessor())
    return result, output


# ---------------------------------------------------------------------------------------------- training runs
def test_loss_decreases_on_a_learnable_toy_pairing(straight_run):
    result, output = straight_run
    losses = result.losses
    assert len(losses) == 30 and result.global_step == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.8, losses
    logged = [entry for entry in result.log_history if "loss" in entry]
    assert [e["step"] for e in logged] == [5, 10, 15, 20, 25, 30]
    last = logged[-1]
    assert 0 < last["codebook/shared/usage"] <= 1 and last["codebook/shared/perplexity"] > 1
    assert {"loss/align", "loss/cm", "loss/vq", "loss/ctr", "loss/cuni", "loss/orth", "loss/uni", "loss/recon"} <= set(last)
    assert result.metrics["zero_shot/num_samples"] == 16 and result.metrics["zero_shot/acc1"] > 0.25  # 4 classes: chance 0.25
    saved = json.loads((output / "train_results.json").read_text())
    assert saved["losses"] == losses and saved["global_step"] == 30


def test_lora_mode_changes_only_lora_heads_and_codebooks(straight_run, workdir):
    result, _ = straight_run
    base = CodeBindModel.from_pretrained(workdir / "base").state_dict()
    trained = {k.replace(".base_layer.", "."): v for k, v in result.model.state_dict().items()}
    changed = sorted(k for k, v in base.items() if not torch.equal(v, trained[k]))
    assert changed and all(k.startswith("shared_heads.depth.") for k in changed), changed
    new = sorted(set(trained) - set(base))
    assert all(k.startswith(("quantizers.depth.", "specific_heads.depth.", "decoder.")) or "lora_" in k for k in new), new
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero: it trained
    assert all(k.startswith("towers.depth.") for k in trained if "lora_" in k)
    assert bool(result.model.quantizers["depth"].shared.initialized)


@torch.no_grad()  # with grad enabled the straight-through sum differs from the codevector in the last bit
def test_path_artifact_reloads_into_a_fresh_base_with_identical_embeddings(straight_run, workdir):
    result, output = straight_run
    trained = result.model.eval()
    fresh = CodeBindModel.from_pretrained(workdir / "base").eval()
    assert fresh.load_path(output / "path") == "depth"
    depth = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    for part in ("shared", "specific", "concat"):
        assert torch.equal(fresh.get_features("depth", depth, part=part), trained.get_features("depth", depth, part=part))
    text = ToyProcessor()(text=["apple photo", "drum shape"])
    assert torch.equal(
        fresh.get_features("text", text["input_ids"], attention_mask=text["attention_mask"], path="depth"),
        trained.get_features("text", text["input_ids"], attention_mask=text["attention_mask"], path="depth"),
    )


def test_resume_from_a_mid_run_checkpoint_gives_the_straight_run_losses(straight_run, workdir, tmp_path):
    straight, straight_dir = straight_run
    assert sorted(p.name for p in (straight_dir / "checkpoints").iterdir()) == ["checkpoint-10", "checkpoint-20"]
    output = tmp_path / "resumed"
    shutil.copytree(straight_dir / "checkpoints" / "checkpoint-10", output / "checkpoints" / "checkpoint-10")
    resumed = train(run_config(workdir, output, "training.resume_from_checkpoint=latest"), processor=ToyProcessor())
    assert resumed.losses[:10] == straight.losses[:10]  # restored from the checkpoint's trainer state
    np.testing.assert_allclose(resumed.losses[10:], straight.losses[10:], rtol=0, atol=1e-6)
    assert resumed.losses[-1] == pytest.approx(straight.losses[-1], abs=1e-6)
    for name, book in straight.model.quantizers["depth"].codebooks().items():
        assert torch.allclose(resumed.model.quantizers["depth"].codebooks()[name].codebook, book.codebook, atol=1e-6)
    # The resumed run saved the full model with LoRA merged: a strict reload embeds like the unmerged model.
    full = CodeBindModel.from_pretrained(output / "model").eval()
    depth = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    expected = straight.model.eval().get_features("depth", depth, quantize=False, part="concat")
    assert torch.allclose(full.get_features("depth", depth, quantize=False, part="concat"), expected, atol=1e-5)


def test_training_objective_equals_the_model_forward_loss():
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config()).eval()
    ids = torch.randint(1, 99, (6, 5))
    mask = torch.ones_like(ids)
    mask[:, 4] = 0
    pixels, depth = torch.randn(6, 3, 16, 16), torch.randn(6, 1, 16, 16)
    reference = model(return_loss=True, path="depth", input_ids=ids, attention_mask=mask, pixel_values=pixels, depth_values=depth)
    out = PathObjective(model, "depth").eval()(inputs={"text": ids, "vision": pixels, "depth": depth}, attention_mask=mask)
    assert torch.equal(out["loss"], reference.loss)
    assert all(torch.equal(out["breakdown"][k], v) for k, v in reference.loss_breakdown.items())
    books = {r.book for r in out["records"]}
    assert books == {"shared", "specific.vision", "specific.depth"}
    pooled_text = [r for r in out["records"] if r.book == "shared" and r.modality == "text"][0]
    assert pooled_text.z.shape == (6, 32) and pooled_text.indices.shape == (6, 4)


def test_feature_cache_gives_the_live_losses_and_is_reused(workdir, tmp_path):
    settings = ("path.reconstruction=false", "training.max_train_steps=4", "training.checkpointing_steps=null",
                f"cache.dir={tmp_path / 'cache'}")
    live = train(run_config(workdir, tmp_path / "live", *settings), processor=ToyProcessor())
    cached = train(run_config(workdir, tmp_path / "cached", *settings, "cache.enabled=true"), processor=ToyProcessor())
    np.testing.assert_allclose(cached.losses, live.losses, rtol=0, atol=1e-4)
    (folder,) = (tmp_path / "cache").iterdir()
    shard = folder / "shard-00000-of-00001.arrow"
    stamp = shard.stat().st_mtime_ns
    again = train(run_config(workdir, tmp_path / "again", *settings, "cache.enabled=true"), processor=ToyProcessor())
    assert shard.stat().st_mtime_ns == stamp and len(list((tmp_path / "cache").iterdir())) == 1  # reused
    assert again.losses == cached.losses
    table = datasets.Dataset.from_file(str(shard))
    assert len(table) == 64 and all(table["__cb_ok"])
    assert np.asarray(table[0]["__cb_vision"]).shape == (1, 32)
    assert (folder / "prompts").is_dir()  # label prompts: one text feature per class x template


def test_caption_lists_are_cached_per_caption_and_drawn_like_live(tmp_path):
    columns = toy_columns(24, seed=9)
    columns["caption"] = [[f"{CLASSES[label]} thing", f"{CLASSES[label]} here"][: 1 + label % 2] for label in columns["label"]]
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(columns)})
    losses = []
    for cache in (False, True):
        values = load_config_file("tiny")
        values["data"].update(dataset=data, class_names=CLASSES)
        values["data"]["columns"]["text"] = "caption"
        values["path"]["reconstruction"] = False
        values["cache"] = {"enabled": cache, "dir": str(tmp_path / "cache")}
        values["training"].update(output_dir=str(tmp_path / f"run{cache}"), max_train_steps=3, checkpointing_steps=None,
                                  save_full_model=False, gradient_accumulation_steps=2, per_device_batch_size=4)
        losses.append(train(TrainConfig.from_dict(values), processor=ToyProcessor()).losses)
    np.testing.assert_allclose(losses[1], losses[0], rtol=0, atol=1e-4)
    (folder,) = (tmp_path / "cache").iterdir()
    table = datasets.Dataset.from_file(str(folder / "shard-00000-of-00001.arrow"))
    assert [len(x) for x in table["__cb_text"]] == [len(c) for c in columns["caption"]]  # one feature per caption
    assert not (folder / "prompts").exists()


def test_training_uses_one_clip_per_row_chosen_per_epoch():
    from codebind_hf.training.batching import BatchSpec
    from codebind_hf.training.data import ColumnMap

    clips = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3, 1, 1, 1).expand(5, 3, 1, 2, 2).contiguous()  # (B, clips, C, H, W)
    processor = lambda depth=None, **_: {"depth_values": clips[: len(depth)]}  # noqa: E731
    spec = BatchSpec(live=["depth"], columns=ColumnMap(modalities={"depth": "d"}), sample_ndims={"depth": 3})
    collator = PathCollator(spec, processor, seed=7)
    items = [(row, {"d": np.zeros(3)}) for row in range(5)]
    for epoch in (0, 1):
        collator.epoch = epoch
        picked = collator(items)["inputs"]["depth"]
        assert picked.shape == (5, 1, 2, 2)
        expected = [3 * row + pick(7, epoch, row, 3, 2) for row in range(5)]
        assert picked[:, 0, 0, 0].tolist() == expected


def test_feature_cache_key_follows_weights_and_preprocessing():
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config())
    components = {"towers": tower_fingerprint(model, ["text", "vision"]), "processor": "a"}
    key = FeatureCache("/tmp/x", components, ["text", "vision"]).key
    assert FeatureCache("/tmp/x", dict(components), ["text", "vision"]).key == key
    assert FeatureCache("/tmp/x", {**components, "processor": "b"}, ["text", "vision"]).key != key
    assert FeatureCache("/tmp/x", components, ["text", "vision"], dtype="float16").key != key
    with torch.no_grad():
        model.towers["vision"].backbone.layers[0].attention.q_proj.weight[0, 0] += 1e-3
    assert tower_fingerprint(model, ["text", "vision"]) != components["towers"]
    assert tower_fingerprint(model, ["text"]) == tower_fingerprint(model, ["text"])


@pytest.mark.parametrize("mode", ["headtune", "fulltune"])
def test_headtune_and_fulltune_train_what_they_should(mode, workdir, tmp_path):
    extra = ("cache.enabled=true", "cache.target=true") if mode == "headtune" else ()  # headtune: target tower cached too
    result = train(run_config(workdir, tmp_path / mode, f"path.mode={mode}", *extra, "training.max_train_steps=3",
                              "training.checkpointing_steps=null", "training.save_full_model=false",
                              "training.gradient_accumulation_steps=2", "training.per_device_batch_size=4"),
                   processor=ToyProcessor())
    base = CodeBindModel.from_pretrained(workdir / "base").state_dict()
    trained = result.model.state_dict()
    changed = {k for k, v in base.items() if not torch.equal(v, trained[k])}
    assert not any("lora_" in k for k in trained) and len(result.losses) == 3
    if mode == "headtune":
        assert changed and all(k.startswith("shared_heads.depth.") for k in changed)
    else:
        assert any(k.startswith("towers.depth.") for k in changed)
        assert all(k.startswith(("towers.depth.", "shared_heads.depth.")) for k in changed), changed
    with pytest.raises(ValueError, match="cache.target=true needs path.mode='headtune'"):
        run_config(workdir, tmp_path / "x", "cache.enabled=true", "cache.target=true")


def test_adaptive_weights_follow_loss_magnitudes_and_resume_exactly(workdir, tmp_path):
    settings = ("path.adaptive_weights=true", "training.max_train_steps=4", "training.logging_steps=1",
                "training.checkpointing_steps=2", "training.save_full_model=false")
    result = train(run_config(workdir, tmp_path / "ada", *settings), processor=ToyProcessor())
    first = result.log_history[0]
    assert first["weight/align"] == 1.0 and first["weight/recon"] == 1.0
    # first step: every balanced weight is |align| / |loss|, so the weighted magnitudes all equal |align|
    for name in ("vq", "cm", "ctr", "orth"):
        assert first[f"weight/{name}"] * abs(first[f"loss/{name}"]) == pytest.approx(abs(first["loss/align"]), rel=1e-4)
    assert all(np.isfinite(result.losses))
    state = json.loads((tmp_path / "ada" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["balancer"]["global_step"] == 2 and set(state["balancer"]["ema"]) >= {"align", "vq"}
    shutil.copytree(tmp_path / "ada" / "checkpoints" / "checkpoint-2", tmp_path / "again" / "checkpoints" / "checkpoint-2")
    resumed = train(run_config(workdir, tmp_path / "again", *settings, "training.resume_from_checkpoint=latest"), processor=ToyProcessor())
    np.testing.assert_allclose(resumed.losses, result.losses, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- data
def _write_wav(path: Path, rate: int = 16000, samples: int = 400) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.sin(np.arange(samples) / 7.0) * 16384).astype("<i2").tobytes())


def test_local_layouts_load_and_name_bad_rows(tmp_path):
    from PIL import Image

    from codebind_hf.training.config import DataArguments

    for label in ("cat", "dog"):
        Image.fromarray(np.full((4, 4, 3), 100, np.uint8)).save(tmp_path / f"img-{label}.png")
        (tmp_path / "images" / "train" / label).mkdir(parents=True)
        shutil.copy(tmp_path / f"img-{label}.png", tmp_path / "images" / "train" / label / "a.png")
    (tmp_path / "images" / "train" / "dog" / "b.png").write_bytes(b"not an image")
    images = load_dataset_dict(DataArguments(dataset=str(tmp_path / "images")))["train"]
    assert images.features["label"].names == ["cat", "dog"] and len(images) == 3
    _write_wav(tmp_path / "audio" / "train" / "bark" / "1.wav", rate=16000)
    _write_wav(tmp_path / "audio" / "train" / "mew" / "2.wav", rate=16000)
    (tmp_path / "audio" / "train" / "mew" / "3.wav").write_bytes(b"RIFF....")
    audio = load_dataset_dict(DataArguments(dataset=str(tmp_path / "audio")))["train"]
    assert audio.features["label"].names == ["bark", "mew"] and audio["label"] == [0, 1, 1]

    def collate(ds, modality, column, skip):
        args = DataArguments(columns={modality: column}, prompt_templates="sound")
        cols = resolve_columns(ds, ["text", modality], args)
        from codebind_hf.training.batching import BatchSpec

        spec = BatchSpec(live=["text", modality], columns=cols, sample_ndims={}, templates=("{}",),
                         class_names=ds.features["label"].names)
        processor = lambda **kw: {"input_ids": torch.zeros(len(kw["text"]), 2, dtype=torch.long)}  # noqa: E731
        collator = PathCollator(spec, processor, seed=0, skip_bad_rows=skip)
        prepared = prepare_columns(ds, cols)
        return collator([(i, prepared[i]) for i in range(len(prepared))])

    with pytest.raises(ValueError, match=r"row 2, column 'image': cannot decode the image"):
        collate(images, "vision", "image", skip=False)
    batch = collate(images, "vision", "image", skip=True)
    assert batch["rows"].tolist() == [0, 1] and batch["num_bad"] == 1
    with pytest.raises(ValueError, match=r"row 2, column 'audio': cannot read audio"):
        collate(audio, "audio", "audio", skip=False)
    assert collate(audio, "audio", "audio", skip=True)["num_bad"] == 1

    datasets.Dataset.from_dict(toy_columns(4)).to_parquet(str(tmp_path / "pq" / "train.parquet"))
    parquet = load_dataset_dict(DataArguments(dataset=str(tmp_path / "pq")))
    assert list(parquet) == ["train"] and parquet["train"].num_rows == 4
    from_dict = load_dataset_dict(DataArguments(dataset=toy_columns(5)))
    assert from_dict["train"].num_rows == 5


def test_column_errors_name_the_column_and_split():
    from codebind_hf.training.config import DataArguments
    from codebind_hf.training.data import get_split

    ds = datasets.Dataset.from_dict(toy_columns(4))
    with pytest.raises(ValueError, match=r"data.columns.depth: column 'dpeth' not found \(did you mean 'depth'\?\)"):
        resolve_columns(ds, ["text", "depth"], DataArguments(columns={"depth": "dpeth"}))
    with pytest.raises(ValueError, match=r"No column for modality 'thermal'.*data.columns.thermal"):
        resolve_columns(ds, ["text", "thermal"], DataArguments())
    with pytest.raises(ValueError, match="neither a caption column"):
        resolve_columns(ds.remove_columns("label"), ["text", "depth"], DataArguments())
    empty = datasets.DatasetDict({"train": ds.select([])})
    with pytest.raises(ValueError, match="training split 'train' is empty"):
        get_split(empty, "train")
    with pytest.raises(ValueError, match=r"no training split 'val'.*\['train'\]"):
        get_split(empty, "val")


def test_bad_rows_stop_the_run_or_are_skipped_and_counted(tmp_path):
    columns = toy_columns(32, seed=5)
    columns["depth"][3] = None
    columns["depth"][7] = np.full((1, 16, 16), np.nan).tolist()
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(columns)})
    values = load_config_file("tiny")
    values["data"].update(dataset=data, class_names=CLASSES)  # int labels: names from the config
    values["training"].update(output_dir=str(tmp_path / "bad"), max_train_steps=4, checkpointing_steps=None, save_full_model=False)
    with pytest.raises(ValueError, match=r"row (3|7), column 'depth': (value is missing|contains NaN)"):
        train(TrainConfig.from_dict(values), processor=ToyProcessor())
    values["data"]["skip_bad_rows"] = True  # 32 rows / batch 8 = 4 steps: one epoch sees every row
    result = train(TrainConfig.from_dict(values), processor=ToyProcessor())
    assert result.num_bad_rows == 2 and result.global_step == 4


def test_sampler_is_deterministic_disjoint_and_skippable():
    shards = [EpochBatchSampler(np.arange(50), batch_size=4, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in shards:
        sampler.set_epoch(3)
    first = [list(s) for s in shards]
    assert len(first[0]) == len(first[1]) == 6  # 25 rows per process -> 6 full batches
    seen = [i for batches in first for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 48
    shards[0].set_epoch(3, skip_batches=4)
    assert list(shards[0]) == first[0][4:]
    shards[0].set_epoch(4)
    assert list(shards[0]) != first[0]
    assert pick(1, 2, 3, 10, 1) == pick(1, 2, 3, 10, 1) and len({pick(1, e, 3, 10, 1) for e in range(40)}) > 5
    with pytest.raises(ValueError, match="too few for batch size"):
        EpochBatchSampler(np.arange(3), batch_size=4, seed=0)


def test_checkpoint_rotation_keeps_the_newest(tmp_path):
    for step in (5, 10, 15, 20):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
    removed = rotate_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["checkpoint-5", "checkpoint-10"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-15", "checkpoint-20"]


# ---------------------------------------------------------------------------------------------- configuration
def test_config_file_overrides_and_flags(tmp_path):
    cfg = parse_args(["--config", "tiny", "--set", "training.learning_rate=2e-4", "--set", "path.bridges=[text]",
                      "--output_dir", str(tmp_path), "--max_train_steps", "7", "--set", "data.columns.depth=d"])
    assert cfg.training.learning_rate == 2e-4 and cfg.path.bridges == ["text"]
    assert cfg.training.output_dir == str(tmp_path) and cfg.training.max_train_steps == 7
    assert cfg.data.columns["depth"] == "d" and cfg.training.adam_beta2 == 0.95
    assert parse_args(["--config", "tiny", "--mixed_precision", "no", "--set", "training.report_to=none"]).training.mixed_precision == "no"
    assert parse_args(["--config", "tiny", "--set", "training.mixed_precision=no"]).training.mixed_precision == "no"
    with pytest.raises(ValueError, match=r"Unknown keys \['lr'\] in config section 'training'"):
        parse_args(["--config", "tiny", "--set", "training.lr=1"])
    with pytest.raises(TypeError, match="training.learning_rate must be float"):
        parse_args(["--config", "tiny", "--set", "training.learning_rate=fast"])
    with pytest.raises(ValueError, match="path.mode must be"):
        parse_args(["--config", "tiny", "--set", "path.mode=adapters"])


def test_paper_configs_carry_the_official_hyper_parameters():
    names = {"in1k", "p365", "k400", "msrvtt", "sun_d", "nyu_d", "audioset", "vggsound", "audiocaps", "esc", "clotho",
             "llvip", "flir_v2", "touch_and_go", "in_eeg", "tiny"}
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == names | {"radar_example"}  # + the new-sensor example (no paper recipe)
    cfg = {name: TrainConfig.from_dict(load_config_file(name)) for name in names}
    expected = {  # name: (target, mode, lr, temperature, batch, LoRA blocks)
        "in1k": ("vision", "headtune", 1e-5, 0.07, 16, None), "sun_d": ("depth", "lora", 5e-4, 0.07, 8, 6),
        "audioset": ("audio", "lora", 5e-5, 0.05, 6, 6), "flir_v2": ("thermal", "lora", 5e-5, 0.1, 8, 6),
        "llvip": ("thermal", "lora", 5e-5, 0.1, 12, 6), "touch_and_go": ("tactile", "fulltune", 5e-4, 0.07, 6, None),
        "in_eeg": ("eeg", "lora", 5e-4, 0.07, 6, 3), "k400": ("vision", "headtune", 1e-5, 0.07, 6, None),
    }
    for name, (target, mode, lr, temperature, batch, blocks) in expected.items():
        c = cfg[name]
        assert (c.path.target, c.path.mode, c.training.learning_rate, c.path.temperature, c.training.per_device_batch_size) == (
            target, mode, lr, temperature, batch), name
        if blocks:
            assert c.path.lora_last_n_blocks == blocks and c.path.lora_rank == 4
    assert cfg["sun_d"].path.loss_weights["vq"] == 1000.0 and cfg["audioset"].path.loss_weights["cm"] == 1.0
    assert cfg["sun_d"].data.repeat == 10 and cfg["flir_v2"].data.repeat == 10 and cfg["nyu_d"].data.repeat == 20
    assert all(c.training.learning_rate_new == 5e-4 and c.training.min_lr_ratio == 0.02 for n, c in cfg.items() if n != "tiny")


# ---------------------------------------------------------------------------------------------- processes
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def _cli_args(workdir, output, steps: int) -> list[str]:
    return ["--config", "tiny", "--dataset", str(workdir / "data"), "--output_dir", str(output), "--max_train_steps", str(steps),
            "--model_name_or_path", str(workdir / "base"), "--set", "data.processor=training_toys:ToyProcessor",
            "--set", "training.checkpointing_steps=null"]


def test_console_entry_runs_as_a_subprocess(workdir, tmp_path):
    entry = shutil.which("codebind-train")
    command = [entry] if entry else [sys.executable, "-m", "codebind_hf.training.train_path"]
    done = subprocess.run([*command, *_cli_args(workdir, tmp_path / "cli", 3)], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "cli" / "train_results.json").read_text())
    assert results["global_step"] == 3 and len(results["losses"]) == 3
    assert (tmp_path / "cli" / "path" / "path.safetensors").is_file()
    assert CodeBindModel.from_pretrained(tmp_path / "cli" / "model").list_paths() == ["depth"]


def test_two_processes_end_with_identical_weights_and_codebooks(workdir, tmp_path):
    dump = tmp_path / "dump"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(29500 + os.getpid() % 1000), "-m", "codebind_hf.training.train_path",
               *_cli_args(workdir, tmp_path / "ddp", 4), "--set", "training.per_device_batch_size=4",
               "--set", f"training.dump_state_dir={dump}"]
    # accelerate 1.x's --cpu runs a single process; --multi_gpu with ACCELERATE_USE_CPU gives gloo processes.
    done = subprocess.run(command, env={**_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(str(dump / f"state-rank{r}.safetensors")) for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1]) and any(k.startswith("quantizers.depth.") for k in ranks[0])
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
    assert bool(ranks[0]["quantizers.depth.shared.initialized"])  # k-means ran (a collective, like the EMA)
    assert int(ranks[0]["quantizers.depth.shared.code_counts"].sum()) > 0  # EMA updates ran (counts are all-reduced)


def test_training_benchmark_reports_the_cache_speedup(capsys):
    from tiny_models import load_script

    bench = load_script("benchmarks/perf/training.py")

    result = bench.main(["--steps", "4", "--rows", "48", "--batch", "8", "--bridge-width", "64", "--bridge-layers", "2"])
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("RESULT ")][-1]
    assert json.loads(line[len("RESULT "):])["cache_speedup"] == result["cache_speedup"] > 1.0
    assert result["first_loss_cached"] == pytest.approx(result["first_loss_live"], abs=1e-4)
    assert result["bridge_to_trainable_ratio"] > 0
