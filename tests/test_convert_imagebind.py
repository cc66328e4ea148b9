"""ImageBind checkpoint conversion: strict key accounting, renaming both ways, logit scales, CodeBindModel + CLI."""

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file

from codebind_hf.convert.imagebind import (
    codebind_key_to_imagebind,
    convert_imagebind_checkpoint,
    expected_weight_shapes,
    imagebind_key_to_codebind,
    imagebind_state_dict_to_towers,
    load_imagebind_checkpoint,
    main as convert_main,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_tiny")
CHECKPOINT = os.path.join(FIXTURES, "imagebind_tiny.pth")
CONFIG = os.path.join(FIXTURES, "config.json")
with open(CONFIG) as fh:
    KWARGS = json.load(fh)["constructor_kwargs"]


@pytest.fixture(scope="module")
def state():
    return load_imagebind_checkpoint(CHECKPOINT)


def test_every_key_is_consumed_and_every_weight_filled(state):
    weights = imagebind_state_dict_to_towers(state, KWARGS)
    expected = expected_weight_shapes(KWARGS)
    assert set(weights) == set(expected)
    assert len(weights) == len(state) + 1  # + vision's constant scale, which the reference does not store
    assert {k.split(".")[0] for k in weights} == {"towers", "shared_heads", "logit_scales"}
    assert all(weights[k].shape == expected[k] for k in weights)
    # values are moved, not transformed: qkv is the packed in_proj, heads are the reference Sequential entries
    assert weights["towers.audio.blocks.1.attn.qkv.weight"] is state["modality_trunks.audio.blocks.1.attn.in_proj_weight"]
    assert weights["shared_heads.imu.proj.weight"] is state["modality_heads.imu.3.weight"]
    assert weights["shared_heads.text.norm.bias"] is state["modality_heads.text.proj.0.bias"]
    assert weights["towers.vision.stem.weight"] is state["modality_preprocessors.vision.rgbt_stem.proj.1.weight"]
    assert weights["towers.vision.pre_norm.weight"] is state["modality_trunks.vision.pre_transformer_layer.0.weight"]


def test_logit_scales_are_stored_as_logs(state):
    weights = imagebind_state_dict_to_towers(state, KWARGS)
    text = weights["logit_scales.text.log_logit_scale"]
    assert text.item() == state["modality_postprocessors.text.1.log_logit_scale"].item() != pytest.approx(math.log(1 / 0.07))
    for modality, scale in {"audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}.items():
        assert weights[f"logit_scales.{modality}.log_logit_scale"].item() == pytest.approx(math.log(scale))
    assert weights["logit_scales.vision.log_logit_scale"].item() == 0.0


def test_renaming_round_trips(state):
    for key in state:
        assert codebind_key_to_imagebind(imagebind_key_to_codebind(key)) == key
    with pytest.raises(ValueError, match="does not scale vision"):
        codebind_key_to_imagebind("logit_scales.vision.log_logit_scale")
    with pytest.raises(ValueError, match="no ImageBind counterpart"):
        codebind_key_to_imagebind("specific_heads.audio.audio.proj.weight")
    assert imagebind_key_to_codebind("modality_heads.vision.1.weight") is None  # SelectElement has no weights


def test_extra_checkpoint_keys_are_listed(state):
    with pytest.raises(ValueError, match=r"not ImageBind weights this converter knows: \['optimizer\.state\.0'\]"):
        imagebind_state_dict_to_towers({**state, "optimizer.state.0": torch.zeros(1)}, KWARGS)
    surprise = {**state, "modality_trunks.vision.blocks.0.attn.surprise": torch.zeros(1)}
    with pytest.raises(ValueError) as err:
        imagebind_state_dict_to_towers(surprise, KWARGS)
    message = str(err.value)
    assert "no place for: ['towers.vision.blocks.0.attn.surprise']" in message
    assert "modality_trunks.vision.blocks.0.attn.surprise" in message
    # a third block the configuration does not have
    extra_block = {**state, "modality_trunks.depth.blocks.2.norm_1.weight": torch.ones(32)}
    with pytest.raises(ValueError, match=r"towers\.depth\.blocks\.2\.norm_1\.weight"):
        imagebind_state_dict_to_towers(extra_block, KWARGS)


def test_missing_checkpoint_keys_are_listed(state):
    missing = dict(state)
    del missing["modality_heads.audio.2.weight"], missing["modality_trunks.imu.blocks.1.attn.bias_k"]
    with pytest.raises(ValueError) as err:
        imagebind_state_dict_to_towers(missing, KWARGS)
    message = str(err.value)
    assert "lacks: ['shared_heads.audio.proj.weight', 'towers.imu.blocks.1.attn.bias_k']" in message
    assert "'modality_heads.audio.2.weight'" in message and "'modality_trunks.imu.blocks.1.attn.bias_k'" in message
    # a whole modality missing is also an error (the six ImageBind towers are expected by default)
    no_imu = {k: v for k, v in state.items() if ".imu." not in k}
    with pytest.raises(ValueError, match=r"towers\.imu\.cls_token"):
        imagebind_state_dict_to_towers(no_imu, KWARGS)
    # ... unless the caller names the modalities it holds
    five = ("vision", "text", "audio", "depth", "thermal")
    assert "towers.imu.cls_token" not in imagebind_state_dict_to_towers(no_imu, KWARGS, modalities=five)


def test_wrong_constructor_arguments_are_refused(state):
    with pytest.raises(ValueError, match=r"towers\.audio\.stem\.weight: checkpoint \(40, 1, 16, 16\) vs model \(48, 1, 16, 16\)"):
        imagebind_state_dict_to_towers(state, {**KWARGS, "audio_embed_dim": 48})
    with pytest.raises(ValueError, match="lacks"):
        imagebind_state_dict_to_towers(state, {**KWARGS, "depth_num_blocks": 3})
    with pytest.raises(ValueError, match="Unknown ImageBind constructor arguments"):
        imagebind_state_dict_to_towers(state, {**KWARGS, "vision_width": 3})
    with pytest.raises(TypeError, match="must be tensors"):
        imagebind_state_dict_to_towers({**state, "modality_heads.vision.0.weight": [1.0]}, KWARGS)


def test_loader_refuses_missing_files_and_non_state_dicts(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_imagebind_checkpoint(tmp_path / "nope.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a plain ImageBind state dict"):
        load_imagebind_checkpoint(tmp_path / "list.pth")
    torch.save({"model": {"modality_heads.vision.0.weight": torch.ones(2)}}, tmp_path / "wrapped.pth")
    assert list(load_imagebind_checkpoint(tmp_path / "wrapped.pth")) == ["modality_heads.vision.0.weight"]


def test_converted_codebind_model_and_cli(tmp_path):
    from codebind_hf import CodeBindModel

    model = convert_imagebind_checkpoint(CHECKPOINT, CONFIG)
    reference = load_file(os.path.join(FIXTURES, "io.safetensors"))
    out_dir = tmp_path / "converted"
    assert convert_main([CHECKPOINT, str(out_dir), "--imagebind-config", json.dumps(KWARGS)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    loaded = CodeBindModel.from_pretrained(out_dir).eval()
    for modality in ("vision", "text", "imu"):
        x = reference[f"input.{modality}"]
        with torch.no_grad():
            a = model.get_features(modality, x, quantize=False)
            b = loaded.get_features(modality, x, quantize=False)
        assert torch.equal(a, b)
        expected = torch.nn.functional.normalize(reference[f"output.{modality}"], dim=-1)
        assert (a - expected).abs().max() < 1e-5
