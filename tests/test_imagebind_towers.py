"""ImageBind towers: parity with the reference outputs, reference per-modality choices, presets, LoRA, checkpointing."""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from codebind_hf.convert.imagebind import imagebind_state_dict_to_towers, load_imagebind_checkpoint
from codebind_hf.encoders import build_tower
from codebind_hf.encoders.imagebind import (
    CODEBIND_EXTRA_MODALITIES,
    IMAGEBIND_HUGE,
    IMAGEBIND_MODALITIES,
    ImageBindTower,
    build_imagebind_tower,
    count_parameters,
    imagebind_modality_configs,
)
from codebind_hf.encoders.imagebind_layers import DropPath, ImageBindAttention, ImageBindBlock
from codebind_hf.modules.heads import LogitScale, ProjectionHead

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_tiny")
with open(os.path.join(FIXTURES, "config.json")) as fh:
    TINY_KWARGS = json.load(fh)["constructor_kwargs"]


class TinyImageBind(nn.Module):
    """Towers + ImageBind heads + logit scales, named as in CodeBindModel, for a standalone parity check."""

    def __init__(self, kwargs):
        super().__init__()
        configs = imagebind_modality_configs(IMAGEBIND_MODALITIES, **kwargs)
        self.towers = nn.ModuleDict({m: build_imagebind_tower(m, c) for m, c in configs.items()})
        self.shared_heads = nn.ModuleDict(
            {
                m: ProjectionHead(
                    self.towers[m].hidden_size, kwargs["out_embed_dim"], c["head_layer_norm_eps"], dropout=c["head_dropout"]
                )
                for m, c in configs.items()
            }
        )
        self.logit_scales = nn.ModuleDict({m: LogitScale(c["logit_scale"], c["logit_scale_learnable"]) for m, c in configs.items()})

    def embed(self, modality, inputs):
        """The reference's final embedding: normalise(head(tokens)[pooled]) * scale; clips averaged after scaling."""
        clips = inputs.ndim == self.towers[modality].sample_ndim + 2
        batch = inputs.shape[0]
        flat = inputs.flatten(0, 1) if clips else inputs
        out = self.towers[modality](flat)
        tokens = self.shared_heads[modality](out.last_hidden_state)
        pooled = tokens[torch.arange(flat.shape[0]), out.pooled_index]
        emb = self.logit_scales[modality](F.normalize(pooled, dim=-1))
        return emb.reshape(batch, -1, emb.shape[-1]).mean(1) if clips else emb


