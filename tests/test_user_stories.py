"""The package's user stories end to end, each step in a fresh process as a user (or a colleague) runs it.

(a) convert the tiny ImageBind fixture with the console script, then embed every ImageBind modality with the
    processor; (b) ``codebind-train --push_to_hub`` a LoRA depth path (full model saved too, as by default), then a
    colleague with a fresh base from the Hub loads the pushed path and gets the trainer's embeddings exactly;
(c) ``codebind-bench`` on the model folder the trainer wrote, with no files added.

The world (tests/user_world.py) is shared with the doc-block tests: one conversion per session.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codebind_hf import CodeBindModel, CodeBindProcessor
from codebind_hf.adapters.paths import base_model_fingerprint
from codebind_hf.convert.imagebind import convert_imagebind_checkpoint
from user_world import BASE_REPO, depth_maps

PATH_REPO = "your-org/story-depth-path"
MODEL_REPO = "your-org/story-depth-model"
TEXTS = ["a dog", "a red car on the road"]

EMBED_EVERY_MODALITY = """
import numpy as np
from safetensors.torch import save_file
from codebind_hf import CodeBindModel, CodeBindProcessor

model = CodeBindModel.from_pretrained("./codebind-ib-base").eval()
processor = CodeBindProcessor.imagebind()
batch = processor(text={texts!r}, images=["dog.jpg", "car.jpg"], audio=["dog.wav", "car.wav"],
                  depth=list(np.load("depth.npy")), thermal=["thermal.png", "thermal2.png"], imu=list(np.load("imu.npy")))
keys = {{"text": "input_ids", "vision": "pixel_values", "audio": "audio_values", "depth": "depth_values",
         "thermal": "thermal_values", "imu": "imu_values"}}
out = {{m: model.get_features(m, batch[k], part="shared", quantize=False).contiguous() for m, k in keys.items()}}
save_file(out, "embeddings.safetensors")
"""

COLLEAGUE = """
import numpy as np
from safetensors.torch import save_file
from codebind_hf import CodeBindModel, CodeBindProcessor

base = CodeBindModel.from_pretrained({base!r}).eval()      # a fresh base, from the Hub
assert base.load_path({path!r}) == "depth"                  # the path the trainer pushed
full = CodeBindModel.from_pretrained({model!r}).eval()      # the full model the trainer pushed
batch = CodeBindProcessor.imagebind()(text={texts!r}, depth=list(np.load("depth.npy")))
out = {{}}
for name, model in (("path", base), ("full", full)):
    out[name + ".depth"] = model.get_features("depth", batch["depth_values"], part="concat")
    out[name + ".text"] = model.get_features("text", batch["input_ids"], path="depth")
