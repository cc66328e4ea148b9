"""ViT-Lens checkpoint conversion: strict key accounting, renaming both ways, lens selection, the CLIP bridge from
each of its three sources (checked against open_clip's forward written out), CLI and save/load round trips."""

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from codebind_hf import CodeBindModel, CodeBindProcessor
from codebind_hf.convert.vitlens import (
    codebind_key_to_vitlens,
    convert_vitlens_checkpoint,
    expected_weight_shapes,
    load_open_clip_checkpoint,
    load_vitlens_checkpoint,
    main as convert_main,
    plan_conversion,
    vitlens_key_to_codebind,
    vitlens_state_dict_to_towers,
)
from vitlens_bridge import open_clip_encode_image, open_clip_encode_text, open_clip_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "vitlens_tiny")
CHECKPOINT = os.path.join(FIXTURES, "vitlens_tiny.pth")
CONFIG = os.path.join(FIXTURES, "config.json")
with open(CONFIG) as fh:
    SETTINGS = json.load(fh)
CLIP = SETTINGS["clip_model_config"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def state():
    return load_vitlens_checkpoint(CHECKPOINT)[0]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "open_clip_pytorch_model.bin"
    torch.save(open_clip_state_dict(CLIP), path)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, clip_file):
    """The CLI's output folder for the fixture lenses plus the open_clip bridge."""
    out = tmp_path_factory.mktemp("vl") / "codebind-vl-tiny"
    assert convert_main([CHECKPOINT, str(out), "--vitlens-config", CONFIG, "--clip-checkpoint", str(clip_file)]) == 0
    return out


def test_every_key_is_consumed_and_every_weight_filled(state):
    weights = vitlens_state_dict_to_towers(state, CONFIG)
    configs, clip, dropped = plan_conversion(state, CONFIG)
    assert list(configs) == ["point", "eeg"] and dropped == [] and clip == CLIP
    expected = expected_weight_shapes(configs, 32)
    assert set(weights) == set(expected) and all(weights[k].shape == expected[k] for k in weights)
    assert len(weights) == len(state) + 2  # + the two lenses' logit scales (1: ViT-Lens scales nothing)
    assert weights["logit_scales.point.log_logit_scale"].item() == weights["logit_scales.eeg.log_logit_scale"].item() == 0.0
    # moved, not transformed, except the projections, which become Linear weights
    assert weights["towers.point.blocks.1.attn.qkv.weight"] is state["vitlens.pc.transformer.resblocks.1.attn.in_proj_weight"]
    assert weights["towers.eeg.adapter.pos_emb"] is state["vitlens.eeg.visual_adapter.pos_emb"]
    assert weights["towers.point.perceiver.layers.1.2.0.1.fn.net.2.bias"] is state["vitlens.pc.perceiver.layers.1.2.0.1.fn.net.2.bias"]
    assert weights["shared_heads.eeg.norm.weight"] is state["vitlens.eeg.ln_post.weight"]
    assert torch.equal(weights["shared_heads.point.proj.weight"], state["vitlens.pc.proj"].T)


def test_renaming_round_trips(state, clip_file):
    for key in [*state, *load_open_clip_checkpoint(clip_file)]:
        if key != "vitlens.text.attn_mask":
            assert codebind_key_to_vitlens(vitlens_key_to_codebind(key)) == key, key
    assert vitlens_key_to_codebind("vitlens.text.ln_post.weight") is None  # the text tower's head norm is ln_final
    assert vitlens_key_to_codebind("vitlens.audio.proj") is None
    with pytest.raises(ValueError, match="does not scale eeg"):
        codebind_key_to_vitlens("logit_scales.eeg.log_logit_scale")


def test_unknown_extra_and_missing_keys_are_listed(state):
    with pytest.raises(ValueError, match=r"not ViT-Lens weights this converter knows: \['vitlens\.pc\.surprise'\]"):
        vitlens_state_dict_to_towers({**state, "vitlens.pc.surprise": torch.zeros(1)}, CONFIG)
    extra_block = {**state, "vitlens.eeg.transformer.resblocks.2.ln_1.weight": torch.ones(64)}
    with pytest.raises(ValueError) as err:
        vitlens_state_dict_to_towers(extra_block, CONFIG)
    assert "no place for: ['towers.eeg.blocks.2.norm_1.weight']" in str(err.value)
    assert "vitlens.eeg.transformer.resblocks.2.ln_1.weight" in str(err.value)
    missing = dict(state)
    del missing["vitlens.pc.visual_adapter.encoder.second_conv.1.running_var"], missing["vitlens.eeg.proj"]
    with pytest.raises(ValueError) as err:
        vitlens_state_dict_to_towers(missing, CONFIG)
    message = str(err.value)
    assert "lacks: ['shared_heads.eeg.proj.weight', 'towers.point.adapter.encoder.second_conv.1.running_var']" in message
    assert "'vitlens.eeg.proj'" in message and "'vitlens.pc.visual_adapter.encoder.second_conv.1.running_var'" in message


