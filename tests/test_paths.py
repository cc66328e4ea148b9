"""Modality path artifacts: save/load into a fresh base model, refusals, cards."""

import json

import pytest
import torch
from huggingface_hub import ModelCard

from codebind_hf import CodeBindModel
from codebind_hf.lora import add_lora
from codebind_hf.model_cards import render_base_card
from tiny_models import BERT, VIT, tiny_config

DEPTH = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    base = CodeBindModel(tiny_config(decoder=False, paths={}))
    base.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _trained_path(base_dir):
    """A base model with a depth path whose LoRA, heads and codebooks differ from a fresh one."""
    model = CodeBindModel.from_pretrained(base_dir)
    model.add_path("depth", {"bridges": ["text", "vision"], "lora_last_n_blocks": 1})
    add_lora(model, "depth")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or name.startswith(("specific_heads.depth", "shared_heads.depth")):
                param.add_(0.05 * torch.randn_like(param))
    model.quantizers["depth"].shared.kmeans_init_(torch.randn(64, 32), iters=2)
    return model.eval()


def test_saved_path_loads_into_a_fresh_base_with_identical_embeddings(base_dir, tmp_path):
    trained = _trained_path(base_dir)
    trained.save_path("depth", tmp_path / "path")
    config = json.loads((tmp_path / "path" / "path_config.json").read_text())
    assert config["modality"] == "depth" and config["lora"]["r"] == 4 and config["base_model"]["name_or_path"] == str(base_dir)
    size = (tmp_path / "path" / "path.safetensors").stat().st_size
    assert size < 0.5 * (base_dir / "model.safetensors").stat().st_size  # only the path's tensors
    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    assert fresh.list_paths() == []
    assert fresh.load_path(tmp_path / "path") == "depth"
    assert fresh.list_paths() == ["depth"]
    for part in ("shared", "specific", "concat"):
        assert torch.equal(fresh.get_features("depth", DEPTH, part=part), trained.get_features("depth", DEPTH, part=part))
    text = torch.randint(1, 99, (2, 5))
    assert torch.equal(fresh.get_features("text", text, path="depth"), trained.get_features("text", text, path="depth"))
    fresh.remove_path("depth")
    assert fresh.list_paths() == [] and "lora" not in str(type(fresh.towers["depth"].blocks[1].attention.q_proj)).lower()


def test_mismatched_base_dims_and_missing_tower_are_refused(base_dir, tmp_path):
    trained = _trained_path(base_dir)
    trained.save_path("depth", tmp_path / "path")
    torch.manual_seed(123)
    other = CodeBindModel(tiny_config(decoder=False, paths={}))
    with pytest.raises(ValueError, match="Base model mismatch.*fingerprint"):
        other.load_path(tmp_path / "path")
    assert other.list_paths() == []  # nothing half-loaded
    wide = CodeBindModel(tiny_config(decoder=False, paths={}, embed_dim=64, specific_dim=64))
    with pytest.raises(ValueError, match=r"Dimension mismatch: the path has .*'embed_dim': 32.* this base model has .*'embed_dim': 64"):
        wide.load_path(tmp_path / "path")
    no_depth = CodeBindModel(tiny_config(decoder=False, paths={}, modalities={"text": {"family": "hf", "backbone": BERT},
                                                                          "vision": {"family": "hf", "backbone": VIT}}))
    with pytest.raises(ValueError, match="no depth tower"):
        no_depth.load_path(tmp_path / "path")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_path_weights_are_refused(base_dir, tmp_path, damage):
    _trained_path(base_dir).save_path("depth", tmp_path / "path")
    weights = tmp_path / "path" / "path.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 16 + data[16:])
    fresh = CodeBindModel.from_pretrained(base_dir)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        fresh.load_path(tmp_path / "path")
    assert fresh.list_paths() == []


def test_cards_parse_and_carry_metadata(base_dir, tmp_path):
    _trained_path(base_dir).save_path("depth", tmp_path / "path")
    card = ModelCard.load(tmp_path / "path" / "README.md")
    assert card.data.library_name == "codebind_hf" and card.data.license == "cc-by-nc-sa-4.0"
    assert "modality-path" in card.data.tags and "depth" in card.data.tags
    results = {"results": {"NYU-D": {"accuracy": 0.593}, "SUN-D": {"accuracy": 0.457, "note": "n/a"}}}
    base = ModelCard(render_base_card(tiny_config(), repo_id="org/codebind-tiny", results=results))
    assert base.data.model_name == "org/codebind-tiny"
    evals = {(e.dataset_name, e.metric_type): e.metric_value for e in base.data.eval_results}
    assert evals == {("NYU-D", "accuracy"): 0.593, ("SUN-D", "accuracy"): 0.457}
    assert "model-index" in base.content