save_file({{k: v.contiguous() for k, v in out.items()}}, "colleague.safetensors")
"""


@pytest.fixture(scope="module")
def inputs(user_world):
    np.save(user_world.root / "depth.npy", depth_maps(2))
    np.save(user_world.root / "imu.npy", np.random.default_rng(6).standard_normal((2, 6, 1200)).astype(np.float32))
    return user_world


@pytest.fixture(scope="module")
def trained_run(inputs):
    """``codebind-train`` of a depth LoRA path on the converted base, pushing the path and the full model."""
    world = inputs
    world.run(["codebind-train", "--config", "sun_d", "--dataset", "./sun-rgbd", "--output_dir", "runs/story-depth",
               "--max_train_steps", "2", "--report_to", "none", "--push_to_hub",
               "--set", f"training.hub_path_repo_id={PATH_REPO}", "--set", f"training.hub_model_id={MODEL_REPO}",
               "--set", "training.per_device_batch_size=4", "--set", "data.repeat=1", "--set", "data.num_workers=0",
               "--set", "path.reconstruction=false",
               "--set", "codebooks.kmeans_init_batches=1"])
    return world.root / "runs" / "story-depth"


def test_a_convert_then_embed_every_modality_with_the_processor(inputs):
    world = inputs
    world.run_python(EMBED_EVERY_MODALITY.format(texts=TEXTS), "embed_every_modality")
    embedded = load_file(world.root / "embeddings.safetensors")
    # The same checkpoint converted in this process, the same files through the same processor.
    reference = convert_imagebind_checkpoint(world.root / "imagebind_tiny.pth", world.root / "imagebind_tiny.json")
    batch = CodeBindProcessor.imagebind()(
        text=TEXTS, images=[str(world.root / f) for f in ("dog.jpg", "car.jpg")],
        audio=[str(world.root / f) for f in ("dog.wav", "car.wav")], depth=list(np.load(world.root / "depth.npy")),
        thermal=[str(world.root / f) for f in ("thermal.png", "thermal2.png")], imu=list(np.load(world.root / "imu.npy")))
    keys = {"text": "input_ids", "vision": "pixel_values", "audio": "audio_values", "depth": "depth_values",
            "thermal": "thermal_values", "imu": "imu_values"}
    assert sorted(embedded) == sorted(keys)
    with torch.no_grad():
        for modality, key in keys.items():
            expected = reference.get_features(modality, batch[key], part="shared", quantize=False)
            assert embedded[modality].shape == (2, 32)
            torch.testing.assert_close(embedded[modality], expected, rtol=0, atol=1e-6)
            # two different inputs give two different unit vectors
            assert torch.allclose(embedded[modality].norm(dim=-1), torch.ones(2), atol=1e-5)
            assert not torch.allclose(embedded[modality][0], embedded[modality][1], atol=1e-3)


def test_b_trained_path_pushed_to_the_hub_loads_into_a_colleagues_fresh_base(trained_run, inputs, hub_server, tmp_path):
    world = inputs
    local_path = trained_run / "path"
    world.run_python(COLLEAGUE.format(base=BASE_REPO, path=PATH_REPO, model=MODEL_REPO, texts=TEXTS), "colleague",
                     hf_home=tmp_path / "colleague-hf-home")
    colleague = load_file(world.root / "colleague.safetensors")

    # What the trainer wrote locally, on the local base: the colleague's embeddings are these (another process may
    # sum in another order, hence 1e-6 rather than bit equality).
    base = CodeBindModel.from_pretrained(world.root / "codebind-ib-base").eval()
    base.load_path(local_path)
    batch = CodeBindProcessor.imagebind()(text=TEXTS, depth=list(np.load(world.root / "depth.npy")))
    with torch.no_grad():
        depth = base.get_features("depth", batch["depth_values"], part="concat")
        text = base.get_features("text", batch["input_ids"], path="depth")
    torch.testing.assert_close(colleague["path.depth"], depth, rtol=0, atol=1e-6)
    torch.testing.assert_close(colleague["path.text"], text, rtol=0, atol=1e-6)
    # The full model has LoRA merged into the tower: the same embeddings up to float rounding.
    torch.testing.assert_close(colleague["full.depth"], depth, rtol=0, atol=1e-5)
    torch.testing.assert_close(colleague["full.text"], text, rtol=0, atol=1e-5)

    # The pushed path is the local artifact: LoRA settings kept, the fingerprint of the unmerged base as published.
    pushed = hub_server.commits(PATH_REPO)[-1].files
    assert pushed["path.safetensors"] == (local_path / "path.safetensors").read_bytes()
    config = json.loads(pushed["path_config.json"])
    assert config == json.loads((local_path / "path_config.json").read_text())
    assert config["lora"] == {"r": 4, "lora_alpha": 4, "last_n_blocks": 2, "dropout": 0.0}
    assert config["base_model"]["fingerprint"] == base_model_fingerprint(
        CodeBindModel.from_pretrained(world.root / "codebind-ib-base"), "depth", config["path"])
    assert any(".lora_A." in k for k in load_file(local_path / "path.safetensors"))


def test_push_to_hub_without_a_repo_is_refused_before_training():
    from codebind_hf.training.config import TrainConfig

    with pytest.raises(ValueError, match="push_to_hub needs training.hub_path_repo_id .* and/or training.hub_model_id"):
        TrainConfig.from_dict({"model": {"name_or_path": "./codebind-ib-base"}, "path": {"target": "depth"},
                               "training": {"push_to_hub": True}})


def test_c_bench_runs_on_the_model_folder_the_trainer_wrote_with_no_extra_files(trained_run, inputs):
    world, model_dir = inputs, trained_run / "model"
    before = sorted(p.name for p in model_dir.iterdir())
    assert {"config.json", "model.safetensors", "processor_config.json", "vocab.json", "merges.txt"} <= set(before)
    done = world.run(["codebind-bench", "--model", "runs/story-depth/model", "--benchmarks", "nyu_d,sun_d",
                      "--data-root", "benchmarks", "--templates", "identity", "--output-dir", "runs/story-bench"])
    results = json.loads((world.root / "runs" / "story-bench" / "results.json").read_text())
    assert sorted(results["results"]) == ["nyu_d", "sun_d"]
    for name in ("nyu_d", "sun_d"):
        accuracy = results["results"][name]["accuracy@1"]
        assert 4 * accuracy == int(4 * accuracy) and 0 <= accuracy <= 1  # 4 items per split
    assert "| NYU-D | accuracy@1 |" in done.stdout
    assert sorted(p.name for p in model_dir.iterdir()) == before  # nothing added to the model folder


def test_converter_saves_the_processor_and_bench_names_what_to_save_without_one(inputs, tmp_path):
    from codebind_hf.evaluation.cli import build_parser, run
    from codebind_hf.evaluation.loop import BenchmarkConfigError

    world = inputs
    converted = world.root / "codebind-ib-base"
    assert CodeBindProcessor.from_pretrained(converted).to_dict() == CodeBindProcessor.imagebind().to_dict()
    CodeBindModel.from_pretrained(converted).save_pretrained(tmp_path / "bare")  # a model folder without a processor
    args = build_parser().parse_args(["--model", str(tmp_path / "bare"), "--benchmarks", "nyu_d",
                                      "--data-root", str(world.root / "benchmarks"), "--output-dir", str(tmp_path)])
    with pytest.raises(BenchmarkConfigError, match=r"no processor in .*bare \(processor_config.json\): save the model's "
                                                   r"processor beside it, e\.g\. CodeBindProcessor\.imagebind\(\)"):
        run(args)