def test_wrong_settings_are_refused_by_shape(state):
    settings = {**SETTINGS, "modality_cfg": {**SETTINGS["modality_cfg"]}}
    settings["modality_cfg"]["eeg"] = {**settings["modality_cfg"]["eeg"], "eeg_time_len": 32}
    with pytest.raises(ValueError, match=r"towers\.eeg\.adapter\.pos_emb: checkpoint \(64, 64\) vs model \(32, 64\)"):
        vitlens_state_dict_to_towers(state, settings)
    with pytest.raises(ValueError, match="lacks \\['modality_cfg'\\]"):
        vitlens_state_dict_to_towers(state, {"clip_model_config": CLIP})
    with pytest.raises(TypeError, match="must be tensors"):
        vitlens_state_dict_to_towers({**state, "vitlens.pc.proj": [1.0]}, CONFIG)


def test_lenses_without_a_tower_must_be_left_out_explicitly(state):
    audio = {**state, "vitlens.audio.proj": torch.zeros(64, 32)}
    with pytest.raises(ValueError, match=r"lenses \['audio'\] that have no tower here.*--lenses"):
        vitlens_state_dict_to_towers(audio, CONFIG)
    both = vitlens_state_dict_to_towers(audio, CONFIG, lenses=["pc", "eeg"])
    assert not any(".audio." in k for k in both)
    point_only = vitlens_state_dict_to_towers(state, CONFIG, lenses=["point"])  # our names work too
    assert {k.split(".")[1] for k in point_only} == {"point"}
    with pytest.raises(ValueError, match=r"No tower for lenses \['depth'\]"):
        vitlens_state_dict_to_towers(state, CONFIG, lenses=["depth"])


def test_loader_refuses_missing_files_and_foreign_layouts(tmp_path, state):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vitlens_checkpoint(tmp_path / "nope.pt")
    torch.save({"modality_trunks.vision.blocks.0.norm_1.weight": torch.ones(2)}, tmp_path / "imagebind.pth")
    with pytest.raises(ValueError, match=r"not in ViT-Lens's export layout .*modality_trunks"):
        load_vitlens_checkpoint(tmp_path / "imagebind.pth")
    torch.save({"model_var": "vitlensL", "modality_loaded": ["pc", "eeg"], "state_dict": state}, tmp_path / "export.pt")
    loaded, metadata = load_vitlens_checkpoint(tmp_path / "export.pt")
    assert metadata == {"model_var": "vitlensL", "modality_loaded": ["pc", "eeg"]} and loaded.keys() == state.keys()


def test_the_clip_bridge_is_open_clips_clip(tmp_path, state, clip_file):
    with pytest.raises(ValueError, match="exactly one CLIP text/image bridge; got none"):
        convert_vitlens_checkpoint(CHECKPOINT, CONFIG)
    model = convert_vitlens_checkpoint(CHECKPOINT, CONFIG, clip_checkpoint=clip_file)
    clip_state = open_clip_state_dict(CLIP)
    ids = CodeBindProcessor.vitlens(num_points=256, eeg_length=64)(text=["a chair", "a photo of an airplane"])["input_ids"]
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        text = model.get_features("text", ids, quantize=False)
        vision = model.get_features("vision", images, quantize=False)
    assert (text - F.normalize(open_clip_encode_text(clip_state, CLIP, ids), dim=-1)).abs().max() < 1e-5
    assert (vision - F.normalize(open_clip_encode_image(clip_state, CLIP, images), dim=-1)).abs().max() < 1e-5
    assert model.logit_scales["text"].log_logit_scale.item() == pytest.approx(4.2)  # open_clip's stored log scale
    # The same CLIP inside the ViT-Lens export (vitlens.image / vitlens.text, as vitlensL.pt) converts alike.
    export = {**state, **load_open_clip_checkpoint(clip_file)}
    del export["vitlens.text.logit_scale"]
    export["vitlens.text.attn_mask"] = torch.full((77, 77), float("-inf")).triu(1)
    torch.save({"model_var": "vitlens-tiny", "state_dict": export}, tmp_path / "with_clip.pt")
    inside = convert_vitlens_checkpoint(tmp_path / "with_clip.pt", CONFIG)
    with torch.no_grad():
        assert torch.equal(inside.get_features("text", ids, quantize=False), text)
    assert inside.logit_scales["text"].log_logit_scale.item() == pytest.approx(math.log(1 / 0.07))  # CLIP's initial
    with pytest.raises(ValueError, match="exactly one CLIP text/image bridge"):
        convert_vitlens_checkpoint(tmp_path / "with_clip.pt", CONFIG, clip_checkpoint=clip_file)


