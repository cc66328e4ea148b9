"""ImageBind towers and converter: parity with the reference outputs, strict key accounting, presets, LoRA."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from codebind_hf import CodeBindModel
from codebind_hf.convert.imagebind import (
    convert_imagebind_checkpoint,
    imagebind_state_dict_to_codebind,
    load_imagebind_checkpoint,
    main as convert_main,
)
from codebind_hf.encoders.imagebind import (
    CODEBIND_EXTRA_MODALITIES,
    IMAGEBIND_HUGE,
    IMAGEBIND_MODALITIES,
    build_imagebind_tower,
    count_parameters,
    imagebind_modality_configs,
)

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_tiny")
CHECKPOINT = os.path.join(HERE, "imagebind_tiny.pth")
CONFIG = os.path.join(HERE, "config.json")


@pytest.fixture(scope="module")
def converted():
    return convert_imagebind_checkpoint(CHECKPOINT, CONFIG)


@pytest.fixture(scope="module")
def reference_io():
    return load_file(os.path.join(HERE, "io.safetensors"))


def _reference_style_embedding(model, modality, inputs):
    """normalise(head(tokens)[pooled]) * logit scale; clip embeddings averaged after scaling, as the reference."""
    with torch.no_grad():
        if inputs.ndim == 5 and modality == "audio":
            b, clips = inputs.shape[:2]
            per_clip = model.get_features(modality, inputs.flatten(0, 1), quantize=False).reshape(b, clips, -1)
            return model.logit_scales[modality](per_clip).mean(1)
        return model.logit_scales[modality](model.get_features(modality, inputs, quantize=False))


@pytest.mark.parametrize("modality", IMAGEBIND_MODALITIES)
def test_converted_tiny_checkpoint_reproduces_reference_outputs(converted, reference_io, modality):
    out = _reference_style_embedding(converted, modality, reference_io[f"input.{modality}"])
    expected = reference_io[f"output.{modality}"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < 1e-5


def test_shared_features_are_imagebind_directions_and_clips_average(converted, reference_io):
    audio = reference_io["input.audio"]
    ours = converted.get_features("audio", audio, quantize=False)  # clips averaged then re-normalised
    expected = torch.nn.functional.normalize(reference_io["output.audio"], dim=-1)
    assert (ours - expected).abs().max() < 1e-5
    quantized = converted.get_features("audio", audio)
    assert torch.allclose(quantized.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_every_checkpoint_key_is_consumed_and_unknown_keys_are_listed(tmp_path):
    state = load_imagebind_checkpoint(CHECKPOINT)
    renamed = imagebind_state_dict_to_codebind(state)
    assert len(renamed) == len(state)
    with pytest.raises(ValueError, match="optimizer.state.0"):
        imagebind_state_dict_to_codebind(dict(state, **{"optimizer.state.0": torch.zeros(1)}))
    torch.save(dict(state, **{"modality_trunks.vision.blocks.0.attn.surprise": torch.zeros(1)}), tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"no place for: \['towers\.vision\.blocks\.0\.attn\.surprise'\]"):
        convert_imagebind_checkpoint(tmp_path / "extra.pth", CONFIG)
    missing = dict(state)
    missing.pop("modality_heads.audio.2.weight")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"shared_heads\.audio\.proj\.weight"):
        convert_imagebind_checkpoint(tmp_path / "missing.pth", CONFIG)


def test_wrong_sizes_are_refused_with_both_shapes():
    config = json.load(open(CONFIG))["constructor_kwargs"]
    config["audio_embed_dim"] = 48
    with pytest.raises(ValueError, match=r"towers\.audio\..*checkpoint \(.*\) vs model"):
        convert_imagebind_checkpoint(CHECKPOINT, config)
    with pytest.raises(ValueError, match="Unknown ImageBind constructor arguments"):
        convert_imagebind_checkpoint(CHECKPOINT, {"vision_width": 3})


def test_converted_model_round_trips_and_cli(tmp_path, reference_io, converted):
    assert convert_main([CHECKPOINT, str(tmp_path / "out"), "--imagebind-config", CONFIG]) == 0
    loaded = CodeBindModel.from_pretrained(tmp_path / "out").eval()
    for modality in IMAGEBIND_MODALITIES:
        x = reference_io[f"input.{modality}"]
        with torch.no_grad():
            a = converted.get_features(modality, x, quantize=False)
            b = loaded.get_features(modality, x, quantize=False)
        assert torch.equal(a, b)


def _block_params(d, bias_kv):
    return 12 * d * d + 13 * d + (2 * d if bias_kv else 0)


def test_imagebind_huge_parameter_counts_per_tower():
    configs = imagebind_modality_configs(IMAGEBIND_MODALITIES + CODEBIND_EXTRA_MODALITIES, **IMAGEBIND_HUGE)
    with torch.device("meta"):
        counts = {m: count_parameters(build_imagebind_tower(m, c)) for m, c in configs.items()}
    # hand counts from the reference layout: stem + cls + pos (+ stem LayerNorm) + blocks
    expected = {
        "vision": 1280 * 3 * 2 * 14 * 14 + 1280 + 257 * 1280 + 2 * 1280 + 32 * _block_params(1280, False),
        "text": 49408 * 1024 + 77 * 1024 + 24 * _block_params(1024, False),
        "audio": 768 * 256 + 2 * 768 + 768 + 229 * 768 + 12 * _block_params(768, True),
        "depth": 384 * 256 + 2 * 384 + 384 + 197 * 384 + 12 * _block_params(384, True),
        "thermal": 768 * 256 + 2 * 768 + 768 + 197 * 768 + 12 * _block_params(768, True),
        "imu": 512 * 48 + 2 * 512 + 512 + 251 * 512 + 6 * _block_params(512, True),
        "tactile": 768 * 3 * 256 + 2 * 768 + 768 + 197 * 768 + 12 * _block_params(768, True),
        "eeg": 768 * 128 + 768 + 2 * 768 + 768 + 513 * 768 + 6 * _block_params(768, True),
    }
    assert counts == expected
    assert 631_000_000 < counts["vision"] < 632_000_000 and 352_000_000 < counts["text"] < 354_000_000


def test_tactile_and_eeg_towers_run_and_patchify():
    configs = imagebind_modality_configs(
        CODEBIND_EXTRA_MODALITIES, tactile_embed_dim=32, tactile_num_blocks=1, tactile_num_heads=4,
        eeg_embed_dim=24, eeg_num_blocks=1, eeg_num_heads=4, eeg_data_len=16,
    )
    tactile = build_imagebind_tower("tactile", configs["tactile"]).eval()
    out = tactile(torch.randn(2, 3, 224, 224))
    assert out.last_hidden_state.shape == (2, 197, 32)
    patches = tactile.patchify(torch.randn(2, 3, 224, 224))
    assert patches.shape == (2, 196, tactile.patch_dim) == (2, 196, 3 * 16 * 16)
    eeg = build_imagebind_tower("eeg", configs["eeg"]).eval()
    assert eeg(torch.randn(2, 128, 16)).last_hidden_state.shape == (2, 17, 24)
    with pytest.raises(ValueError, match="positional"):
        eeg(torch.randn(2, 128, 20))


def test_vision_patchify_matches_the_stem(converted):
    tower = converted.towers["vision"]
    images = torch.randn(1, 3, 224, 224)
    patches = tower.patchify(images)  # (1, 256, 3*2*14*14)
    weight = tower.stem.weight.reshape(tower.hidden_size, -1)
    via_patches = patches @ weight.t()
    via_stem = tower.stem(tower._video(images)).flatten(2).transpose(1, 2)
    assert torch.allclose(via_patches, via_stem, atol=1e-4)


def test_lora_wraps_only_the_last_blocks_and_keeps_outputs(converted, reference_io):
    from codebind_hf.lora import add_lora, set_trainable

    model = convert_imagebind_checkpoint(CHECKPOINT, CONFIG)
    x = reference_io["input.depth"]
    before = model.get_features("depth", x, quantize=False)
    targets = add_lora(model, "depth", r=4, last_n_blocks=1)
    assert targets == ["blocks.1.attn.qkv", "blocks.1.attn.out_proj", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    assert torch.allclose(model.get_features("depth", x, quantize=False), before, atol=1e-6)
    trainable = set_trainable(model, "depth", "lora")
    assert all("lora_" in n or n.startswith(("shared_heads.depth", "specific_heads.depth", "logit_scales.depth")) for n in trainable)
    assert any("blocks.1.attn.qkv.lora_A" in n for n in trainable)
    assert not any("blocks.0" in n for n in trainable)
    assert not any(n.startswith("towers.vision") or n.startswith("towers.text") for n in trainable)


def test_inverse_renaming_reproduces_reference_keys(converted):
    from codebind_hf.convert.imagebind import codebind_key_to_imagebind

    reference = set(load_imagebind_checkpoint(CHECKPOINT))
    ours = [k for k in converted.state_dict() if k.startswith(("towers.", "shared_heads.", "logit_scales."))]
    ours.remove("logit_scales.vision.log_logit_scale")
    assert {codebind_key_to_imagebind(k) for k in ours} == reference


def test_lora_settings_come_from_the_path_config():
    from codebind_hf.lora import add_lora

    model = convert_imagebind_checkpoint(CHECKPOINT, CONFIG, paths={"imu": {"lora_rank": 2, "lora_last_n_blocks": 1}, "audio": {}})
    assert add_lora(model, "imu") == ["blocks.1.attn.qkv", "blocks.1.attn.out_proj", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    assert model.towers["imu"].blocks[1].attn.qkv.lora_A["default"].weight.shape[0] == 2
    # paper default rank 4 on the last 6 blocks, capped by the 2-block tiny tower
    assert len(add_lora(model, "audio")) == 8 and model.lora_settings["audio"]["r"] == 4
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, "audio")
