"""`codebind-convert-official` on the released CodeBind code's own experiment folders (tests/fixtures/
codebind_official_tiny: an audio and a depth path on the tiny ImageBind base): the converted model and its path
artifacts reproduce the authors' embeddings, quantised parts and code indices; refusals name the file."""

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from codebind_hf import CodeBindModel
from codebind_hf.adapters.paths import base_model_fingerprint
from codebind_hf.convert.imagebind import convert_imagebind_checkpoint
from codebind_hf.convert.official import convert_official_experiments, main, push_official_conversion
from codebind_hf.processing_codebind import CodeBindProcessor

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "codebind_official_tiny"
BASE = FIXTURES / "imagebind_tiny" / "imagebind_tiny.pth"
KWARGS = json.loads((FIXTURES / "imagebind_tiny" / "config.json").read_text())["constructor_kwargs"]
IO = load_file(OFFICIAL / "io.safetensors")
_IB = load_file(FIXTURES / "imagebind_tiny" / "io.safetensors")
INPUTS = {"audio": _IB["input.audio"], "depth": _IB["input.depth"], "vision": _IB["input.vision"], "text": IO["input.text"]}
PATHS = ("audio", "depth")
TOKEN = "hf_secretTOKEN0123456789abcdef"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The fixture's release.tar.xz extracted: ``<root>/release/exp/<path>_lora_MVQ32x8_16x8/``."""
    root = tmp_path_factory.mktemp("official")
    with tarfile.open(OFFICIAL / "release.tar.xz") as archive:
        archive.extractall(root, filter="data")
    return root / "release" / "exp"


def _experiment(release, path):
    return release / f"{path}_lora_MVQ32x8_16x8"


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    """The console script's output folder for both experiments."""
    out = tmp_path_factory.mktemp("converted") / "codebind-official"
    argv = ["--base", str(BASE), "--imagebind-config", json.dumps(KWARGS), "--output", str(out)]
    for path in PATHS:
        argv += ["--experiment", str(_experiment(release, path))]
    assert main(argv) == 0
    return out


def _check_reproduces_the_authors_outputs(model, path):
    """Every output of path ``path`` for its target, vision and text: quantised parts to 1e-5, the unquantised embedding
    and its slices to 1e-5, every code index exactly."""
    assert 49407 not in IO["input.text"][1]  # a text past 76 tokens has no EOT: its EOS pooling takes position 0
    with torch.no_grad():
        for modality in (path, "vision", "text"):
            key, x = f"output.{path}_path.{modality}.", INPUTS[modality]
            parts = ("shared",) if modality == "text" else ("shared", "specific", "concat")
            for part, expected in zip(parts, ("shared_q", "specific_q", "concat_q")):
                got = model.get_features(modality, x, path=path, part=part)
                assert (got - IO[key + expected]).abs().max() < 1e-5, (path, modality, part)
            unit = {"shared": IO[key + "shared"], "specific": IO.get(key + "specific"), "concat": IO[key + "embed"]}
            for part in parts:
                got = model.get_features(modality, x, path=path, part=part, quantize=False)
                assert (got - F.normalize(unit[part], dim=-1)).abs().max() < 1e-5, (path, modality, part)
            # what the codebooks quantise: the authors' embedding slices themselves (audio: the mean of 3 clips)
            clips = x.shape[1] if model.towers[modality].split_clips(x) else 1
            pooled, _ = model.tower_outputs(modality, x.flatten(0, 1) if clips > 1 else x, path=path)
            encoding, _ = model.encode_tower_outputs(modality, path, pooled, clips=clips)
            assert (encoding.shared_z - IO[key + "shared"]).abs().max() < 1e-5, (path, modality)
            assert torch.equal(encoding.shared_q.indices, IO[key + "shared_codes"]), (path, modality)
            if modality == "text":
                assert (encoding.shared_z - IO[key + "embed"]).abs().max() < 1e-5
                continue
            assert (encoding.specific_z - IO[key + "specific"]).abs().max() < 1e-5, (path, modality)
            assert (torch.cat([encoding.shared_z, encoding.specific_z], -1) - IO[key + "embed"]).abs().max() < 1e-5
            assert torch.equal(encoding.specific_q.indices, IO[key + "specific_codes"]), (path, modality)


@pytest.mark.parametrize("path", PATHS)
def test_the_converted_model_folder_reproduces_the_authors_outputs(converted, path):
    model = CodeBindModel.from_pretrained(converted).eval()
    assert model.list_paths() == ["audio", "depth"] and model.decoder is None
    _check_reproduces_the_authors_outputs(model, path)


def test_the_vision_embedding_is_each_paths_own(converted):
    model = CodeBindModel.from_pretrained(converted).eval()
    vision = {p: model.get_features("vision", INPUTS["vision"], path=p, quantize=False) for p in PATHS}
    assert (vision["audio"] - vision["depth"]).abs().max() > 0.1  # the authors' paths fine-tune their own heads
    base = convert_imagebind_checkpoint(BASE, KWARGS).eval()
    for name, tensor in base.state_dict().items():  # the bridges of the base are untouched
        if name.startswith(("towers.vision.", "towers.text.", "shared_heads.vision.", "shared_heads.text.")):
            assert torch.equal(model.state_dict()[name], tensor), name