def test_cli_output_round_trips_with_its_processor(converted):
    reference = load_file(os.path.join(FIXTURES, "io.safetensors"))
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    model = CodeBindModel.from_pretrained(converted).eval()
    again = converted.parent / "again"
    model.save_pretrained(again)
    reloaded = CodeBindModel.from_pretrained(again).eval()
    assert model.config.modalities["point"]["family"] == "vitlens" and sorted(model.quantizers) == ["eeg", "point"]
    for modality in ("point", "eeg"):
        x = reference[f"input.{modality}"]
        with torch.no_grad():
            features = model.get_features(modality, x, quantize=False)
            assert torch.equal(features, reloaded.get_features(modality, x, quantize=False))
            for part in ("shared", "concat"):
                assert torch.equal(model.get_features(modality, x, part=part), reloaded.get_features(modality, x, part=part))
        assert (features - reference[f"output.{modality}"]).abs().max() < 1e-5
    processor = CodeBindProcessor.from_pretrained(converted)
    sensors = processor.sensor_processor
    assert (sensors.point_sampling, sensors.point_channels, sensors.num_points, sensors.eeg_length) == ("fps", 3, 256, 64)
    cloud = np.random.default_rng(0).normal(size=(1000, 6)).astype(np.float32)
    batch = processor(text=["a chair"], point_clouds=[cloud], eeg=[np.zeros((128, 500), np.float32)],
                      images=[np.zeros((40, 50, 3), np.uint8)])
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "input_ids": (1, 77), "attention_mask": (1, 77), "pixel_values": (1, 3, 224, 224), "point_values": (1, 256, 3),
        "eeg_values": (1, 128, 64)}
    with torch.no_grad():
        assert model(**batch).shared_embeds["point"].shape == (1, 32)


def test_bridge_model_copies_text_and_vision(converted, tmp_path):
    bridge = CodeBindModel.from_pretrained(converted).eval()
    model = convert_vitlens_checkpoint(CHECKPOINT, CONFIG, bridge_model=converted)
    ids = torch.tensor([[49406, 320, 1929, 49407] + [0] * 73])
    with torch.no_grad():
        assert torch.equal(model.get_features("text", ids, quantize=False), bridge.get_features("text", ids, quantize=False))
    assert model.config.modalities["vision"] == bridge.config.modalities["vision"]
    small = CodeBindModel(bridge.config.__class__(**{**bridge.config.to_dict(), "embed_dim": 16, "specific_dim": 16}))
    with pytest.raises(ValueError, match="embed_dim 32"):
        convert_vitlens_checkpoint(CHECKPOINT, CONFIG, bridge_model=small)


def test_a_point_path_with_lora_round_trips(converted, tmp_path):
    from codebind_hf.adapters.lora import add_lora

    points = load_file(os.path.join(FIXTURES, "io.safetensors"))["input.point"]
    model = CodeBindModel.from_pretrained(converted).eval()
    assert add_lora(model, "point", r=2, last_n_blocks=1) == model.towers["point"].lora_target_modules(1)
    with torch.no_grad():
        before = model.get_features("point", points, part="concat")
        for parameter in model.towers["point"].parameters():
            if parameter.requires_grad:  # the LoRA matrices: make them count
                parameter.add_(0.05)
        tuned = model.get_features("point", points, part="concat")
    assert not torch.equal(before, tuned)
    folder = model.save_path("point", tmp_path / "point-path")
    fresh = CodeBindModel.from_pretrained(converted).eval()
    fresh.load_path(folder, replace=True)
    with torch.no_grad():
        assert torch.equal(fresh.get_features("point", points, part="concat"), tuned)
