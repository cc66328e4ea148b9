"""Modality path artifacts on disk: save/load into a fresh base model, refusals, integrity, atomic writes."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from codebind_hf import CodeBindModel
from codebind_hf.adapters import io as artifact_io
from codebind_hf.adapters.io import file_sha256
from codebind_hf.adapters.lora import add_lora
from codebind_hf.adapters.paths import base_model_fingerprint, base_model_weights
from tiny_models import BERT, VIT, tiny_config

DEPTH = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))
TEXT = torch.randint(1, 99, (2, 5), generator=torch.Generator().manual_seed(6))


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    CodeBindModel(tiny_config(decoder=False, paths={})).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _trained_path(base_dir, mode="lora", seed=1):
    """A base model with a depth path whose LoRA (or tower), heads and codebooks differ from a fresh one."""
    model = CodeBindModel.from_pretrained(base_dir)
    model.add_path("depth", {"bridges": ["text", "vision"], "lora_last_n_blocks": 1, "mode": mode})
    if mode == "lora":
        add_lora(model, "depth")
    generator = torch.Generator().manual_seed(seed)
    trained = ("lora_", "specific_heads.depth", "shared_heads.depth") + (("towers.depth",) if mode == "fulltune" else ())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(trained) or "lora_" in name:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    for book in model.quantizers["depth"].codebooks().values():  # a trained path has all its codebooks trained
        book.kmeans_init_(torch.randn(64, 32, generator=generator), iters=2)
    return model.eval()


def _features(model):
    return {part: model.get_features("depth", DEPTH, part=part) for part in ("shared", "specific", "concat")} | {
        "text": model.get_features("text", TEXT, path="depth")
    }


def _rewrite_weights(folder, mutate):
    """Change path.safetensors and keep path_config.json consistent with it (a well-formed but wrong artifact)."""
    state = load_file(folder / "path.safetensors")
    mutate(state)
    save_file(state, folder / "path.safetensors")
    config = json.loads((folder / "path_config.json").read_text())
    config["shapes"] = {k: list(v.shape) for k, v in state.items()}
    config["weights_sha256"] = file_sha256(folder / "path.safetensors")
    (folder / "path_config.json").write_text(json.dumps(config))


def test_saved_path_loads_into_a_fresh_base_with_identical_embeddings(base_dir, tmp_path):
    trained = _trained_path(base_dir)
    folder = trained.save_path("depth", tmp_path / "path")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "path.safetensors", "path_config.json"]
    config = json.loads((folder / "path_config.json").read_text())
    assert config["modality"] == "depth" and config["path"]["bridges"] == ["text", "vision"]
    assert config["lora"] == {"r": 4, "lora_alpha": 4, "last_n_blocks": 1, "dropout": 0.0}  # alpha = rank: scale 1
    assert config["base_model"] == {"name_or_path": str(base_dir), "revision": None,
                                    "fingerprint": base_model_fingerprint(trained, "depth")}
    assert config["dims"] == {"embed_dim": 32, "specific_dim": 32, "tower_hidden_size": 32}
    assert config["quantizer"]["shared_codebook_size"] == 64 and config["library_version"]
    keys = set(load_file(folder / "path.safetensors"))
    assert keys == set(config["shapes"])
    # Only the path: codebooks, heads, logit scale, LoRA; no frozen tower weight, no decoder.
    assert all(k.startswith(("quantizers.depth.", "specific_heads.depth.", "shared_heads.depth.", "logit_scales.depth."))
               or (k.startswith("towers.depth.") and "lora_" in k) for k in keys)
    assert {k for k in keys if "lora_" in k} and {"specific_heads.depth.vision.proj.weight"} <= keys
    assert (folder / "path.safetensors").stat().st_size < 0.5 * (base_dir / "model.safetensors").stat().st_size

    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    assert fresh.list_paths() == [] and "depth" not in fresh.config.paths
    assert fresh.load_path(folder) == "depth"
    assert fresh.list_paths() == ["depth"] and fresh.config.paths["depth"] == trained.config.paths["depth"]
    expected, got = trained.path_state_dict("depth"), fresh.path_state_dict("depth")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    want, have = _features(trained), _features(fresh)
    for name in want:
        assert torch.equal(have[name], want[name]), name


def test_remove_path_gives_back_the_plain_base_model(base_dir, tmp_path):
    _trained_path(base_dir).save_path("depth", tmp_path / "path")
    plain = CodeBindModel.from_pretrained(base_dir).eval()
    model = CodeBindModel.from_pretrained(base_dir).eval()
    model.load_path(tmp_path / "path")
    assert not torch.equal(model.get_features("depth", DEPTH, quantize=False), plain.get_features("depth", DEPTH, quantize=False))
    model.remove_path("depth")
    assert model.list_paths() == [] and "depth" not in model.config.paths and "depth" not in model.lora_settings
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert torch.equal(model.get_features("depth", DEPTH, quantize=False), plain.get_features("depth", DEPTH, quantize=False))
    with pytest.raises(KeyError, match="No path 'depth' loaded"):
        model.remove_path("depth")


def test_fulltune_path_carries_the_tower_and_remove_restores_it(base_dir, tmp_path):
    trained = _trained_path(base_dir, mode="fulltune")
    folder = trained.save_path("depth", tmp_path / "full")
    keys = set(load_file(folder / "path.safetensors"))
    tower_keys = {k for k in trained.state_dict() if k.startswith("towers.depth.")}
    assert tower_keys and tower_keys <= keys and "depth" not in getattr(trained, "lora_settings", {})
    plain = CodeBindModel.from_pretrained(base_dir).eval()
    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    fresh.load_path(folder)
    assert torch.equal(fresh.get_features("depth", DEPTH, part="concat"), trained.get_features("depth", DEPTH, part="concat"))
    fresh.remove_path("depth")
    assert torch.equal(fresh.get_features("depth", DEPTH, quantize=False), plain.get_features("depth", DEPTH, quantize=False))


def test_other_base_model_dims_quantizer_and_missing_towers_are_refused(base_dir, tmp_path):
    _trained_path(base_dir).save_path("depth", tmp_path / "path")
    torch.manual_seed(123)
    other = CodeBindModel(tiny_config(decoder=False, paths={}))
    mismatch = rf"Base model mismatch: the path was trained on '{base_dir}' \(fingerprint [0-9a-f]{{12}}…\), this model is '' "
    with pytest.raises(ValueError, match=mismatch + r"\(fingerprint [0-9a-f]{12}…\)"):
        other.load_path(tmp_path / "path")
    assert other.list_paths() == [] and other.config.paths == {}  # nothing half-loaded

    wide = CodeBindModel(tiny_config(decoder=False, paths={}, embed_dim=64, specific_dim=64))
    with pytest.raises(ValueError, match="Dimension mismatch: embed_dim: the path has 32, this base model has 64; "
                                         "specific_dim: the path has 32, this base model has 64"):
        wide.load_path(tmp_path / "path")
    books = {"shared_codebook_size": 128, "specific_codebook_size": 32}
    bigger_books = CodeBindModel(tiny_config(decoder=False, paths={}, quantizer=books))
    with pytest.raises(ValueError, match="Quantizer settings differ: shared_codebook_size: the path has 64, this base model has 128"):
        bigger_books.load_path(tmp_path / "path")

    no_depth = CodeBindModel(tiny_config(decoder=False, paths={}, modalities={"text": {"family": "hf", "backbone": BERT},
                                                                          "vision": {"family": "hf", "backbone": VIT}}))
    no_tower = r"The path is for modality 'depth', but this base model has no depth tower \(it has \['text', 'vision'\]\)"
    with pytest.raises(ValueError, match=no_tower):
        no_depth.load_path(tmp_path / "path")
    no_vision = CodeBindModel(tiny_config(decoder=False, paths={}, bridges=["text"], modalities={
        "text": {"family": "hf", "backbone": BERT}, "depth": {"family": "hf", "backbone": {**VIT, "num_channels": 1}}}))
    with pytest.raises(ValueError, match=r"bridges \['text', 'vision'\] need towers \['vision'\]"):
        no_vision.load_path(tmp_path / "path")


def test_wrong_tensor_names_or_shapes_are_refused_and_nothing_is_left_loaded(base_dir, tmp_path):
    folder = _trained_path(base_dir).save_path("depth", tmp_path / "path")
    _rewrite_weights(folder, lambda s: s.update({"specific_heads.depth.depth.proj.weight": torch.zeros(32, 16)}))
    fresh = CodeBindModel.from_pretrained(base_dir)
    wrong_shape = r"Shape mismatches.*specific_heads\.depth\.depth\.proj\.weight: path \(32, 16\) vs model \(32, 32\)"
    with pytest.raises(ValueError, match=wrong_shape):
        fresh.load_path(folder)
    assert fresh.list_paths() == [] and "depth" not in getattr(fresh, "lora_settings", {})
    _rewrite_weights(folder, lambda s: s.pop("specific_heads.depth.depth.proj.weight"))
    with pytest.raises(ValueError, match=r"missing \['specific_heads\.depth\.depth\.proj\.weight'\]"):
        fresh.load_path(folder)


@pytest.mark.parametrize("damage", ["truncate", "header", "flip_value", "config_shapes"])
def test_corrupted_or_truncated_weights_are_refused(base_dir, tmp_path, damage):
    folder = _trained_path(base_dir).save_path("depth", tmp_path / "path")
    weights = folder / "path.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "header":
        weights.write_bytes(b"\x00" * 16 + data[16:])
    elif damage == "flip_value":  # safetensors alone cannot see this one
        data[-3] ^= 0x40
        weights.write_bytes(bytes(data))
        assert load_file(weights)
    else:
        config = json.loads((folder / "path_config.json").read_text())
        config["shapes"]["shared_heads.depth.proj.weight"] = [32, 31]
        (folder / "path_config.json").write_text(json.dumps(config))
    fresh = CodeBindModel.from_pretrained(base_dir)
    message = "does not match the shapes in path_config.json" if damage == "config_shapes" else "corrupted or truncated"
    with pytest.raises(ValueError, match=message):
        fresh.load_path(folder)
    assert fresh.list_paths() == []


def test_missing_folder_files_and_bad_ids_are_explained(base_dir, tmp_path):
    model = CodeBindModel.from_pretrained(base_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="path_config.json not found"):
        model.load_path(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither a local directory nor a Hub repo id"):
        model.load_path(str(tmp_path / "does" / "not" / "exist"))


def test_loading_twice_needs_replace_and_a_failed_replace_keeps_the_old_path(base_dir, tmp_path):
    first = _trained_path(base_dir, seed=1).save_path("depth", tmp_path / "first")
    second = _trained_path(base_dir, seed=2).save_path("depth", tmp_path / "second")
    model = CodeBindModel.from_pretrained(base_dir).eval()
    model.load_path(first)
    before = _features(model)
    with pytest.raises(ValueError, match="already loaded; remove_path\\('depth'\\) first or pass replace=True"):
        model.load_path(second)
    _rewrite_weights(second, lambda s: s.update({"shared_heads.depth.proj.weight": torch.zeros(32, 8)}))
    with pytest.raises(ValueError, match="Shape mismatches"):
        model.load_path(second, replace=True)
    assert model.list_paths() == ["depth"] and model.lora_settings["depth"]["r"] == 4
    after = _features(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    third = _trained_path(base_dir, seed=3)
    model.load_path(third.save_path("depth", tmp_path / "third"), replace=True)
    assert torch.equal(model.get_features("depth", DEPTH, part="concat"), third.get_features("depth", DEPTH, part="concat"))


def test_fingerprint_ignores_lora_and_dtype_but_sees_changed_bridge_weights(base_dir):
    model = CodeBindModel.from_pretrained(base_dir)
    model.add_path("depth")
    reference = base_model_fingerprint(model, "depth")
    assert reference.startswith("v2:") and [len(d) for d in reference.split(":")[1:]] == [64, 64]
    add_lora(model, "depth", last_n_blocks=1)
    assert base_model_fingerprint(model, "depth") == reference
    half = CodeBindModel.from_pretrained(base_dir, dtype=torch.bfloat16)
    assert half.towers["vision"].backbone.embeddings.cls_token.dtype == torch.bfloat16
    assert base_model_weights(half, "depth", model.config.paths["depth"]).matches(reference)
    with torch.no_grad():
        model.shared_heads["vision"].proj.weight[0, 0] += 0.5
    assert base_model_fingerprint(model, "depth") != reference
    # The path's own trained modules are not part of the base identity.
    with torch.no_grad():
        model.shared_heads["depth"].proj.weight.add_(1.0)
    changed = base_model_fingerprint(model, "depth")
    model.specific_heads["depth"]["depth"].proj.weight.data.add_(1.0)
    assert base_model_fingerprint(model, "depth") == changed


def test_writes_are_atomic_and_never_clobber_other_files(base_dir, tmp_path, monkeypatch):
    model = _trained_path(base_dir)
    folder = model.save_path("depth", tmp_path / "out" / "depth")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model.save_path("depth", folder)  # an artifact folder may be overwritten
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    def broken_save(state, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")

    with torch.no_grad():
        model.shared_heads["depth"].proj.weight.add_(1.0)
    monkeypatch.setattr(artifact_io, "save_file", broken_save)  # ArtifactFormat.save writes the weights
    with pytest.raises(OSError, match="disk full"):
        model.save_path("depth", folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["depth"]  # no temp folders left
    monkeypatch.undo()

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.bin").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"holds other files \['checkpoint.bin'\]"):
        model.save_path("depth", tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.bin").read_bytes() == b"precious"


def test_add_path_validates_and_builds_modules_on_the_models_device_and_dtype(base_dir):
    model = CodeBindModel.from_pretrained(base_dir, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="bridge 'audio' has no tower"):
        model.add_path("depth", {"bridges": ["audio"]})
    assert model.config.paths == {} and model.list_paths() == []
    model.add_path("depth", {"bridges": ["vision"]})
    assert sorted(model.specific_heads["depth"]) == ["depth", "vision"]
    assert model.specific_heads["depth"]["depth"].proj.weight.dtype == torch.bfloat16
    assert model.quantizers["depth"].shared.codebook.shape == (64, 8)
    with pytest.raises(ValueError, match="already loaded"):
        model.add_path("depth")


def test_an_untrained_path_is_replaced_without_replace_and_never_quantises(base_dir, tmp_path, caplog):
    trained = _trained_path(base_dir, seed=1).save_path("depth", tmp_path / "trained")
    model = CodeBindModel.from_pretrained(base_dir).eval()
    model.add_path("depth")  # fresh codebooks: initialized == False
    raw = model.get_features("depth", DEPTH, quantize=False)
    assert torch.equal(model.get_features("depth", DEPTH), raw)  # the random codevectors are not used
    model.load_path(trained)  # no replace=True needed over an untrained path
    assert not torch.equal(model.get_features("depth", DEPTH), raw)
    with pytest.raises(ValueError, match="pass replace=True"):
        model.load_path(trained)  # a trained one still needs it
