"""CodeBindModel: outputs, features, loss assembly, save/load, Auto classes and input errors."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

from codebind_hf import CodeBindConfig, CodeBindModel
from tiny_models import BERT, VIT, mark_codebooks_trained, tiny_config


@pytest.fixture
def model():
    torch.manual_seed(0)
    return mark_codebooks_trained(CodeBindModel(tiny_config())).eval()


def _batch(n=4):
    return {
        "input_ids": torch.randint(1, 100, (n, 7)),
        "pixel_values": torch.randn(n, 3, 16, 16),
        "depth_values": torch.randn(n, 1, 16, 16),
    }


def test_forward_outputs_are_unit_and_codes_decode(model):
    out = model(**_batch())
    assert set(out.shared_embeds) == {"text", "vision", "depth"}
    assert "text" not in out.specific_embeds
    for emb in [*out.shared_embeds.values(), *out.specific_embeds.values(), *out.embeds.values()]:
        assert torch.allclose(emb.norm(dim=-1), torch.ones(emb.shape[0]), atol=1e-5)
    assert out.embeds["depth"].shape == (4, 64) and out.embeds["text"].shape == (4, 32)
    # the shared embedding is exactly the normalised concatenation of its codes
    codes = out.codes["depth"]
    assert codes.shape == (4, 32 // 8)
    decoded = model.quantizers["depth"].shared.codes_to_vectors(codes)
    assert torch.allclose(out.shared_embeds["depth"], F.normalize(decoded, dim=-1), atol=1e-6)


def test_get_features_parts_and_unquantised(model):
    x = torch.randn(3, 1, 16, 16)
    shared = model.get_features("depth", x)
    specific = model.get_features("depth", x, part="specific")
    concat = model.get_features("depth", x, part="concat")
    assert torch.allclose(concat, F.normalize(torch.cat([shared, specific], -1), dim=-1), atol=1e-6)
    raw = model.get_features("depth", x, quantize=False)
    tokens = model.towers["depth"](x).last_hidden_state
    expected = F.normalize(model.shared_heads["depth"](tokens[:, 0]), dim=-1)
    assert torch.allclose(raw, expected, atol=1e-6)
    # quantisation moves the embedding but keeps it close in direction
    assert not torch.allclose(raw, shared)
    # processor-style dict input and the image alias
    batch = _batch(2)
    assert torch.allclose(model.get_features("image", batch), model.get_features("vision", batch["pixel_values"]))


def test_clips_are_averaged_before_the_codebooks(model):
    clips = torch.randn(2, 3, 1, 16, 16)
    heads = model.get_features("depth", clips.flatten(0, 1), quantize=False).reshape(2, 3, -1)  # unit head outputs
    mean = heads.mean(1)
    assert torch.allclose(model.get_features("depth", clips, quantize=False), F.normalize(mean, dim=-1), atol=1e-6)
    # The authors' order: average the head outputs, then quantise, so a clip input's embedding is a code.
    book = model.quantizers["depth"].shared
    expected = F.normalize(book.codes_to_vectors(book(mean).indices), dim=-1)
    assert torch.allclose(model.get_features("depth", clips), expected, atol=1e-6)
    assert torch.equal(model(depth_values=clips).codes["depth"], book(mean).indices)


def test_path_loss_is_weighted_sum_and_trains(model):
    model.train()
    out = model(**_batch(), return_loss=True)
    weights = model.config.path_config("depth").loss_weights
    assert set(out.loss_breakdown) == {"align", "recon", "vq", "ctr", "cuni", "cm", "orth", "uni"}
    expected = sum(weights[k] * v for k, v in out.loss_breakdown.items())
    assert torch.allclose(out.loss, expected)
    assert all(torch.isfinite(v) for v in out.loss_breakdown.values())
    out.loss.backward()
    assert model.specific_heads["depth"]["depth"].proj.weight.grad.abs().sum() > 0
    assert model.decoder.heads["depth"].weight.grad.abs().sum() > 0
    # a more aligned batch (vision == depth features through identical towers) has lower InfoNCE
    assert out.loss_breakdown["align"] > 0


def test_official_variants_are_selectable():
    config = tiny_config(paths={"depth": {"orthogonality_variant": "official", "code_matching_variant": "official"}})
    out = CodeBindModel(config).train()(**_batch(), return_loss=True)
    assert torch.isfinite(out.loss)


def test_save_load_round_trip_keeps_decoder_and_drop_decoder_is_explicit(model, tmp_path):
    x = _batch(2)
    model.save_pretrained(tmp_path / "full")
    keys = load_file(tmp_path / "full" / "model.safetensors").keys()
    assert any(k.startswith("decoder.") for k in keys)  # save -> load gives the model back, decoder included
    full = CodeBindModel.from_pretrained(tmp_path / "full")
    assert set(full.state_dict()) == set(model.state_dict())
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in model.state_dict().items())
    # an inference artifact leaves the decoder out: one explicit step
    model.drop_decoder()
    assert model.decoder is None and model.config.decoder["enabled"] is False
    model.save_pretrained(tmp_path / "m")
    keys = load_file(tmp_path / "m" / "model.safetensors").keys()
    assert not any(k.startswith("decoder.") for k in keys)
    assert any(k.startswith("quantizers.depth.shared.codebook") for k in keys)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["decoder"]["enabled"] is False
    loaded = CodeBindModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.decoder is None
    a, b = model(**x), loaded(**x)
    for m in a.embeds:
        assert torch.equal(a.embeds[m], b.embeds[m])
    auto = AutoModel.from_pretrained(tmp_path / "m")
    assert isinstance(auto, CodeBindModel)
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), CodeBindConfig)


def test_save_without_decoder_keeps_the_live_model(model, tmp_path):
    model.save_pretrained(tmp_path / "m", include_decoder=False, state_dict=model.state_dict())
    assert model.decoder is not None and model.config.decoder["enabled"] is True
    assert CodeBindModel.from_pretrained(tmp_path / "m").decoder is None


def test_loading_is_strict(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    weights.pop("quantizers.depth.shared.codebook")
    save_file(weights, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.safetensors is corrupted.*model_checksums\.json"):
        CodeBindModel.from_pretrained(tmp_path / "m")  # the edit is caught by the checksum first
    with pytest.raises(ValueError, match="quantizers.depth.shared.codebook"):
        CodeBindModel.from_pretrained(tmp_path / "m", verify_checksums=False)
    # non-strict only when asked, and the loading info lists what was missing
    loaded, info = CodeBindModel.from_pretrained(tmp_path / "m", strict=False, output_loading_info=True,
                                                 verify_checksums=False)
    assert sorted(info["missing_keys"]) == ["quantizers.depth.shared.codebook"]
    assert torch.allclose(loaded.quantizers["depth"].shared.codebook.norm(dim=-1), torch.ones(64))  # initialised
    model.save_pretrained(tmp_path / "ok")
    _, info = CodeBindModel.from_pretrained(tmp_path / "ok", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m: m.get_features("smell", torch.randn(1, 3)), ValueError, "Unknown modality"),
        (lambda m: m.get_features("audio", torch.randn(1, 3)), ValueError, "no tower for modality 'audio'"),
        (lambda m: m.get_features("depth", torch.randn(1, 16, 16)), ValueError, r"one of \[4, 5\] dims"),
        (lambda m: m.get_features("depth", torch.full((1, 1, 16, 16), float("nan"))), ValueError, "NaN"),
        (lambda m: m.get_features("text", torch.randn(1, 7)), TypeError, "integer token ids"),
        (lambda m: m.get_features("text", torch.randint(0, 9, (1, 7)), part="specific"), ValueError, "no specific part"),
        (lambda m: m.get_features("depth", torch.randn(1, 1, 16, 16), part="both"), ValueError, "part must be"),
        (lambda m: m.get_features("depth", {"pixel_values": torch.randn(1, 3, 16, 16)}), ValueError, "depth_values"),
        (lambda m: m(return_loss=True, input_ids=torch.randint(0, 9, (2, 5))), ValueError, "one path"),
        (lambda m: m(return_loss=True, depth_values=torch.randn(2, 1, 16, 16)), ValueError, "at least one bridge"),
        (lambda m: m(audio=torch.randn(2, 3)), TypeError, "unexpected keyword argument 'audio'"),
        (lambda m: m(), ValueError, "No modality inputs"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, call, error, message):
    with pytest.raises(error, match=message):
        call(model)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"modalities": {"smell": {"family": "hf", "backbone": VIT}}}, "Unknown modality"),
        ({"modalities": {"text": {"family": "clip"}}}, "family"),
        ({"modalities": {"text": {"family": "hf"}}}, "backbone"),
        ({"modalities": {"text": {"family": "hf", "backbone": BERT}}, "embed_dim": 30}, "multiple of"),
        ({"modalities": {"text": {"family": "hf", "backbone": BERT}}, "paths": {"audio": {}}}, "no tower"),
        ({"modalities": {"depth": {"family": "hf", "backbone": VIT}}, "paths": {"depth": {"bridges": ["text"]}}}, "bridge 'text'"),
        ({"quantizer": {"codebook_size": 3}}, "Unknown quantizer keys"),
        ({"modalities": {"depth": {"family": "hf", "backbone": VIT}, "vision": {"family": "hf", "backbone": VIT}},
          "paths": {"depth": {"bridges": ["vision"], "loss_weights": {"foo": 1.0}}}}, "unknown losses"),
        ({"modalities": {"depth": {"family": "hf", "backbone": VIT}, "vision": {"family": "hf", "backbone": VIT}},
          "paths": {"depth": {"bridges": ["vision"]}}, "embed_dim": 32, "specific_dim": 16}, "specific_dim == embed_dim"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(Exception, match=message):
        CodeBindConfig(**kwargs)


def test_config_round_trip_and_paper_weights(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path)
    again = CodeBindConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    weights = CodeBindConfig(
        modalities={"thermal": {"family": "hf", "backbone": VIT}, "vision": {"family": "hf", "backbone": VIT}},
        paths={"thermal": {"bridges": ["vision"], "loss_weights": {"cm": 0.5}}},
        embed_dim=32, specific_dim=32,
    ).path_config("thermal").loss_weights
    assert weights == {"align": 1.0, "recon": 1.0, "vq": 1000.0, "ctr": 0.05, "cuni": 0.05, "cm": 0.5, "orth": 1.0, "uni": 1.0}
