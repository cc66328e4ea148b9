"""Converted ImageBind models at the CodeBindModel level: reference parity through get_features, clips, patchify, LoRA.

Tower-level parity, key accounting and presets are in test_imagebind_towers.py and test_convert_imagebind.py."""

import os

import pytest
import torch
from safetensors.torch import load_file

from codebind_hf.convert.imagebind import convert_imagebind_checkpoint
from codebind_hf.encoders.imagebind import (
    CODEBIND_EXTRA_MODALITIES,
    IMAGEBIND_MODALITIES,
    build_imagebind_tower,
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
    with_path = convert_imagebind_checkpoint(CHECKPOINT, CONFIG, paths={"audio": {}})  # a converted base has none
    quantized = with_path.get_features("audio", audio)
    assert torch.allclose(quantized.norm(dim=-1), torch.ones(2), atol=1e-5)


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
    from codebind_hf.adapters.lora import add_lora, set_trainable

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


def test_lora_settings_come_from_the_path_config():
    from codebind_hf.adapters.lora import add_lora

    model = convert_imagebind_checkpoint(CHECKPOINT, CONFIG, paths={"imu": {"lora_rank": 2, "lora_last_n_blocks": 1}, "audio": {}})
    assert add_lora(model, "imu") == ["blocks.1.attn.qkv", "blocks.1.attn.out_proj", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    assert model.towers["imu"].blocks[1].attn.qkv.lora_A["default"].weight.shape[0] == 2
    # paper default rank 4 on the last 6 blocks, capped by the 2-block tiny tower
    assert len(add_lora(model, "audio")) == 8 and model.lora_settings["audio"]["r"] == 4
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, "audio")