def test_the_output_folder_holds_the_model_its_processor_and_each_path(converted):
    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "paths"} <= names
    assert CodeBindProcessor.from_pretrained(converted).tokenizer is not None  # the processor beside the model
    assert sorted(p.name for p in (converted / "paths").iterdir()) == ["audio", "depth"]
    plain = convert_imagebind_checkpoint(BASE, KWARGS)
    for path, blocks in (("audio", 1), ("depth", 2)):
        folder = converted / "paths" / path
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "path.safetensors", "path_config.json"]
        recorded = json.loads((folder / "path_config.json").read_text())
        settings = recorded["path"]
        assert recorded["lora"] == {"r": 2, "lora_alpha": 2, "last_n_blocks": blocks, "dropout": 0.0}  # kept, scale 1
        assert set(settings["variants"].values()) == {"official"} and settings["bridges"] == ["vision", "text"]
        assert settings["specific_dims"] == {"audio": {"audio": 24, "vision": 24}, "depth": {"depth": 16, "vision": 24}}[path]
        assert settings["quantizer"] == {"shared_codebook_size": 32, "specific_codebook_size": 16, "codevector_dim": 8,
                                         "specific_codevector_dims": {}}
        weights = {"audio": (50.0, 1.0, 0.05), "depth": (1000.0, 0.1, 0.07)}[path]  # their loss_vq / cmcm, temperature
        assert (settings["loss_weights"]["vq"], settings["loss_weights"]["cm"], settings["temperature"]) == weights
        assert settings["loss_weights"]["ctr"] == settings["loss_weights"]["cuni"] == 0.01
        assert settings["loss_weights"]["orth"] == 0.0  # their einsum cannot pair widths 24/16 with 32 (warned)
        assert recorded["base_model"]["fingerprint"] == base_model_fingerprint(plain, path, settings)
        assert any(".lora_A." in k for k in recorded["shapes"]) and f"path_owned.{path}.towers.vision.cls_token" in recorded["shapes"]
    # the model folder has LoRA merged: plain tower keys only
    assert not [k for k in load_file(converted / "model.safetensors") if "lora_" in k or "base_layer" in k]


def test_the_path_artifacts_load_onto_the_plain_imagebind_base_and_round_trip(converted, tmp_path):
    base = convert_imagebind_checkpoint(BASE, KWARGS).eval()
    for path in PATHS:
        assert base.load_path(converted / "paths" / path) == path
    for path in PATHS:
        _check_reproduces_the_authors_outputs(base, path)
    fresh = convert_imagebind_checkpoint(BASE, KWARGS).eval()
    for path in PATHS:
        fresh.load_path(base.save_path(path, tmp_path / path))
    with torch.no_grad():
        for path in PATHS:
            for modality in (path, "vision"):
                assert torch.equal(fresh.get_features(modality, INPUTS[modality], path=path, part="concat"),
                                   base.get_features(modality, INPUTS[modality], path=path, part="concat"))


def test_the_model_folder_round_trips_through_save_and_from_pretrained(converted, tmp_path):
    model = CodeBindModel.from_pretrained(converted).eval()
    model.save_pretrained(tmp_path / "again")
    again = CodeBindModel.from_pretrained(tmp_path / "again").eval()
    assert again.config.paths == model.config.paths
    state = again.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_the_lora_factors_are_read_from_last_as_the_authors_loader_does(release, tmp_path):
    experiment = tmp_path / "audio"
    shutil.copytree(_experiment(release, "audio"), experiment)
    checkpoints = experiment / "checkpoints"
    shutil.copy(checkpoints / "imagebind-lora-audio_best.safetensors", checkpoints / "imagebind-lora-audio_last.safetensors")
    model = convert_official_experiments(BASE, KWARGS, [experiment])
    with torch.no_grad():
        got = model.get_features("audio", INPUTS["audio"], path="audio", part="concat", quantize=False)
    expected = IO["diagnostic.audio_path.audio.embed_if_lora_best"]
    assert (got - F.normalize(expected, dim=-1)).abs().max() < 1e-5
    assert (expected - IO["output.audio_path.audio.embed"]).abs().max() > 1e-3  # _best and _last differ


def _edit(release, tmp_path, change, path="audio"):
    """A copy of one experiment folder with ``change(checkpoints_dir, cfg)`` applied (cfg written back)."""
    import yaml

    experiment = tmp_path / path
    shutil.copytree(_experiment(release, path), experiment)
    cfg = yaml.safe_load((experiment / "cfg_all_train.yaml").read_text())
    change(experiment / "checkpoints", cfg)
    (experiment / "cfg_all_train.yaml").write_text(yaml.safe_dump(cfg))
    return experiment


def _resave(file, mutate):
    state = torch.load(file, weights_only=True)
    mutate(state)
    torch.save(state, file)


def _set(cfg, dotted, value):
    *parents, leaf = dotted.split(".")
    for key in parents:
        cfg = cfg[key]
    cfg[leaf] = value


