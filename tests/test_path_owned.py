"""Path-owned bridge heads and CLS tokens (``variants.bridge_heads: official``, the authors' per-path training of the
vision/text heads and CLS tokens): what the switch builds and trains, the path artifact, two paths side by side."""

import json

import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CodeBindModel
from codebind_hf.adapters.lora import add_lora
from codebind_hf.adapters.path_owned import path_owned_names
from codebind_hf.adapters.paths import base_model_fingerprint
from codebind_hf.losses.objective import PathObjective
from codebind_hf.training.config import PathArguments, TrainConfig
from codebind_hf.training.path_setup import configure_trainable
from codebind_hf.training.train_path import train
from tiny_models import BERT, VIT, mark_codebooks_trained, tiny_config
from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir

pytestmark = pytest.mark.usefixtures("one_thread")
IMAGES = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
DEPTH = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
TEXT = torch.randint(1, 99, (3, 6), generator=torch.Generator().manual_seed(3))
OWN = {"bridges": ["text", "vision"], "variants": {"bridge_heads": "official"}}
CLS = "backbone.embeddings.cls_token"


def _two_path_config(depth=OWN, thermal=OWN):
    """text + vision bridges, depth and thermal targets (1-channel ViTs), no decoder."""
    modalities = {"text": {"family": "hf", "backbone": BERT}, "vision": {"family": "hf", "backbone": VIT},
                  "depth": {"family": "hf", "backbone": {**VIT, "num_channels": 1}},
                  "thermal": {"family": "hf", "backbone": {**VIT, "num_channels": 1}}}
    return tiny_config(decoder=False, modalities=modalities, paths={"depth": depth, "thermal": thermal})


def _perturb(model, prefix, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.startswith(prefix) and tensor.is_floating_point():
                tensor.add_(0.3 * torch.randn(tensor.shape, generator=generator))


def _base_vision(model, images):
    """The base model's vision embedding, computed by hand from its tower and shared head."""
    pooled, _ = model.tower_outputs("vision", images)
    return F.normalize(model.shared_heads["vision"](pooled), dim=-1)


def test_the_switch_builds_copies_of_the_bridge_heads_and_cls_tokens():
    paper = CodeBindModel(tiny_config(decoder=False))
    assert path_owned_names(paper, "depth") == [] and not [k for k in paper.state_dict() if k.startswith("path_owned.")]
    model = CodeBindModel(tiny_config(decoder=False, paths={"depth": OWN}))
    assert path_owned_names(model, "depth") == [
        "shared_heads.text", "logit_scales.text", "shared_heads.vision", "logit_scales.vision",
        f"towers.vision.{CLS}", f"towers.depth.{CLS}"]  # BERT has no CLS token tensor
    state = model.state_dict()
    owned = sorted(k for k in state if k.startswith("path_owned."))
    base_names = sorted(k[len("path_owned.depth."):] for k in owned)
    assert base_names == sorted(k for k in state if k.startswith(("shared_heads.text.", "shared_heads.vision.",
                                                                   "logit_scales.text.", "logit_scales.vision."))
                                or k in (f"towers.vision.{CLS}", f"towers.depth.{CLS}"))
    for name in base_names:  # a fresh copy is the base tensor
        assert torch.equal(state["path_owned.depth." + name], state[name]), name
    # A fulltune path carries its whole target tower already: no copy of its CLS token.
    full = CodeBindModel(tiny_config(decoder=False, paths={"depth": {**OWN, "mode": "fulltune"}}))
    assert f"towers.depth.{CLS}" not in path_owned_names(full, "depth")


@pytest.mark.parametrize("mode", ["lora", "headtune"])
def test_the_switch_makes_exactly_those_copies_trainable(mode):
    def trainable(variant):
        model = CodeBindModel(tiny_config(decoder=False, paths={"depth": {**OWN, "variants": {"bridge_heads": variant},
                                                                          "mode": mode, "lora_last_n_blocks": 1}}))
        args = PathArguments(target="depth", mode=mode, lora_last_n_blocks=1)
        return model, set(configure_trainable(model, "depth", args, ["text", "vision", "depth"]))

    _, paper = trainable("paper")
    model, official = trainable("official")
    added = official - paper
    assert not paper - official and not [k for k in paper if k.startswith("path_owned.")]
    assert added == {k for k, v in model.named_parameters() if k.startswith("path_owned.depth.") and ".logit_scales." not in k}
    assert f"path_owned.depth.towers.vision.{CLS}" in added and "path_owned.depth.shared_heads.text.proj.weight" in added
    # the base's bridge heads and towers stay frozen
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(("shared_heads.vision", "towers.vision")))


