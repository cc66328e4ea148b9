"""Real huggingface_hub client against a local Hub-compatible server: push and pull paths and full models."""

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, constants

from codebind_hf import CodeBindModel
from codebind_hf.lora import add_lora
from hub_server import local_hub
from tiny_models import tiny_config

DEPTH = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(7))
TOKEN = "hf_secretTOKEN0123456789"


@pytest.fixture
def hub(monkeypatch):
    with local_hub() as (endpoint, state):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield endpoint, state


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    CodeBindModel(tiny_config(decoder=False, paths={})).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_push_path_then_load_into_fresh_base(hub, base_dir, caplog):
    endpoint, state = hub
    model = CodeBindModel.from_pretrained(base_dir).eval()
    model.add_path("depth", {"lora_last_n_blocks": 1})
    add_lora(model, "depth")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    first = model.push_path_to_hub("depth", "org/depth-path", token=TOKEN)
    second = model.push_path_to_hub("depth", "org/depth-path", token=TOKEN, commit_message="again")
    assert first.oid != second.oid and len(state.repos["org/depth-path"].commits) == 2
    commits = HfApi(token=TOKEN).list_repo_commits("org/depth-path")
    assert [c.title for c in commits][:2] == ["again", "Upload CodeBind depth path"]
    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    assert fresh.load_path("org/depth-path") == "depth"
    assert torch.equal(fresh.get_features("depth", DEPTH, part="concat"), model.get_features("depth", DEPTH, part="concat"))
    card = ModelCard.load("org/depth-path")
    assert card.data.library_name == "codebind_hf"
    assert TOKEN not in caplog.text and not any(TOKEN in r for r in state.requests)


def test_push_full_model_and_from_pretrained_repo_id(hub, base_dir):
    model = CodeBindModel(tiny_config(decoder=True)).eval()
    model.push_to_hub("org/codebind-tiny", token=TOKEN, results={"results": {"NYU-D": {"accuracy": 0.5}}})
    files = set(hub[1].repos["org/codebind-tiny"].commits[-1]["files"])
    assert {"config.json", "model.safetensors", "README.md"} <= files
    loaded = CodeBindModel.from_pretrained("org/codebind-tiny").eval()
    assert loaded.decoder is None
    assert torch.equal(loaded.get_features("depth", DEPTH, part="concat"), model.get_features("depth", DEPTH, part="concat"))
    card = ModelCard.load("org/codebind-tiny")
    assert card.data.eval_results[0].metric_value == 0.5


def test_failed_upload_leaves_local_files_and_hides_the_token(hub, base_dir, tmp_path, monkeypatch):
    model = CodeBindModel.from_pretrained(base_dir)
    model.add_path("depth")
    model.save_path("depth", tmp_path / "mine")
    before = {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()}
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(Exception) as info:
        model.push_path_to_hub("depth", "org/unreachable", token=TOKEN)
    assert TOKEN not in str(info.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()} == before
