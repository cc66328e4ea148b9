"""ViT-Lens towers against the reference fixture (outputs, FPS indices, every intermediate), the ViT-Lens-L preset's
sizes, LoRA targets, and the errors for settings and inputs the towers do not take."""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from codebind_hf.convert.vitlens import convert_vitlens_checkpoint
from codebind_hf.encoders.vitlens import (
    VITLENS_L,
    build_vitlens_tower,
    vitlens_modality_configs,
    vitlens_parameter_counts,
)
from codebind_hf.encoders.vitlens_layers import farthest_point_sample
from vitlens_bridge import open_clip_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "vitlens_tiny")
CHECKPOINT = os.path.join(FIXTURES, "vitlens_tiny.pth")
CONFIG = os.path.join(FIXTURES, "config.json")
with open(CONFIG) as fh:
    SETTINGS = json.load(fh)
CLIP, LENSES = SETTINGS["clip_model_config"], SETTINGS["modality_cfg"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference():
    return load_file(os.path.join(FIXTURES, "io.safetensors"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    clip = tmp_path_factory.mktemp("clip") / "open_clip.bin"
    torch.save(open_clip_state_dict(CLIP), clip)
    return convert_vitlens_checkpoint(CHECKPOINT, CONFIG, clip_checkpoint=clip)


def _max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("modality", ["point", "eeg"])
def test_outputs_match_the_reference(model, reference, modality):
    x = reference[f"input.{modality}"]
    with torch.no_grad():
        hidden = model.towers[modality](x).last_hidden_state
        raw = model.shared_heads[modality](hidden[:, 0])
        normalised = model.get_features(modality, x, part="shared", quantize=False)
    assert _max_diff(raw, reference[f"output.{modality}_raw"]) < 1e-5
    assert _max_diff(normalised, reference[f"output.{modality}"]) < 1e-5
    assert torch.allclose(normalised, F.normalize(raw, dim=-1), atol=1e-7)


@pytest.mark.parametrize("modality", ["point", "eeg"])
def test_intermediates_match_the_reference(model, reference, modality):
    tower, x = model.towers[modality], reference[f"input.{modality}"]
    expected = {k.split(".", 2)[2]: v for k, v in reference.items() if k.startswith(f"intermediate.{modality}.")}
    with torch.no_grad():
        lens = tower.lens(x)
        ours = {"lens_x": lens.features, "lens_pos": lens.positions, "lens_tokens": lens.tokens,
                "latents": tower.perceiver(lens.tokens), "trunk_input": tower.embed(x),
                "trunk_output": tower(x).last_hidden_state}
    if modality == "point":
        ours["center"] = lens.centers
        assert lens.center_indices.dtype == torch.long
        assert torch.equal(lens.center_indices, expected.pop("fps_idx"))  # exactly, first centre = point 0
        assert lens.center_indices[:, 0].eq(0).all()
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert _max_diff(ours[name], value) < 1e-5, name


def test_farthest_point_sampling_by_hand():
    # 1-D points 0, 1, 3, 10 and (batch row 2) the same reversed: FPS starts at index 0 and takes the farthest next.
    line = torch.tensor([0.0, 1.0, 3.0, 10.0])
    xyz = torch.stack([line, line.flip(0)])[..., None].expand(-1, -1, 3).contiguous()
    assert farthest_point_sample(xyz, 4).tolist() == [[0, 3, 2, 1], [0, 3, 1, 2]]
    with pytest.raises(ValueError, match="needs 1 <= num_samples <= 4"):
        farthest_point_sample(xyz, 5)


def _block(width: int) -> int:
    return 12 * width * width + 13 * width  # qkv, out_proj, fc1, fc2 (mlp ratio 4) with biases, two LayerNorms


def _perceiver(latent: int, context: int, depth: int, selfs: int, cross_inner: int, self_inner: int, latents: int) -> int:
    ff = 2 * latent + latent * 8 * latent + 8 * latent + 4 * latent * latent + latent  # norm, GEGLU in, out
    cross = 2 * latent + 2 * context + latent * cross_inner + context * 2 * cross_inner + cross_inner * latent + latent
    self_attn = 2 * latent + latent * self_inner + latent * 2 * self_inner + self_inner * latent + latent
    return latents * latent + depth * (cross + ff + selfs * (self_attn + ff))


def test_vitlens_l_parameter_counts_by_hand():
    counts = vitlens_parameter_counts()
    w, embed = 1024, 768
    head = 2 * w + w * embed  # ln_post + proj
    trunk = w + 2 * w + 24 * _block(w) + head  # CLS, ln_pre, blocks, head
    assert counts["vision"] == 303_966_208 == 3 * 14 * 14 * w + 257 * w + trunk  # open_clip's ViT-L-14 visual
    assert counts["text"] == 123_650_304 == 49408 * 768 + 77 * 768 + 12 * _block(768) + 2 * 768 + 768 * embed
    pointbert = (3 * 128 + 128 + 2 * 128 + 128 * 256 + 256 + 512 * 512 + 512 + 2 * 512 + 512 * 256 + 256
                 + 256 * 384 + 384 + 3 * 128 + 128 + 128 * 384 + 384)
    point = trunk + 257 * w + pointbert + _perceiver(w, 384, 4, 1, 64, 16 * 64, 256)
    eeg = trunk + 257 * w + 128 * w + w + 512 * w + _perceiver(w, w, 1, 1, 64, 16 * 64, 256)
    assert (counts["point"], counts["eeg"]) == (point, eeg) == (422_482_944, 333_935_616)


def test_lora_targets_are_the_trunk_linears(model):
    tower = model.towers["point"]
    names = tower.lora_target_modules(1)
    assert names == [f"blocks.1.{n}" for n in ("attn.qkv", "attn.out_proj", "mlp.fc1", "mlp.fc2")]
    assert all(isinstance(tower.get_submodule(n), nn.Linear) for n in tower.lora_target_modules(99))
    assert len(tower.lora_target_modules(99)) == 4 * len(tower.blocks) == 8


def test_a_frozen_point_lens_keeps_its_batchnorm_statistics():
    tower = build_vitlens_tower("point", vitlens_modality_configs(CLIP, LENSES, bridges=False)["point"])
    norms = [m for m in tower.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == 2
    tower.requires_grad_(False)
    tower.blocks[1].mlp.fc1.weight.requires_grad_(True)  # e.g. LoRA / a tuned block
    tower.train()
    assert tower.blocks[1].training and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    tower(torch.randn(2, 256, 3))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
    tower.requires_grad_(True)  # a lens that trains re-estimates them, as usual
    tower.train()
    assert all(m.training for m in norms)
    tower(torch.randn(2, 256, 3))
    assert not torch.equal(before[0], norms[0].running_mean)


def test_settings_the_towers_do_not_implement_are_refused():
    def lens(**changes):
        return vitlens_modality_configs(CLIP, {"pc": {**LENSES["pc"], **changes}}, bridges=False)

    with pytest.raises(ValueError, match="perceiver_fourier_encode_data.*not supported"):
        lens(perceiver_fourier_encode_data=True)
    with pytest.raises(ValueError, match=r"unknown settings \['pc_colour'\]"):
        lens(pc_colour=True)
    with pytest.raises(ValueError, match="perceiver_latent_dim 32 must equal the trunk width 64"):
        lens(perceiver_latent_dim=32)
    with pytest.raises(ValueError, match="perceiver_input_chan 64 must equal the lens token width 24"):
        lens(perceiver_input_chan=64)
    with pytest.raises(ValueError, match="PointBERT tokenizer"):
        lens(pc_tokenizer="pnsa")
    with pytest.raises(ValueError, match=r"No tower for ViT-Lens lenses \['audio'\]"):
        vitlens_modality_configs(CLIP, {"audio": {}})
    with pytest.raises(ValueError, match="ls_init_value"):
        vitlens_modality_configs({**CLIP, "vision_cfg": {**CLIP["vision_cfg"], "ls_init_value": 0.1}}, LENSES)
    assert set(vitlens_modality_configs(None, None)) == {"point", "eeg", "vision", "text"}  # ViT-Lens-L
    assert VITLENS_L["modality_cfg"]["pc"]["perceiver_depth"] == 4


def test_inputs_of_the_wrong_shape_are_refused(model):
    towers = model.towers
    with pytest.raises(ValueError, match=r"xyz only"):
        towers["point"](torch.randn(1, 256, 6))
    with pytest.raises(ValueError, match=r"N >= 16 points"):
        towers["point"](torch.randn(1, 8, 3))
    with pytest.raises(ValueError, match=r"\(batch, 128, 64\), got \(1, 128, 512\)"):
        towers["eeg"](torch.randn(1, 128, 512))
    with pytest.raises(TypeError, match="integer token ids"):
        towers["text"](torch.zeros(1, 77))
    with pytest.raises(ValueError, match="takes no attention_mask"):
        towers["eeg"](torch.randn(1, 128, 64), attention_mask=torch.ones(1, 64))
    with pytest.raises(ValueError, match="NaN"):
        model.get_features("point", torch.full((1, 256, 3), float("nan")), quantize=False)
    with pytest.raises(ValueError, match="has no lens"):
        towers["vision"].lens(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match="stem"):
        build_vitlens_tower("point", {"family": "vitlens", "stem": "voxels", "width": 8, "layers": 1, "heads": 1})