@pytest.fixture(scope="module")
def tiny():
    model = TinyImageBind(TINY_KWARGS)
    weights = imagebind_state_dict_to_towers(load_imagebind_checkpoint(os.path.join(FIXTURES, "imagebind_tiny.pth")), TINY_KWARGS)
    model.load_state_dict(weights, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def reference_io():
    return load_file(os.path.join(FIXTURES, "io.safetensors"))


@pytest.mark.parametrize("modality", IMAGEBIND_MODALITIES)
def test_towers_reproduce_reference_embeddings(tiny, reference_io, modality):
    inputs, expected = reference_io[f"input.{modality}"], reference_io[f"output.{modality}"]
    with torch.no_grad():
        out = tiny.embed(modality, inputs)
    assert out.shape == expected.shape == (2, TINY_KWARGS["out_embed_dim"])
    assert (out - expected).abs().max().item() < 1e-5
    # the scales are the reference's: text learnable (perturbed), others fixed; vision unscaled
    norms = expected.norm(dim=-1)
    scale = {"vision": 1.0, "audio": None, "depth": 5.0, "thermal": 10.0, "imu": 5.0}.get(modality)
    if scale is not None:
        assert torch.allclose(norms, torch.full_like(norms, scale), atol=1e-4)


def test_audio_clips_are_averaged_after_scaling(tiny, reference_io):
    audio = reference_io["input.audio"]  # (2, 3, 1, 128, 204)
    with torch.no_grad():
        per_clip = torch.stack([tiny.embed("audio", audio[:, c]) for c in range(audio.shape[1])], 1)
    assert torch.allclose(per_clip.norm(dim=-1), torch.full((2, 3), 20.0), atol=1e-4)
    assert (per_clip.mean(1) - reference_io["output.audio"]).abs().max() < 1e-5


def test_reference_constructor_defaults_and_huge_preset():
    default = imagebind_modality_configs()
    assert list(default) == list(IMAGEBIND_MODALITIES + CODEBIND_EXTRA_MODALITIES)
    sizes = {m: (c["embed_dim"], c["num_blocks"], c["num_heads"]) for m, c in default.items()}
    assert sizes == {"vision": (1024, 24, 16), "text": (768, 12, 12), "audio": (768, 12, 12), "depth": (384, 12, 8),
                     "thermal": (768, 12, 12), "imu": (512, 6, 8), "tactile": (768, 12, 12), "eeg": (768, 6, 6)}
    huge = imagebind_modality_configs(**IMAGEBIND_HUGE)
    assert (huge["vision"]["embed_dim"], huge["vision"]["num_blocks"]) == (1280, 32)
    assert (huge["text"]["embed_dim"], huge["text"]["num_blocks"]) == (1024, 24)
    assert {m: c["add_bias_kv"] for m, c in huge.items()} == {m: m not in ("vision", "text") for m in huge}
    assert [m for m, c in huge.items() if c["pre_transformer_ln"]] == ["vision"]
    assert {m: c["drop_path"] for m, c in huge.items()} == {"vision": 0.0, "text": 0.0, "audio": 0.1, "depth": 0.0,
                                                            "thermal": 0.0, "imu": 0.7, "tactile": 0.0, "eeg": 0.0}
    assert {m: c["head_dropout"] for m, c in huge.items() if c["head_dropout"]} == {"imu": 0.5}
    assert {m: c["logit_scale"] for m, c in huge.items()} == pytest.approx(
        {"vision": 1.0, "text": 1 / 0.07, "audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0, "tactile": 5.0, "eeg": 5.0}
    )
    assert [m for m, c in huge.items() if c["logit_scale_learnable"]] == ["text"]
    assert all(c["head_layer_norm_eps"] == 1e-6 and c["layer_scale_type"] is None for c in huge.values())
    assert huge["audio"]["stride"] == 10 and huge["audio"]["input_size"] == [128, 204]
    assert huge["tactile"]["in_channels"] == 3 and huge["eeg"]["in_channels"] == 128
    with pytest.raises(ValueError, match=r"Unknown ImageBind constructor arguments \['vision_width'\]"):
        imagebind_modality_configs(vision_width=3)
    with pytest.raises(ValueError, match="No ImageBind tower for modalities \\['point'\\]"):
        imagebind_modality_configs(["point"])


def _block_params(d, bias_kv):
    return 12 * d * d + 13 * d + (2 * d if bias_kv else 0)


def test_imagebind_huge_parameter_counts_on_meta():
    configs = imagebind_modality_configs(**IMAGEBIND_HUGE)
    with torch.device("meta"):
        towers = {m: build_tower(m, c) for m, c in configs.items()}
    counts = {m: count_parameters(t) for m, t in towers.items()}
    trunks = {m: count_parameters(t.blocks) for m, t in towers.items()}
    # hand counts: stem (+ stem LayerNorm) + CLS + positions (+ pre-trunk LN) + blocks
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
    # published sizes: ViT-H image encoder ~630M, OpenCLIP ViT-H text trunk ~302M (~354M with the token embedding)
    assert 629e6 < trunks["vision"] < 630e6 and 631e6 < counts["vision"] < 632e6
    assert 301e6 < trunks["text"] < 303e6 and 352e6 < counts["text"] < 354e6
    assert all(p.is_meta for p in towers["vision"].parameters())


def test_drop_path_is_progressive_and_only_active_in_training():
    config = imagebind_modality_configs(["imu"], imu_embed_dim=16, imu_num_blocks=4, imu_num_heads=2)["imu"]
    tower = build_imagebind_tower("imu", config)
    assert tower.drop_path_rates == pytest.approx([0.0, 0.7 / 3, 1.4 / 3, 0.7])
    drop = DropPath(0.5).train()
    x = torch.ones(4000, 3)
    y = drop(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0} and (y[:, 0:1] == y).all()  # whole samples dropped, kept ones x2
    assert 0.45 < (y[:, 0] == 0).float().mean() < 0.55
    assert torch.equal(drop.eval()(x), x)


def test_attention_matches_nn_multihead_attention_layout():
    torch.manual_seed(0)
    dim, heads, length = 12, 3, 5
    causal = torch.full((length, length), float("-inf")).triu(1)
    for bias_kv, mask in ((True, None), (False, causal), (True, causal)):
        reference = nn.MultiheadAttention(dim, heads, add_bias_kv=bias_kv).eval()
        for p in reference.parameters():
            p.data.normal_()
        ours = ImageBindAttention(dim, heads, add_bias_kv=bias_kv).eval()
        renamed = {k.replace("in_proj_", "qkv."): v for k, v in reference.state_dict().items()}
        ours.load_state_dict(renamed)
        x = torch.randn(2, length, dim)
        expected = reference(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), attn_mask=mask, need_weights=False)[0]
        assert torch.allclose(ours(x, mask), expected.transpose(0, 1), atol=1e-5)


def test_layer_scale_option():
    block = ImageBindBlock(8, 2, add_bias_kv=True, layer_scale_type="per_channel", layer_scale_init_value=0.0)
    assert block.layer_scale_gamma1.shape == (1, 1, 8) and block.layer_scale_gamma2.shape == (1, 1, 8)
    x = torch.randn(2, 3, 8)
    assert torch.equal(block(x), x)  # zero gammas switch both residual branches off
    assert ImageBindBlock(8, 2, True, layer_scale_type="scalar").layer_scale_gamma1.shape == (1, 1, 1)
    assert ImageBindBlock(8, 2, True).layer_scale_gamma1 is None
    with pytest.raises(ValueError, match="layer_scale_type"):
        ImageBindBlock(8, 2, True, layer_scale_type="cait")


def test_text_pools_the_eos_token_and_is_causal(tiny):
    tower = tiny.towers["text"]
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0], ids[0, 1:4], ids[0, 4], ids[1, 1], ids[1, 2] = 49406, torch.tensor([320, 1929, 1545]), 49407, 320, 49407
    with torch.no_grad():
        out = tower(ids)
        changed = ids.clone()
        changed[:, 10:] = 7  # tokens after the EOS cannot reach it through the causal mask
        out2 = tower(changed)
    assert out.pooled_index.tolist() == [4, 2]
    assert torch.allclose(out.last_hidden_state[:, :10], out2.last_hidden_state[:, :10], atol=1e-6)
    assert not torch.allclose(out.last_hidden_state[:, 10:], out2.last_hidden_state[:, 10:])