def test_two_paths_give_different_vision_embeddings_and_the_base_head_is_unchanged():
    model = mark_codebooks_trained(CodeBindModel(_two_path_config()).eval())
    base_head = {k: v.clone() for k, v in model.shared_heads["vision"].state_dict().items()}
    expected_base = _base_vision(model, IMAGES)
    _perturb(model, "path_owned.depth.", seed=4)
    _perturb(model, "path_owned.thermal.", seed=5)
    via_depth = model.get_features("vision", IMAGES, path="depth", quantize=False)
    via_thermal = model.get_features("vision", IMAGES, path="thermal", quantize=False)
    assert (via_depth - via_thermal).abs().max() > 0.05
    # the depth path's vision embedding is its own head on its own CLS token
    with torch.no_grad():
        pooled, _ = model.tower_outputs("vision", IMAGES, path="depth")
        owned = model.path_owned["depth"]
        hand = F.layer_norm(pooled, (32,), owned.shared_heads.vision.norm.weight, owned.shared_heads.vision.norm.bias,
                            eps=1e-6) @ owned.shared_heads.vision.proj.weight.T
        assert not torch.allclose(pooled, model.tower_outputs("vision", IMAGES)[0])  # the CLS token is the path's
    assert torch.allclose(via_depth, F.normalize(hand, dim=-1), atol=1e-6)
    # the base head and the base embedding are untouched; no path given (vision is in two) is the base's
    assert all(torch.equal(v, base_head[k]) for k, v in model.shared_heads["vision"].state_dict().items())
    assert torch.allclose(model.get_features("vision", IMAGES, quantize=False), expected_base, atol=1e-6)
    # quantised and specific features of each path use its own heads too
    assert not torch.allclose(model.get_features("vision", IMAGES, path="depth", part="concat"),
                              model.get_features("vision", IMAGES, path="thermal", part="concat"))


def test_a_path_without_its_own_copies_keeps_the_base_heads():
    model = CodeBindModel(_two_path_config(thermal={"bridges": ["text", "vision"]})).eval()
    assert "thermal" not in model.path_owned and "depth" in model.path_owned
    _perturb(model, "path_owned.depth.", seed=4)
    assert torch.allclose(model.get_features("vision", IMAGES, path="thermal", quantize=False),
                          _base_vision(model, IMAGES), atol=1e-6)
    assert not torch.allclose(model.get_features("vision", IMAGES, path="depth", quantize=False),
                              _base_vision(model, IMAGES), atol=1e-3)


def test_save_path_and_load_path_round_trip_the_copies(tmp_path):
    torch.manual_seed(0)
    CodeBindModel(tiny_config(decoder=False, paths={})).save_pretrained(tmp_path / "base")
    trained = CodeBindModel.from_pretrained(tmp_path / "base")
    fingerprint = base_model_fingerprint(trained, "depth", OWN)
    trained.add_path("depth", {**OWN, "lora_last_n_blocks": 1})
    add_lora(trained, "depth")
    mark_codebooks_trained(trained)
    _perturb(trained, "path_owned.depth.", seed=6)
    _perturb(trained, "specific_heads.depth.", seed=7)
    trained.eval()
    folder = trained.save_path("depth", tmp_path / "path")
    recorded = json.loads((folder / "path_config.json").read_text())
    assert recorded["path"]["variants"]["bridge_heads"] == "official"
    assert f"path_owned.depth.towers.vision.{CLS}" in recorded["shapes"]
    # the copies are the path's, not the base's: the recorded fingerprint is the frozen base's
    assert recorded["base_model"]["fingerprint"] == fingerprint

    fresh = CodeBindModel.from_pretrained(tmp_path / "base").eval()
    base_vision = fresh.get_features("vision", IMAGES, quantize=False)
    fresh.load_path(folder)
    for name, tensor in trained.state_dict().items():
        if name.startswith("path_owned."):
            assert torch.equal(fresh.state_dict()[name], tensor), name
    for modality, x in (("vision", IMAGES), ("text", TEXT)):
        for part in ("shared",) + (("specific", "concat") if modality == "vision" else ()):
            assert torch.equal(fresh.get_features(modality, x, path="depth", part=part),
                               trained.get_features(modality, x, path="depth", part=part)), (modality, part)
    assert torch.equal(fresh.get_features("depth", DEPTH, part="concat"), trained.get_features("depth", DEPTH, part="concat"))
    fresh.remove_path("depth")
    assert "depth" not in fresh.path_owned and not [k for k in fresh.state_dict() if k.startswith("path_owned.")]
    assert torch.equal(fresh.get_features("vision", IMAGES, quantize=False), base_vision)


