"""The real huggingface_hub client against a local Hub-compatible server (tests/hub_server.py): push and pull
modality paths and full models. Every request goes to 127.0.0.1."""

import itertools
import json
import logging
import socket
import traceback

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from safetensors.torch import load_file

from codebind_hf import CodeBindModel
from codebind_hf.adapters.lora import add_lora
from tiny_models import tiny_config

DEPTH = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(7))
TOKEN = "hf_secretTOKEN0123456789abcdef"
_names = itertools.count()


@pytest.fixture
def repo_id(request):
    """A fresh repo id per test (the server and the HF cache live for the whole session)."""
    return f"org/{request.node.name.replace('[', '-').strip(']')[:60]}-{next(_names)}"


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    CodeBindModel(tiny_config(decoder=False, paths={})).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _with_depth_path(base_dir, seed=1):
    model = CodeBindModel.from_pretrained(base_dir).eval()
    model.add_path("depth", {"lora_last_n_blocks": 1})
    add_lora(model, "depth")
    _perturb(model, seed)
    return model


def _perturb(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or name.startswith("specific_heads.depth"):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _concat(model):
    return model.get_features("depth", DEPTH, part="concat")


def test_push_path_and_load_it_into_a_fresh_base(hub, base_dir, repo_id, caplog):
    caplog.set_level(logging.DEBUG)
    model = _with_depth_path(base_dir)
    commit = model.push_path_to_hub("depth", repo_id, token=TOKEN, results={"results": {"NYU-D": {"top1": 0.5}}})
    files = hub.commits(repo_id)[-1].files
    assert set(files) == {".gitattributes", "README.md", "path_config.json", "path.safetensors"}
    assert commit.oid == hub.commits(repo_id)[-1].oid
    local = model.save_path("depth", base_dir.parent / "local")
    assert {name: (local / name).read_bytes() for name in ("path_config.json", "path.safetensors")} == {
        name: files[name] for name in ("path_config.json", "path.safetensors")}  # what was pushed is what save_path writes

    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    assert fresh.load_path(repo_id) == "depth"
    assert torch.equal(_concat(fresh), _concat(model))
    assert torch.equal(fresh.get_features("text", torch.tensor([[1, 5, 7]]), path="depth"),
                       model.get_features("text", torch.tensor([[1, 5, 7]]), path="depth"))
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "codebind_hf" and card.data.eval_results[0].metric_value == 0.5
    assert f'model.load_path("{repo_id}")' in card.text
    assert f"Bearer {TOKEN}" in hub.authorizations  # the token was used for the upload ...
    assert TOKEN not in caplog.text and TOKEN not in card.content  # ... and shows up nowhere
    assert not any(TOKEN in r for r in hub.requests)


def test_pushing_again_makes_a_second_commit_and_revisions_can_be_pinned(hub, base_dir, repo_id):
    model = _with_depth_path(base_dir)
    first = model.push_path_to_hub("depth", repo_id, token=TOKEN)
    first_features = _concat(model)
    same = model.push_path_to_hub("depth", repo_id, token=TOKEN)  # nothing changed: no empty commit
    assert same.oid == first.oid and len(hub.commits(repo_id)) == 2  # "initial commit" + the path
    _perturb(model, seed=2)  # "train more"
    second = model.push_path_to_hub("depth", repo_id, token=TOKEN, commit_message="More steps")
    assert second.oid != first.oid and len(hub.commits(repo_id)) == 3
    commits = HfApi(token=TOKEN).list_repo_commits(repo_id)
    assert [c.title for c in commits] == ["More steps", "Upload CodeBind depth path", "initial commit"]
    old, new = hub.commits(repo_id)[1].files, hub.commits(repo_id)[2].files
    assert old["path.safetensors"] != new["path.safetensors"] and old["README.md"] == new["README.md"]

    latest = CodeBindModel.from_pretrained(base_dir).eval()
    latest.load_path(repo_id)
    assert torch.equal(_concat(latest), _concat(model))
    pinned = CodeBindModel.from_pretrained(base_dir).eval()
    pinned.load_path(repo_id, revision=first.oid)
    assert torch.equal(_concat(pinned), first_features) and not torch.equal(first_features, _concat(model))


def test_full_model_push_and_from_pretrained_repo_id(hub, base_dir, repo_id, tmp_path):
    model = CodeBindModel(tiny_config(decoder=True)).eval()
    assert model.decoder is not None
    commit = model.push_to_hub(repo_id, token=TOKEN, results={"results": {"NYU-D": {"top1": 0.5}}}, tags=["tiny"])
    files = hub.commits(repo_id)[-1].files
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    (tmp_path / "pushed.safetensors").write_bytes(files["model.safetensors"])
    assert not any(k.startswith("decoder.") for k in load_file(tmp_path / "pushed.safetensors"))

    loaded = CodeBindModel.from_pretrained(repo_id).eval()
    assert loaded.decoder is None and loaded.hub_revision == commit.oid
    for part in ("shared", "specific", "concat"):
        assert torch.equal(loaded.get_features("depth", DEPTH, part=part), model.get_features("depth", DEPTH, part=part))
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "codebind_hf" and card.data.license == "cc-by-nc-sa-4.0"
    assert "tiny" in card.data.tags and card.data.eval_results[0].metric_value == 0.5

    # A path trained on the Hub-loaded model records the base repo and commit, and its card links to them.
    loaded.remove_path("depth")
    loaded.add_path("depth")
    folder = loaded.save_path("depth", tmp_path / "path")
    config = json.loads((folder / "path_config.json").read_text())
    assert config["base_model"]["name_or_path"] == repo_id and config["base_model"]["revision"] == commit.oid
    assert ModelCard.load(folder / "README.md").data.base_model == repo_id


def test_private_path_needs_the_token(hub, base_dir, repo_id):
    model = _with_depth_path(base_dir)
    model.push_path_to_hub("depth", repo_id, token=TOKEN, private=True)
    assert hub.repos[repo_id].private
    anonymous = CodeBindModel.from_pretrained(base_dir)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.load_path(repo_id, token=False)
    assert anonymous.list_paths() == []
    fresh = CodeBindModel.from_pretrained(base_dir).eval()
    fresh.load_path(repo_id, token=TOKEN)
    assert torch.equal(_concat(fresh), _concat(model))


def test_failed_upload_keeps_local_files_and_never_shows_the_token(hub, base_dir, repo_id, tmp_path):
    model = _with_depth_path(base_dir)
    folder = model.save_path("depth", tmp_path / "mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    api = HfApi(token=TOKEN)
    api.create_repo(repo_id)
    hub.fail("commit", 403, "Forbidden for {authorization}")  # a server (or proxy) that echoes credentials
    with pytest.raises(HfHubHTTPError) as raw:  # control: the client alone would show the token
        api.upload_folder(repo_id=repo_id, folder_path=folder)
    assert TOKEN in str(raw.value)

    with pytest.raises(HfHubHTTPError) as info:
        model.push_path_to_hub("depth", repo_id, token=TOKEN)
    shown = "".join(traceback.format_exception(info.value))
    assert "Forbidden for Bearer hf_***" in str(info.value) and TOKEN not in shown
    with pytest.raises(HfHubHTTPError) as info:
        model.push_to_hub(repo_id, token=TOKEN)
    assert TOKEN not in "".join(traceback.format_exception(info.value))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert len(hub.commits(repo_id)) == 1  # only the repo's initial commit



def test_the_fixture_points_the_client_at_loopback_only(hub):
    from huggingface_hub import constants

    assert constants.ENDPOINT == hub.endpoint and not constants.is_offline_mode()
    with pytest.raises(OSError, match="only resolve 127.0.0.1, not huggingface.co"):
        socket.getaddrinfo("huggingface.co", 443)
    with socket.socket() as sock, pytest.raises(OSError, match="only connect to 127.0.0.1, not 10.0.0.1"):
        sock.connect(("10.0.0.1", 443))
