"""Generated model cards: they parse with huggingface_hub.ModelCard and carry the right metadata."""

import json
import math

import pytest
import torch
from huggingface_hub import ModelCard

from codebind_hf.adapters.fingerprint import short_fingerprint
from codebind_hf import CodeBindModel
from codebind_hf.adapters.model_cards import hub_repo_id, read_eval_results, render_base_card, render_path_card
from tiny_models import tiny_config

RESULTS = {
    "model": "org/codebind-tiny",  # extra keys of the runner's JSON are ignored
    "results": {
        "NYU-D": {"top1": 0.593, "top5": 0.91, "note": "n/a", "ok": True},
        "SUN-D": {"top1": {"value": 0.457, "stderr": 0.01}},
        "MSR-VTT": {"text-to-video": {"R@1": 0.3, "R@5": float("nan")}},
        "broken": [1, 2],
    },
    "tasks": {"MSR-VTT": "retrieval"},
    "datasets": {"NYU-D": "org/nyu-depth-v2"},
}
EXPECTED = {("NYU-D", "top1"): 0.593, ("NYU-D", "top5"): 0.91, ("SUN-D", "top1"): 0.457, ("MSR-VTT", "text-to-video/R@1"): 0.3}


@pytest.fixture(scope="module")
def path_config():
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False, paths={}))
    model.config._name_or_path = "org/codebind-base"
    model.hub_revision = "a" * 40
    model.add_path("depth", {"bridges": ["text", "vision"], "lora_last_n_blocks": 1})
    from codebind_hf.adapters.lora import add_lora

    add_lora(model, "depth")
    return model.path_config_dict("depth")


def test_eval_reader_is_tolerant_and_keeps_numbers_only(tmp_path):
    rows = read_eval_results(RESULTS)
    assert {(r.dataset_name, r.metric_type): r.metric_value for r in rows} == EXPECTED
    by_name = {r.dataset_name: r for r in rows}
    assert by_name["MSR-VTT"].task_type == "retrieval" and by_name["SUN-D"].task_type == "zero-shot-classification"
    assert by_name["NYU-D"].dataset_type == "org/nyu-depth-v2" and by_name["SUN-D"].dataset_type == "SUN-D"
    # A bare {benchmark: {metric: value}} table, a JSON file, nothing at all.
    assert [(r.dataset_name, r.metric_value) for r in read_eval_results({"ESC-50": {"top1": 1}})] == [("ESC-50", 1.0)]
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    assert len(read_eval_results(tmp_path / "results.json")) == len(EXPECTED)
    assert read_eval_results(None) == [] and read_eval_results({"results": "pending"}) == []
    with pytest.raises(FileNotFoundError, match="missing.json not found"):
        read_eval_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_eval_results(str(tmp_path / "bad.json"))
    with pytest.raises(TypeError, match="must be a dict or a JSON file path, got list"):
        read_eval_results([1])


def test_hub_repo_id_tells_repo_ids_from_local_paths(tmp_path):
    (tmp_path / "org").mkdir()
    assert hub_repo_id("org/codebind-base") == "org/codebind-base"
    for local in (str(tmp_path / "base"), "./org/x", "../x/y", "~/x/y", "a/b/c", "", None, "bad name/x"):
        assert hub_repo_id(local) is None, local


def test_path_card_parses_and_carries_metadata(path_config, tmp_path):
    text = render_path_card(path_config, repo_id="org/depth-path", results=RESULTS, training_data=["org/nyu-depth-v2"])
    (tmp_path / "README.md").write_text(text)
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data
    assert data.library_name == "codebind_hf" and data.license == "cc-by-nc-sa-4.0"
    assert data.base_model == "org/codebind-base" and data.pipeline_tag == "feature-extraction"
    assert data.tags == ["codebind", "multimodal", "modality-path", "depth", "lora", "peft"]
    assert data.datasets == ["org/nyu-depth-v2"] and data.model_name == "org/depth-path"
    assert {(e.dataset_name, e.metric_type): e.metric_value for e in data.eval_results} == EXPECTED
    index = data.to_dict()["model-index"]
    assert index[0]["name"] == "org/depth-path"
    entries = {r["dataset"]["name"]: r for r in index[0]["results"]}  # one entry per (task, dataset)
    assert sorted(entries) == ["MSR-VTT", "NYU-D", "SUN-D"] and len(entries["NYU-D"]["metrics"]) == 2
    assert entries["MSR-VTT"]["task"]["type"] == "retrieval" and entries["NYU-D"]["dataset"]["type"] == "org/nyu-depth-v2"
    body = card.text
    for section in ("## Intended use", "## How to load", "## Training", "## Evaluation", "## Limitations", "## License"):
        assert section in body, section
    assert 'model.load_path("org/depth-path")' in body and 'from_pretrained("org/codebind-base")' in body
    assert "CC BY-NC-SA 4.0" in body and "ImageBind" in body
    assert f"revision `{'a' * 40}`" in body and short_fingerprint(path_config["base_model"]["fingerprint"]) in body
    assert "rank 4, alpha 4, last 1 blocks" in body and "| NYU-D | top1 | 0.593 |" in body  # alpha = rank: scale 1
    values = sum(math.prod(s) for s in path_config["shapes"].values())
    assert f"{values:,} values" in body


def test_path_card_without_results_or_hub_base(path_config):
    local = {**path_config, "base_model": {**path_config["base_model"], "name_or_path": "/tmp/my-base", "revision": None}}
    card = ModelCard(render_path_card(local, license="apache-2.0", training_data="200k aligned depth/RGB pairs"))
    assert card.data.base_model is None and card.data.license == "apache-2.0"
    assert card.data.eval_results is None and "model-index" not in card.content and "## Evaluation" not in card.text
    assert "200k aligned depth/RGB pairs" in card.text and 'model.load_path("path/to/this/folder")' in card.text


def test_base_card_parses_and_carries_metadata():
    config = tiny_config()
    config._name_or_path = "org/codebind-ib-base"
    card = ModelCard(render_base_card(config, repo_id="org/codebind-tiny", results=RESULTS, tags=["depth-demo"],
                                      revision="b" * 40))
    data = card.data
    assert data.library_name == "codebind_hf" and data.license == "cc-by-nc-sa-4.0" and data.model_name == "org/codebind-tiny"
    assert data.base_model == "org/codebind-ib-base"
    assert data.tags == ["codebind", "multimodal", "depth", "text", "vision", "depth-demo"]
    assert {(e.dataset_name, e.metric_type): e.metric_value for e in data.eval_results} == EXPECTED
    assert "model-index" in card.content and "| paths | depth |" in card.text
    assert f"`org/codebind-ib-base` (revision `{'b' * 40}`)" in card.text
    assert 'CodeBindModel.from_pretrained("org/codebind-tiny")' in card.text and 'path="depth"' in card.text
    # Pushing a model to the repo it came from: it is not its own base model.
    assert ModelCard(render_base_card(config, repo_id="org/codebind-ib-base")).data.base_model is None