def test_vision_images_equal_two_frame_clips_and_cls_pooling(tiny, reference_io):
    tower = tiny.towers["vision"]
    images = reference_io["input.vision"]
    with torch.no_grad():
        a = tower(images)
        b = tower(images.unsqueeze(2).repeat(1, 1, 2, 1, 1))
    assert a.last_hidden_state.shape == (2, 257, 64) and a.pooled_index.tolist() == [0, 0]
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)


def test_bad_inputs_are_refused_with_the_expected_layout(tiny):
    with pytest.raises(ValueError, match=r"audio inputs must have shape \(batch, 1, 128, 204\), got \(2, 1, 128, 200\)"):
        tiny.towers["audio"](torch.randn(2, 1, 128, 200))
    with pytest.raises(TypeError, match="floating point"):
        tiny.towers["depth"](torch.zeros(2, 1, 224, 224, dtype=torch.long))
    with pytest.raises(ValueError, match=r"vision inputs must have shape \(batch, 3, 224, 224\)"):
        tiny.towers["vision"](torch.randn(2, 1, 224, 224))
    with pytest.raises(TypeError, match="integer token ids"):
        tiny.towers["text"](torch.zeros(2, 77))
    with pytest.raises(ValueError, match=r"shape \(batch, 77\)"):
        tiny.towers["text"](torch.zeros(2, 76, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 49408\)"):
        tiny.towers["text"](torch.full((1, 77), 49408))
    with pytest.raises(ValueError, match="takes no attention_mask"):
        tiny.towers["imu"](torch.randn(1, 6, 2000), attention_mask=torch.ones(1, 251))
    with pytest.raises(ValueError, match="divisible"):
        build_imagebind_tower("depth", imagebind_modality_configs(["depth"], depth_embed_dim=30, depth_num_heads=4)["depth"])


def test_tactile_and_eeg_towers():
    configs = imagebind_modality_configs(
        CODEBIND_EXTRA_MODALITIES, tactile_embed_dim=32, tactile_num_blocks=1, tactile_num_heads=4,
        eeg_embed_dim=24, eeg_num_blocks=2, eeg_num_heads=4, eeg_data_len=16,
    )
    tactile = build_imagebind_tower("tactile", configs["tactile"]).eval()
    assert tactile.stem.weight.shape == (32, 3, 16, 16) and tactile.stem.bias is None
    assert tactile(torch.randn(2, 3, 224, 224)).last_hidden_state.shape == (2, 197, 32)
    eeg = build_imagebind_tower("eeg", configs["eeg"]).eval()
    assert eeg.stem.weight.shape == (24, 128, 1) and eeg.stem.bias.shape == (24,)  # Conv1d with bias, as CodeBind
    assert eeg(torch.randn(2, 128, 16)).last_hidden_state.shape == (2, 17, 24)


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    config = imagebind_modality_configs(["depth"], depth_embed_dim=16, depth_num_blocks=2, depth_num_heads=2)["depth"]
    torch.manual_seed(0)
    tower = build_imagebind_tower("depth", config).train()
    x = torch.randn(2, 1, 224, 224)
    results = []
    for enabled in (False, True):
        tower.zero_grad()
        tower.gradient_checkpointing = enabled
        out = tower(x).last_hidden_state
        out.square().mean().backward()
        results.append((out.detach(), tower.blocks[0].attn.qkv.weight.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0]) and torch.allclose(results[0][1], results[1][1], atol=1e-7)


def test_peft_lora_wraps_only_the_last_blocks_and_keeps_outputs():
    peft = pytest.importorskip("peft")
    config = imagebind_modality_configs(["audio"], audio_embed_dim=16, audio_num_blocks=8, audio_num_heads=2)["audio"]
    torch.manual_seed(0)
    tower = build_imagebind_tower("audio", config).eval()
    x = torch.randn(1, 1, 128, 204)
    with torch.no_grad():
        before = tower(x).last_hidden_state
    targets = tower.lora_target_modules(6)
    assert targets[:4] == ["blocks.2.attn.qkv", "blocks.2.attn.out_proj", "blocks.2.mlp.fc1", "blocks.2.mlp.fc2"]
    assert len(targets) == 24 and tower.lora_target_modules(0) == [] and len(tower.lora_target_modules(20)) == 32
    peft.inject_adapter_in_model(peft.LoraConfig(r=4, target_modules=targets), tower)
    wrapped = sorted(n for n, m in tower.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer))
    assert wrapped == sorted(targets)
    assert isinstance(tower, ImageBindTower) and not any(n.startswith(("blocks.0.", "blocks.1.")) for n in wrapped)
    with torch.no_grad():
        assert torch.allclose(tower(x).last_hidden_state, before, atol=1e-6)  # lora_B starts at zero
        tower.blocks[7].mlp.fc2.lora_B["default"].weight.fill_(0.1)
        assert not torch.allclose(tower(x).last_hidden_state, before, atol=1e-3)
    trainable = {n for n, p in tower.named_parameters() if "lora_" in n}
    assert len(trainable) == 2 * 24 and math.isclose(tower.blocks[2].attn.qkv.scaling["default"], 8 / 4)


def test_vision_with_longer_clips_uses_first_frame_positions_for_images():
    config = imagebind_modality_configs(["vision"], vision_embed_dim=8, vision_num_blocks=1, vision_num_heads=2, video_frames=4)
    tower = build_imagebind_tower("vision", config["vision"]).eval()
    assert tower.pos_embed.shape == (1, 2 * 256 + 1, 8)
    images, clips = torch.randn(1, 3, 224, 224), torch.randn(1, 3, 4, 224, 224)
    with torch.no_grad():
        expected = tower.stem(images.unsqueeze(2).repeat(1, 1, 2, 1, 1)).flatten(2).transpose(1, 2)
        tokens = tower.embed(images)
        assert tower(clips).last_hidden_state.shape == (1, 513, 8)
    assert tokens.shape == (1, 257, 8)
    assert torch.allclose(tokens[:, 1:], expected + tower.pos_embed[:, 1:257], atol=1e-6)
    with pytest.raises(ValueError, match="positional embedding has 513"):
        tower(torch.randn(1, 3, 6, 224, 224))