@pytest.mark.parametrize("change, error, message", [
    (lambda d, c: (d / "imagebind-heads-vision_best.pth").unlink(), FileNotFoundError,
     r"lacks \['imagebind-heads-vision_best.pth'\]"),
    (lambda d, c: (d / "imagebind-lora-audio_last.safetensors").unlink(), FileNotFoundError,
     r"lacks \['imagebind-lora-audio_last.safetensors'\]"),
    (lambda d, c: (d / "imagebind-trunks-audio_best.pth").write_bytes(b""), ValueError,
     r"holds files this converter does not know: \['imagebind-trunks-audio_best.pth'\]"),
    (lambda d, c: (d / "imagebind-heads_mvq-vision_best.pth").write_bytes(b"not a pickle"), ValueError,
     "imagebind-heads_mvq-vision_best.pth could not be read as a state dict"),
    (lambda d, c: _resave(d / "imagebind-heads_mvq-vision_best.pth", lambda s: s.update({"1.weight": torch.zeros(16, 64)})),
     ValueError, r"Shape mismatches .*specific_heads.audio.vision.proj.weight: checkpoint \(16, 64\) vs model \(24, 64\)"),
    (lambda d, c: _resave(d / "imagebind-heads-vision_best.pth", lambda s: s.update({"2.bias": torch.zeros(32)})),
     ValueError, r"no place for: \['path_owned.audio.shared_heads.vision.proj.bias'\] .*imagebind-heads-vision_best.pth: 2.bias"),
    (lambda d, c: _resave(d / "imagebind-preprocessors-vision_best.pth",
                          lambda s: s["pos_embedding_helper.pos_embed"].add_(1.0)), ValueError,
     "imagebind-preprocessors-vision_best.pth: pos_embedding_helper.pos_embed differs from the base checkpoint's"),
    (lambda d, c: _resave(d / "imagebind-vector_quantise-_best.pth",
                          lambda s: s["mvq_dict.vision.initted"].zero_()), ValueError,
     "imagebind-vector_quantise-_best.pth: codebook 'vision' has initted = 0"),
    (lambda d, c: _resave(d / "imagebind-vector_quantise-_best.pth", lambda s: s.pop("mvq_dict.audio.embed_prob")),
     ValueError, r"lacks: \['quantizers.audio.specific.audio.usage_ema'\]"),
    (lambda d, c: _set(c, "vector_quantise.seg_type", 2), ValueError, "vector_quantise.seg_type is 2; this converter reads"),
    (lambda d, c: _set(c, "train_mode", "fulltune"), ValueError, "train_mode is 'fulltune'"),
    (lambda d, c: _set(c, "lora_layer_idxs_audio", [0]), ValueError, r"lora_layer_idxs_audio=\[0\] are not the last blocks"),
    (lambda d, c: _set(c, "encoder.output_embed_dim.vision", 16), ValueError, "encoder.output_embed_dim.vision and"),
])
def test_bad_experiment_folders_are_refused_naming_the_file(release, tmp_path, change, error, message):
    experiment = _edit(release, tmp_path, change)
    with pytest.raises(error, match=message):
        convert_official_experiments(BASE, KWARGS, [experiment])


def test_other_refusals(release, tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg_all_train.yaml not found"):
        convert_official_experiments(BASE, KWARGS, [tmp_path])
    with pytest.raises(ValueError, match=r"two experiments train the same target: \['audio', 'audio'\]"):
        convert_official_experiments(BASE, KWARGS, [_experiment(release, "audio")] * 2)
    # another base: the preprocessors the experiment kept frozen are not this checkpoint's
    other = tmp_path / "other.pth"
    state = torch.load(BASE, weights_only=True)
    state["modality_preprocessors.vision.rgbt_stem.proj.1.weight"] = state["modality_preprocessors.vision.rgbt_stem.proj.1.weight"] * 2
    torch.save(state, other)
    with pytest.raises(ValueError, match="rgbt_stem.proj.1.weight differs from the base checkpoint's"):
        convert_official_experiments(other, KWARGS, [_experiment(release, "audio")])
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.bin").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files"):
        main(["--base", str(BASE), "--imagebind-config", json.dumps(KWARGS), "--experiment",
              str(_experiment(release, "depth")), "--output", str(out)])
    assert (out / "notes.bin").read_text() == "mine"


def test_push_to_hub_sends_the_model_and_each_path(hub, release, converted):
    model = CodeBindModel.from_pretrained(converted)
    push_official_conversion(model, CodeBindProcessor.from_pretrained(converted), converted, "org/cb-official", token=TOKEN)
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub.commits("org/cb-official")[-1].files)
    for path in PATHS:
        assert set(hub.commits(f"org/cb-official-{path}")[-1].files) >= {"path_config.json", "path.safetensors"}
    base = convert_imagebind_checkpoint(BASE, KWARGS).eval()
    assert base.load_path("org/cb-official-depth") == "depth"
    with torch.no_grad():
        got = base.get_features("depth", INPUTS["depth"], path="depth", part="concat")
    assert (got - IO["output.depth_path.depth.concat_q"]).abs().max() < 1e-5