def test_the_model_folder_round_trips_the_copies(tmp_path):
    model = CodeBindModel(_two_path_config()).eval()
    _perturb(model, "path_owned.", seed=8)
    model.save_pretrained(tmp_path / "model")
    again = CodeBindModel.from_pretrained(tmp_path / "model").eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert torch.equal(again.get_features("vision", IMAGES, path="thermal", quantize=False),
                       model.get_features("vision", IMAGES, path="thermal", quantize=False))


def test_the_training_forward_sends_gradients_to_the_copied_cls_token_only():
    model = CodeBindModel(tiny_config(decoder=False, paths={"depth": {**OWN, "lora_last_n_blocks": 1}}))
    configure_trainable(model, "depth", PathArguments(target="depth", lora_last_n_blocks=1), ["text", "vision", "depth"])
    mark_codebooks_trained(model)
    objective = PathObjective(model, "depth").train()
    out = objective({"vision": IMAGES, "depth": DEPTH, "text": TEXT})
    out["loss"].backward()
    owned = model.path_owned["depth"]
    assert owned.towers.vision.backbone.embeddings.cls_token.grad.abs().sum() > 0
    assert owned.shared_heads.vision.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.towers["vision"].parameters())  # the base tower stays frozen
    assert all(p.grad is None for p in model.shared_heads["vision"].parameters())
    assert not model.towers["vision"].training  # dropout and drop-path stay off in the frozen bridge


def test_codebind_train_trains_the_copies_with_the_cache_on_and_leaves_the_base_alone(tmp_path):
    workdir = tiny_training_workdir(tmp_path / "work")
    values = tiny_run_values(workdir, tmp_path / "run", str(workdir / "data"), max_train_steps=3, checkpointing_steps=None)
    values["path"]["variants"] = {"bridge_heads": "official"}
    values["cache"] = {"enabled": True}  # text is cached; vision, whose CLS token trains, runs live
    result = train(TrainConfig.from_dict(values), processor=ToyProcessor())
    base = CodeBindModel.from_pretrained(workdir / "base").state_dict()
    state = result.model.state_dict()
    for name in ("shared_heads.vision.proj.weight", "shared_heads.text.proj.weight", f"towers.vision.{CLS}"):
        assert torch.equal(state[name], base[name]), name
        assert not torch.equal(state["path_owned.depth." + name], base[name]), name
    assert torch.equal(state["path_owned.depth.logit_scales.text.log_logit_scale"], base["logit_scales.text.log_logit_scale"])
    recorded = json.loads((result.path_dir / "path_config.json").read_text())
    assert recorded["path"]["variants"]["bridge_heads"] == "official"
    fresh = CodeBindModel.from_pretrained(workdir / "base").eval()
    fresh.load_path(result.path_dir)
    assert torch.allclose(fresh.get_features("vision", IMAGES, path="depth"),
                          result.model.eval().get_features("vision", IMAGES, path="depth"), atol=1e-6)


def test_a_meta_device_model_initialises_the_copies_as_the_base_tensors():
    with torch.device("meta"):
        model = CodeBindModel(_two_path_config())
    model.to_empty(device="cpu")
    model.init_weights()
    state = model.state_dict()
    owned = [k for k in state if k.startswith("path_owned.")]
    assert len(owned) == 2 * 10
    for name in owned:
        base = state[name.split(".", 2)[2]]
        assert torch.equal(state[name], base) and torch.isfinite(base).all(), name
    assert state[f"towers.vision.{CLS}"].std() > 0  # initialised, not left empty
