"""New sensors as first-class modalities (issue 17): a radar (range-Doppler maps, 2 x 64 x 64, a tiny random ViT
tower) on the converted tiny ImageBind base; a path trained by ``codebind-train`` with the shipped example config's
``modality`` block, pushed to the local Hub, loaded into a fresh base that never had a radar tower; and the refusals of
bad input (unknown modality in a path, clashing names, processor/tower shape mismatch, missing bridge)."""

import copy
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from codebind_hf import CodeBindArraySensorFeatureExtractor, CodeBindConfig, CodeBindModel, CodeBindProcessor
from codebind_hf.convert.imagebind import convert_imagebind_checkpoint
from codebind_hf.training.config import load_config_file
from codebind_hf.training.train_path import main as codebind_train
from doc_blocks import ConsoleState
from hub_server import use_local_hub
from user_world import FIXTURES, TOKEN

pytestmark = pytest.mark.usefixtures("one_thread")
PATH_REPO = "your-org/codebind-radar-path-test"
ROWS = 16
# The tiny random tower of the test (the shipped example's is a 192-wide ViT).
TINY_VIT = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "image_size": 64, "patch_size": 16, "num_channels": 2}
# Per-channel offsets and scales of the generated maps: what the computed statistics must find.
OFFSET, SCALE = np.array([3.0, -1.0], np.float32), np.array([2.0, 0.5], np.float32)


