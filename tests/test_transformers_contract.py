"""CodeBindModel as transformers expects it: initialisation on the meta device, attention backends, torch.export with
a dynamic batch, torch.compile parity, get_*_features outputs, and the converted base's untrained-codebook rule."""

import json
import logging
import os

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from codebind_hf import CodeBindConfig, CodeBindModel
from codebind_hf.encoders.imagebind_layers import ImageBindAttention
from tiny_models import BERT, VIT, mark_codebooks_trained

AUDIO = {"family": "imagebind", "stem": "conv2d", "kernel_size": 8, "stride": 8, "in_channels": 1,
         "input_size": [16, 16], "embed_dim": 32, "num_blocks": 2, "num_heads": 4, "add_bias_kv": True,
         "logit_scale": 20.0}
INPUTS = {
    "text": torch.randint(1, 100, (3, 7), generator=torch.Generator().manual_seed(1)),
    "vision": torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)),
    "audio": torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(3)),
}


def _config(**overrides) -> CodeBindConfig:
    kwargs = dict(
        modalities={"text": {"family": "hf", "backbone": BERT}, "vision": {"family": "hf", "backbone": VIT},
                    "audio": AUDIO},
        paths={"audio": {"bridges": ["text", "vision"]}}, embed_dim=32, specific_dim=32,
        quantizer={"shared_codebook_size": 16, "specific_codebook_size": 16},
        decoder={"hidden_size": 32, "num_layers": 1, "num_heads": 4},
    )
    kwargs.update(overrides)
    return CodeBindConfig(**kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    mark_codebooks_trained(CodeBindModel(_config())).save_pretrained(folder)
    return folder


def test_meta_device_init_matches_a_normal_init():
    torch.manual_seed(0)
    normal = CodeBindModel(_config())
    with torch.device("meta"):
        meta = CodeBindModel(_config())
    meta.to_empty(device="cpu")
    meta.init_weights()
    ours, theirs = normal.state_dict(), meta.state_dict()
    for name, value in theirs.items():
        assert torch.isfinite(value.float()).all(), name
    meta_buffers = dict(meta.named_buffers())
    for name, buffer in normal.named_buffers():  # buffers are deterministic: equal exactly
        assert torch.equal(buffer, meta_buffers[name]), name
    # the fixed logit scale (a buffer) and the learnable one are the configured values, not garbage
    assert torch.allclose(meta.logit_scales["audio"].value, torch.tensor(20.0))
    assert torch.allclose(meta.logit_scales["text"].value, torch.tensor(1.0))
    # parameters: same distribution (mean and spread) as the normal initialisation
    for name, value in ours.items():
        if value.is_floating_point() and value.numel() >= 512:
            other = theirs[name]
            assert abs(value.std() - other.std()) <= 0.2 * value.std() + 1e-6, name
            assert abs(value.mean() - other.mean()) <= 0.2 * value.std() + 1e-6, name
    for name in ("decoder.blocks.layers.0.self_attn.in_proj_weight", "towers.audio.pos_embed", "towers.audio.cls_token",
                 "towers.audio.blocks.0.attn.bias_k"):
        assert theirs[name].std() > 0 and theirs[name].abs().max() < 10, name


def _attention_configs(model):
    """The attention implementation every tower runs: ImageBind layers and HF backbones."""
    seen = {m.config._attn_implementation for m in model.modules() if isinstance(m, ImageBindAttention)}
    seen |= {tower.backbone.config._attn_implementation for tower in model.towers.values() if hasattr(tower, "backbone")}
    return seen


def test_eager_and_sdpa_reach_every_tower_and_agree(saved):
    eager = CodeBindModel.from_pretrained(saved, attn_implementation="eager").eval()
    sdpa = CodeBindModel.from_pretrained(saved, attn_implementation="sdpa").eval()
    assert _attention_configs(eager) == {"eager"} and _attention_configs(sdpa) == {"sdpa"}
    with torch.no_grad():
        for modality, x in INPUTS.items():
            a, b = eager.get_features(modality, x, quantize=False), sdpa.get_features(modality, x, quantize=False)
            assert (a - b).abs().max() < 1e-5, modality
    sdpa.set_attn_implementation("eager")  # at run time, every tower follows
    assert _attention_configs(sdpa) == {"eager"}
    sdpa.set_attn_implementation("sdpa")
    assert _attention_configs(sdpa) == {"sdpa"}
    # the eager path returns attention weights, one map per block, each row a distribution over the keys
    out = eager.get_audio_features(INPUTS["audio"], output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and len(out.hidden_states) == 3
    tokens = 1 + (16 // 8) ** 2
    assert out.attentions[0].shape == (3, 4, tokens, tokens + 1)  # + the learned bias key
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(3, 4, tokens), atol=1e-5)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


def test_get_features_outputs_follow_the_clip_convention(saved):
    model = CodeBindModel.from_pretrained(saved).eval()
    with torch.no_grad():
        text = model.get_text_features(INPUTS["text"])
        image = model.get_image_features(INPUTS["vision"], return_dict=False)
        audio = model.get_audio_features(INPUTS["audio"], part="concat")
    assert isinstance(text, BaseModelOutputWithPooling) and text.last_hidden_state.shape == (3, 7, 32)
    with torch.no_grad():
        assert torch.allclose(text.pooler_output, model.get_features("text", INPUTS["text"]), atol=1e-6)
        assert isinstance(image, tuple) and torch.allclose(image[1], model.get_features("vision", INPUTS["vision"]), atol=1e-6)
    assert audio.pooler_output.shape == (3, 64) and audio.last_hidden_state.shape == (3, 5, 32)
    # forward: loss first, hidden states per modality when asked
    model.train()
    out = model(**{"input_ids": INPUTS["text"], "pixel_values": INPUTS["vision"], "audio_values": INPUTS["audio"]},
                return_loss=True, output_hidden_states=True)
    assert list(out.keys())[0] == "loss" and out[0] is out.loss
    assert len(out.audio_model_output.hidden_states) == 3 and len(out.text_model_output.hidden_states) == 3
    assert torch.equal(out.audio_model_output.pooler_output, out.embeds["audio"])
    assert out.depth_model_output is None
    assert out.to_tuple()[0] is out.loss


class _Features(torch.nn.Module):
    def __init__(self, model, modality, part="shared"):
        super().__init__()
        self.model, self.modality, self.part = model, modality, part

    def forward(self, x):
        return self.model.get_features(self.modality, x, part=self.part)


@pytest.mark.parametrize("modality, trained", [("text", True), ("vision", True), ("audio", True), ("audio", False)])
def test_export_with_dynamic_batch_matches_eager(modality, trained):
    torch.manual_seed(0)
    model = CodeBindModel(_config(decoder={"enabled": False})).eval()
    if trained:
        mark_codebooks_trained(model)
    x = INPUTS[modality]
    part = "shared" if modality == "text" else "concat"
    module = _Features(model, modality, part)
    exported = torch.export.export(module, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    with torch.no_grad():
        expected = module(x)
    assert torch.allclose(exported.module()(x), expected, atol=1e-5)  # another batch size than the traced one
    raw = model.get_features(modality, x, part=part, quantize=False)
    # traced, trained codebooks quantise and untrained ones are still not used
    assert torch.allclose(expected, raw, atol=1e-6) != trained


# aot_eager: dynamo tracing and AOT autograd without the C++ code generation of inductor (minutes on 2 cores).
@pytest.mark.parametrize("backend", ["aot_eager"])
def test_compile_matches_eager(backend):
    torch.manual_seed(0)
    model = mark_codebooks_trained(CodeBindModel(_config(decoder={"enabled": False}))).eval()
    compiled = torch.compile(model.get_features, backend=backend, dynamic=False)
    with torch.no_grad():
        expected = model.get_features("audio", INPUTS["audio"], part="concat")
        assert torch.allclose(compiled("audio", INPUTS["audio"], part="concat"), expected, atol=1e-5)


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_tiny")


def test_a_converted_base_has_no_untrained_codebooks_and_says_so(caplog):
    from codebind_hf.convert.imagebind import convert_imagebind_checkpoint

    model = convert_imagebind_checkpoint(os.path.join(FIXTURES, "imagebind_tiny.pth"), os.path.join(FIXTURES, "config.json"))
    assert model.list_paths() == [] and not list(model.quantizers)
    x = torch.randn(2, 6, 2000, generator=torch.Generator().manual_seed(0))  # IMU
    with caplog.at_level(logging.WARNING, logger="codebind_hf.modeling_codebind_base"):
        first = model.get_features("imu", x)
        again = model.get_features("imu", x)
    assert torch.equal(first, model.get_features("imu", x, quantize=False))  # ImageBind's embedding direction
    assert torch.equal(first, again)
    warnings = [r.getMessage() for r in caplog.records if "unquantised imu embedding" in r.getMessage()]
    assert len(warnings) == 1 and "load_path" in warnings[0] and "quantize=False" in warnings[0]
    assert torch.allclose(first.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_attention_backends_reach_the_vitlens_towers(tmp_path):
    from safetensors.torch import load_file

    from codebind_hf.convert.vitlens import convert_vitlens_checkpoint
    from vitlens_bridge import open_clip_state_dict

    folder = os.path.join(os.path.dirname(__file__), "fixtures", "vitlens_tiny")
    with open(os.path.join(folder, "config.json")) as fh:
        clip = json.load(fh)["clip_model_config"]
    torch.save(open_clip_state_dict(clip), tmp_path / "open_clip.bin")
    model = convert_vitlens_checkpoint(os.path.join(folder, "vitlens_tiny.pth"), os.path.join(folder, "config.json"),
                                       clip_checkpoint=tmp_path / "open_clip.bin").eval()
    reference = load_file(os.path.join(folder, "io.safetensors"))
    with torch.no_grad():
        sdpa = {m: model.get_features(m, reference[f"input.{m}"], quantize=False) for m in ("eeg", "point")}
        model.set_attn_implementation("eager")
        assert _attention_configs(model) == {"eager"}
        eager = {m: model.get_features(m, reference[f"input.{m}"], quantize=False) for m in ("eeg", "point")}
        out = model._embed_with_tower_output(
            "eeg", reference["input.eeg"], quantize=False, output_attentions=True)[1]
    for modality in sdpa:
        assert (sdpa[modality] - eager[modality]).abs().max() < 1e-5, modality
    assert len(out.attentions) == len(model.towers["eeg"].blocks)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones_like(out.attentions[0][..., 0]), atol=1e-5)