def radar_maps(count: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal((count, 2, 64, 64)).astype(np.float32)
    return noise * SCALE[None, :, None, None] + OFFSET[None, :, None, None]


def radar_spec(**processor):
    return {"tower": {"family": "hf", "backbone": TINY_VIT}, "sample_shape": [2, 64, 64],
            "processor": CodeBindArraySensorFeatureExtractor(modality="radar", shape=[2, 64, 64], **processor)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The converted tiny base (with its processor), and a `datasets` folder of radar maps (.npy files) paired with
    images and captions."""
    root = tmp_path_factory.mktemp("new-sensor")
    base = convert_imagebind_checkpoint(FIXTURES / "imagebind_tiny" / "imagebind_tiny.pth",
                                        FIXTURES / "imagebind_tiny" / "config.json")
    base.save_pretrained(root / "base")
    CodeBindProcessor.imagebind().save_pretrained(root / "base")
    (root / "maps").mkdir()
    maps, rng = radar_maps(ROWS, seed=1), np.random.default_rng(2)
    for i, array in enumerate(maps):
        np.save(root / "maps" / f"{i:03d}.npy", array)
    columns = {"radar": [str(root / "maps" / f"{i:03d}.npy") for i in range(ROWS)],
               "image": [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(ROWS)],
               "caption": [["a car ahead", "a cyclist crossing", "an empty road", "a pedestrian"][i % 4] for i in range(ROWS)]}
    datasets.DatasetDict(train=datasets.Dataset.from_dict(columns)).save_to_disk(str(root / "radar-pairs"))
    return root


def _run_config(world: Path, name: str, **overrides) -> Path:
    """The shipped radar example, on the tiny base with the tiny tower and a small decoder, 20 steps."""
    values = copy.deepcopy(load_config_file("radar_example"))
    values["model"]["name_or_path"] = str(world / "base")
    values["modality"]["tower"]["backbone"] = TINY_VIT
    values["path"]["decoder"] = {"hidden_size": 32, "num_layers": 1, "num_heads": 4}
    values["data"].update(dataset=str(world / "radar-pairs"), num_workers=0)
    values["codebooks"]["kmeans_init_batches"] = 1
    values["training"].update(output_dir=str(world / name), per_device_batch_size=4, max_train_steps=20, warmup_steps=0,
                              checkpointing_steps=10, logging_steps=5, disable_tqdm=True)
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        values[section][field] = value
    file = world / f"{name}.yaml"
    file.write_text(yaml.safe_dump(values))
    return file


def _train(argv: list[str]) -> None:
    with ConsoleState():  # codebind-train's main() sets up logging for its process; put it back after
        assert codebind_train(argv) == 0


@pytest.fixture(scope="module")
def trained(world, hub_server):
    """``codebind-train --config <radar example>`` (fulltune, computed statistics), pushing the path."""
    config = _run_config(world, "run", training__push_to_hub=True, training__hub_path_repo_id=PATH_REPO)
    with pytest.MonkeyPatch.context() as patch:
        use_local_hub(patch, hub_server.endpoint)
        patch.setenv("HF_TOKEN", TOKEN)
        _train(["--config", str(config)])
    return world / "run"


def _processed(processor, maps):
    return processor(radar=list(maps))["radar_values"]


def test_a_pushed_radar_path_loads_into_a_base_that_never_had_radar(world, trained, hub):
    trained_model = CodeBindModel.from_pretrained(trained / "model").eval()  # the run's model (fulltune: as trained)
    trained_processor = CodeBindProcessor.from_pretrained(trained / "model")
    fresh = CodeBindModel.from_pretrained(world / "base").eval()
    assert "radar" not in fresh.towers and "radar" not in fresh.config.modalities
    assert fresh.load_path(PATH_REPO) == "radar"
    assert fresh.list_paths() == ["radar"] and fresh.config.input_key("radar") == "radar_values"
    # The colleague's processor: the base's, plus the component the path brought.
    processor = CodeBindProcessor.from_pretrained(world / "base").add_modality("radar", fresh.modality_processor("radar"))
    raw = radar_maps(3, seed=9)
    x = _processed(processor, raw)
    torch.testing.assert_close(x, _processed(trained_processor, raw), rtol=0, atol=0)  # the same preprocessing
    # ... which is the training split's per-channel standardisation (population statistics, computed by hand here)
    train_maps = radar_maps(ROWS, seed=1).astype(np.float64)
    mean, std = train_maps.mean(axis=(0, 2, 3)), train_maps.std(axis=(0, 2, 3))
    component = fresh.modality_processor("radar")
    np.testing.assert_allclose(component.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(component.std, std, rtol=1e-9)
    expected = (raw - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for part in ("shared", "concat"):
            ours, theirs = fresh.get_features("radar", x, part=part), trained_model.get_features("radar", x, part=part)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        assert bool(fresh.quantizers["radar"].shared.initialized)  # a trained path: its codebooks quantise
        text = processor(text=["a car ahead"])
        # the bridges are the base's own: unchanged by the path
        torch.testing.assert_close(fresh.get_features("text", text, quantize=False),
                                   CodeBindModel.from_pretrained(world / "base").get_features("text", text, quantize=False))
        out = fresh(radar_values=x, **text)
        torch.testing.assert_close(out.shared_embeds["radar"], fresh.get_features("radar", x))
    fresh.remove_path("radar")  # the modality came with the path and goes with it
    assert "radar" not in fresh.towers and "radar" not in fresh.config.modalities


def test_the_path_carries_tower_spec_and_processor_and_its_card_says_what_it_expects(world, trained):
    config = json.loads((trained / "path" / "path_config.json").read_text())
    spec = config["modality_spec"]
    assert spec["sample_shape"] == [2, 64, 64] and spec["input_key"] == "radar_values"
    assert spec["tower"]["backbone"]["num_channels"] == 2 and spec["processor"]["shape"] == [2, 64, 64]
    tower_keys = [k for k in config["shapes"] if k.startswith("towers.radar.")]
    base_model = CodeBindModel.from_pretrained(trained / "model")
    assert sorted(tower_keys) == sorted(f"towers.radar.{k}" for k in base_model.towers["radar"].state_dict())
    assert not [k for k in config["shapes"] if k.startswith(("towers.text.", "towers.vision."))]
    card = (trained / "path" / "README.md").read_text()
    assert "## Sensor: radar" in card and "77 GHz FMCW radar" in card and "2 × 64 × 64" in card
    assert "per-channel mean" in card and "time axis -1: exact" in card
    size = sum(f.stat().st_size for f in (trained / "path").iterdir())
    full = sum(f.stat().st_size for f in (trained / "model").glob("*.safetensors"))
    assert size < full  # the tower, heads and codebooks of one modality, not the base


def test_lora_with_a_feature_cache_resumes_and_its_path_reproduces_the_run(world):
    """LoRA on the new tower, frozen bridges cached, stopped after 3 steps and resumed: the path saved at the end
    (before any LoRA merge) gives the run's features on a fresh base."""
    from codebind_hf.training.config import TrainConfig
    from codebind_hf.training.train_path import train

    config = _run_config(world, "lora", path__mode="lora", path__lora_last_n_blocks=1, cache__enabled=True,
                         training__save_full_model=False, training__max_train_steps=6, training__checkpointing_steps=3)
    values = yaml.safe_load(config.read_text())
    values["training"]["max_steps_this_run"] = 3
    first = train(TrainConfig.from_dict(values))
    assert first.interrupted and first.global_step == 3
    values["training"].update(max_steps_this_run=None, resume_from_checkpoint="latest")
    result = train(TrainConfig.from_dict(values))
    assert result.global_step == 6 and (world / "lora" / "feature_cache").is_dir()
    fresh = CodeBindModel.from_pretrained(world / "base").eval()
    fresh.load_path(world / "lora" / "path")
    assert fresh.lora_settings["radar"]["r"] == 4
    processor = CodeBindProcessor.from_pretrained(world / "base").add_modality("radar", fresh.modality_processor("radar"))
    x = _processed(processor, radar_maps(2, seed=5))
    with torch.no_grad():
        torch.testing.assert_close(fresh.get_features("radar", x, part="concat"),
                                   result.model.eval().get_features("radar", x, part="concat"), rtol=0, atol=1e-6)


def test_headtune_with_the_radar_tower_cached(world):
    """headtune with cache.target: the frozen radar tower's outputs come from the feature cache too, and the path still
    carries that tower (the base has none)."""
    import datasets as hf_datasets

    from codebind_hf.training.config import TrainConfig
    from codebind_hf.training.train_path import train

    config = _run_config(world, "headtune", path__mode="headtune", cache__enabled=True, cache__target=True,
                         training__save_full_model=False, training__max_train_steps=2)
    result = train(TrainConfig.from_dict(yaml.safe_load(config.read_text())))
    shards = list((world / "headtune" / "feature_cache").rglob("shard-*.arrow"))
    cached_columns = {c for shard in shards for c in hf_datasets.Dataset.from_file(str(shard)).column_names}
    assert result.global_step == 2 and {"__cb_radar", "__cb_vision", "__cb_text"} <= cached_columns
    fresh = CodeBindModel.from_pretrained(world / "base").eval()
    fresh.load_path(world / "headtune" / "path")
    x = _processed(CodeBindProcessor().add_modality("radar", fresh.modality_processor("radar")), radar_maps(2, seed=6))
    with torch.no_grad():
        torch.testing.assert_close(fresh.get_features("radar", x), result.model.eval().get_features("radar", x),
                                   rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- bad input
def test_a_path_of_an_unknown_modality_without_its_tower_is_refused(world, trained, tmp_path):
    edited = tmp_path / "sonar-path"
    shutil.copytree(trained / "path", edited)
    config = json.loads((edited / "path_config.json").read_text())
    config["modality"] = "sonar"
    del config["modality_spec"]
    (edited / "path_config.json").write_text(json.dumps(config))
    fresh = CodeBindModel.from_pretrained(world / "base")
    with pytest.raises(ValueError, match=r"modality 'sonar', which is none of the known ones, and its path_config.json "
                                         r"carries no 'modality_spec'"):
        fresh.load_path(edited)
    assert fresh.list_paths() == [] and "sonar" not in fresh.towers


def test_a_base_lacking_a_bridge_refuses_the_path_and_is_left_as_it_was(world, trained):
    fresh = CodeBindModel.from_pretrained(world / "base")
    fresh.remove_modality("vision")
    with pytest.raises(ValueError, match=r"bridges \['text', 'vision'\] need towers \['vision'\] that this base model lacks"):
        fresh.load_path(trained / "path")
    assert "radar" not in fresh.towers and "radar" not in fresh.config.modalities and fresh.list_paths() == []


def test_a_base_with_its_own_other_radar_refuses_the_path(world, trained):
    fresh = CodeBindModel.from_pretrained(world / "base")
    fresh.add_modality("radar", {**radar_spec(), "tower": {"family": "hf", "backbone": {**TINY_VIT, "hidden_size": 64}}})
    with pytest.raises(ValueError, match="has its own 'radar' modality, with another spec"):
        fresh.load_path(trained / "path")
    assert fresh.towers["radar"].hidden_size == 64 and fresh.list_paths() == []


def test_a_changed_bridge_is_caught_by_the_fingerprint(world, trained):
    fresh = CodeBindModel.from_pretrained(world / "base")
    with torch.no_grad():
        next(fresh.towers["vision"].parameters()).add_(0.5)
    with pytest.raises(ValueError, match="Base model mismatch"):
        fresh.load_path(trained / "path")
    assert "radar" not in fresh.towers


@pytest.mark.parametrize(
    "name, spec, message",
    [
        ("image", radar_spec(), "'image' is an alias of the vision modality"),
        ("audio", radar_spec(), "already has a 'audio' modality"),
        ("label", radar_spec(), "keyword of the processor or the trainer's data.columns"),
        ("radar", {**radar_spec(), "input_key": "pixel_values"}, "input_key 'pixel_values' must be an identifier"),
        ("radar", {**radar_spec(), "input_key": "attention_mask"}, "input_key 'attention_mask' must be"),
        ("radar", {"tower": {"family": "hf", "backbone": TINY_VIT}}, "needs the shape of one sample"),
        ("radar", {**radar_spec(), "sample_shape": [2, 64, 32]}, r"spec sample_shape \(2, 64, 32\), processor output "
                                                                 r"\(2, 64, 64\), tower input \(2, 64, 64\)"),
        ("radar", {**radar_spec(), "processor": CodeBindArraySensorFeatureExtractor(modality="radar", shape=[2, 32, 32])},
         r"processor output \(2, 32, 32\), tower input \(2, 64, 64\)"),
        ("radar", {**radar_spec(), "processor": CodeBindArraySensorFeatureExtractor(modality="lidar", shape=[2, 64, 64])},
         "writes 'lidar_values', but the modality's input key is 'radar_values'"),
        ("radar", {**radar_spec(), "tower": {"family": "clip"}}, r"\['family'\] must be one of"),
        ("radar", {**radar_spec(), "channels": 2}, "Unknown modalities\\['radar'\\] spec keys 'channels'"),
    ],
)
def test_add_modality_refuses_clashes_and_mismatches_and_leaves_the_model_as_it_was(world, name, spec, message):
    model = CodeBindModel.from_pretrained(world / "base")
    before = (sorted(model.towers), dict(model.config.modalities))
    with pytest.raises((ValueError, TypeError), match=message):
        model.add_modality(name, spec)
    assert (sorted(model.towers), dict(model.config.modalities)) == before


def test_a_defined_modality_works_in_forward_features_config_and_processor(tmp_path):
    model = CodeBindModel(CodeBindConfig(modalities={"radar": radar_spec(mean=[3.0, -1.0], std=[2.0, 0.5])},
                                         bridges=[], embed_dim=32, specific_dim=32)).eval()
    processor = CodeBindProcessor().add_modality("radar", model.modality_processor("radar"))
    x = processor(radar=radar_maps(2, seed=3))["radar_values"]
    as_numpy = processor(radar=radar_maps(2, seed=3), common_kwargs={"return_tensors": "np"})["radar_values"]
    assert isinstance(as_numpy, np.ndarray) and np.array_equal(as_numpy, x.numpy())  # transformers' kwargs groups
    with torch.no_grad():
        out = model(radar_values=x, output_hidden_states=True)
        torch.testing.assert_close(out.shared_embeds["radar"], model.get_features("radar", x, quantize=False))
        assert out.modality_model_outputs["radar"].last_hidden_state.shape == (2, 17, 32)  # CLS + 16 patches
    with pytest.raises(TypeError, match="unexpected keyword argument 'sonar_values'"):
        model(sonar_values=x)
    with pytest.raises(ValueError, match=r"radar inputs must be \(batch, 2, 64, 64\)"):
        model.get_features("radar", torch.randn(2, 2, 64, 32))
    with pytest.raises(ValueError, match="Unknown modality 'sonar'"):
        model.get_features("sonar", x)
    with pytest.raises(TypeError, match=r"CodeBindProcessor got un.*\['sonar'\]"):  # a name without its component
        processor(sonar=radar_maps(1, seed=3), text="a car ahead")
    with pytest.raises(ValueError, match="1 NaN values"):
        processor(radar=[np.where(np.arange(2 * 64 * 64).reshape(2, 64, 64) == 5, np.nan, 1.0)])
    # saved and loaded back: the spec (processor included) is in config.json, the component in processor_config.json
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    loaded = CodeBindModel.from_pretrained(tmp_path / "m").eval()
    again = CodeBindProcessor.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(again(radar=radar_maps(2, seed=3))["radar_values"], x, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_features("radar", x, quantize=False), model.get_features("radar", x, quantize=False))
    # a hand-edited config with a bare tower under a new name is still a typo, not a modality
    with pytest.raises(ValueError, match="Unknown modality 'sonar'.*needs its spec"):
        CodeBindConfig(modalities={"sonar": {"family": "hf", "backbone": TINY_VIT}})


def test_two_processes_train_the_radar_path_to_identical_weights(world, tmp_path):
    """The new sensor under ``accelerate launch`` (2 gloo processes), as the known modalities train."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    dump = tmp_path / "dump"
    config = _run_config(world, "ddp", training__max_train_steps=4, training__checkpointing_steps=4,
                         training__dump_state_dir=str(dump))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(29800 + os.getpid() % 1000), "-m", "codebind_hf.training.train_path",
               "--config", str(config), "--set", "training.per_device_batch_size=2"]  # fmt: skip
    # accelerate 1.x's --cpu runs a single process; --multi_gpu with ACCELERATE_USE_CPU gives gloo processes.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(str(dump / f"state-rank{r}.safetensors")) for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1]) and any(k.startswith("towers.radar.") for k in ranks[0])
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
    assert bool(ranks[0]["quantizers.radar.shared.initialized"])  # k-means ran on both ranks alike
    loaded = CodeBindModel.from_pretrained(world / "base")
    loaded.load_path(world / "ddp" / "path")
    assert "radar" in loaded.towers
