"""Per-modality specific widths and codevector widths (the authors' layout: e.g. vision 24, depth 16, text 0)."""

import json

import pytest
import torch

from codebind_hf import CodeBindConfig, CodeBindModel
from tiny_models import mark_codebooks_trained, tiny_config

DEPTH = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))
IMAGES = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
WIDTHS = {"specific_dims": {"vision": 24, "depth": 16, "text": 0},
          "quantizer": {"shared_codebook_size": 64, "specific_codebook_size": 32, "specific_codevector_dims": {"depth": 4}}}


def _narrow(**path):
    paths = {"depth": {"bridges": ["text", "vision"], "loss_weights": {"orth": 0.0}, **path}}
    return tiny_config(decoder=False, paths=paths, **WIDTHS)


def test_defaults_are_unchanged():
    config = tiny_config()
    assert config.specific_dims == {} and config.quantizer["specific_codevector_dims"] == {}
    assert [config.specific_width(m) for m in ("text", "vision", "depth")] == [0, 32, 32]
    model = CodeBindModel(config)
    assert model.specific_heads["depth"]["vision"].proj.weight.shape == (32, 32)
    assert model.quantizers["depth"].specific["depth"].codebook.shape == (32, 8)
    assert model._path_dims("depth") == {"embed_dim": 32, "specific_dim": 32, "tower_hidden_size": 32}


def test_each_modality_gets_its_width_and_codevector_width():
    config = _narrow()
    assert [config.specific_width(m) for m in ("text", "vision", "depth")] == [0, 24, 16]
    model = mark_codebooks_trained(CodeBindModel(config).eval())
    heads, books = model.specific_heads["depth"], model.quantizers["depth"]
    assert heads["vision"].proj.weight.shape == (24, 32) and heads["depth"].proj.weight.shape == (16, 32)
    assert books.shared.codebook.shape == (64, 8)  # the shared codebook keeps codevector_dim
    assert books.specific["vision"].codebook.shape == (32, 8) and books.specific["depth"].codebook.shape == (32, 4)
    assert model.get_features("depth", DEPTH, part="specific").shape == (3, 16)
    assert model.get_features("depth", DEPTH, part="concat").shape == (3, 48)
    assert model.get_features("vision", IMAGES, part="concat").shape == (3, 56)
    out = model(pixel_values=IMAGES, depth_values=DEPTH)
    assert out.specific_embeds["depth"].shape == (3, 16) and out.embeds["vision"].shape == (3, 56)
    # 16 / 4 = 4 specific codes per depth vector, 24 / 8 = 3 per image
    assert books.specific_for("depth")(torch.randn(2, 16)).indices.shape == (2, 4)


def test_saved_config_and_path_artifact_carry_the_widths(tmp_path):
    model = CodeBindModel(_narrow()).eval()
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["specific_dims"] == {"vision": 24, "depth": 16, "text": 0}
    assert saved["quantizer"]["specific_codevector_dims"] == {"depth": 4}
    again = CodeBindModel.from_pretrained(tmp_path / "model")
    assert again.specific_heads["depth"]["depth"].proj.weight.shape == (16, 32)
    mark_codebooks_trained(model)
    folder = model.save_path("depth", tmp_path / "path")
    recorded = json.loads((folder / "path_config.json").read_text())
    assert recorded["dims"]["specific_dims"] == {"vision": 24, "depth": 16}
    base = CodeBindModel.from_pretrained(tmp_path / "model")
    base.remove_path("depth")
    base.load_path(folder)
    assert torch.equal(base.get_features("depth", DEPTH, part="concat"), model.get_features("depth", DEPTH, part="concat"))
    # A base whose depth width differs is refused before anything is loaded, naming both sides.
    other = CodeBindModel(tiny_config(decoder=False, paths={}, specific_dims={"vision": 24, "depth": 8}))
    with pytest.raises(ValueError, match="specific_dims.*the path has .*'depth': 16"):
        other.load_path(folder)
    assert other.list_paths() == []


def test_an_older_artifact_without_the_new_quantizer_key_still_loads(tmp_path):
    model = mark_codebooks_trained(CodeBindModel(tiny_config(decoder=False)).eval())
    folder = model.save_path("depth", tmp_path / "path")
    config_file = folder / "path_config.json"
    recorded = json.loads(config_file.read_text())
    del recorded["quantizer"]["specific_codevector_dims"]  # what a release before per-modality widths wrote
    config_file.write_text(json.dumps(recorded))
    model.load_path(folder, replace=True)
    assert model.list_paths() == ["depth"]


@pytest.mark.parametrize("overrides, message", [
    ({"specific_dims": {"depth": 12}}, r"specific_dims\['depth'\]=12 must be a multiple of its specific codevector width 8"),
    ({"specific_dims": {"thermal": 8}}, "specific_dims names modalities without a tower: \\['thermal'\\]"),
    ({"specific_dims": {"text": 8}}, r"specific_dims\['text'\]=8: must be >= 0, and 0 for a modality without"),
    ({"specific_dims": {"depth": -8}}, r"specific_dims\['depth'\]=-8: must be >= 0"),
    ({"specific_dims": {"depth": 16.0}}, "specific_dims: every width must be an int"),
    ({"quantizer": {"specific_codevector_dims": {"depth": 0}}}, "specific_codevector_dims must be positive"),
    ({"quantizer": {"specific_codevector_dims": {"vision": 5}}}, "vision specific codevector width 5 must divide its specific width 32"),
])
def test_widths_are_validated(overrides, message):
    with pytest.raises(Exception, match=message):  # config errors arrive wrapped by huggingface_hub's strict dataclass
        tiny_config(decoder=False, **overrides)


def test_a_zero_width_turns_the_specific_part_off():
    config = tiny_config(decoder=False, specific_dims={"vision": 0})
    assert not config.has_specific("vision") and config.specific_width("vision") == 0
    model = CodeBindModel(config)
    assert sorted(model.specific_heads["depth"]) == ["depth"] and sorted(model.quantizers["depth"].specific) == ["depth"]


def test_orthogonality_needs_full_width_specific_parts():
    for variant in ("paper", "official"):  # both pair shared and specific dimensions one to one
        with pytest.raises(Exception, match="orthogonality loss, which needs specific_dim == embed_dim for every "
                                             "modality with a specific part; embed_dim=32, specific widths "
                                             "\\{'vision': 24, 'depth': 16\\}"):
            tiny_config(decoder=False, paths={"depth": {"variants": {"orthogonality": variant}}}, **WIDTHS)
    tiny_config(decoder=False, paths={"depth": {"loss_weights": {"orth": 0.0}}}, **WIDTHS)
    tiny_config(decoder=False, paths={"depth": {"use_decoupling": False}}, **WIDTHS)  # no specific part at all


def test_the_decoder_refuses_modalities_of_different_widths():
    with pytest.raises(ValueError, match="one specific width for the modalities it reconstructs; got \\{'vision': 24, 'depth': 16\\}"):
        CodeBindModel(tiny_config(decoder=True, paths={"depth": {"loss_weights": {"orth": 0.0}}}, **WIDTHS))
    equal = CodeBindModel(tiny_config(decoder=True, specific_dims={"vision": 16, "depth": 16}, paths={
        "depth": {"loss_weights": {"orth": 0.0}}}))
    assert equal.decoder.input_proj.in_features == 32 + 16


def test_path_quantizer_overrides_take_per_modality_codevector_widths():
    config = tiny_config(decoder=False, paths={"depth": {"quantizer": {"codevector_dim": 32, "specific_codevector_dims": {
        "image": 8}}}})  # standard VQ for the shared part; the vision specific codebook keeps 8-wide codes
    model = CodeBindModel(config)
    assert model.quantizers["depth"].shared.codebook.shape == (64, 32)
    assert model.quantizers["depth"].specific["vision"].codebook.shape == (32, 8)
    assert model.quantizers["depth"].specific["depth"].codebook.shape == (32, 32)
    assert config.paths["depth"]["quantizer"]["specific_codevector_dims"] == {"vision": 8}
    assert CodeBindConfig(**config.to_dict()).paths["depth"]["quantizer"] == config.paths["depth"]["quantizer"]


def _per_path_config(**extra):
    from tiny_models import BERT, VIT

    modalities = {"text": {"family": "hf", "backbone": BERT}, "vision": {"family": "hf", "backbone": VIT},
                  "depth": {"family": "hf", "backbone": {**VIT, "num_channels": 1}},
                  "thermal": {"family": "hf", "backbone": {**VIT, "num_channels": 1}}}
    no_orth = {"loss_weights": {"orth": 0.0}}
    paths = {"depth": {**no_orth, "specific_dims": {"vision": 24, "depth": 16}},
             "thermal": {**no_orth, "specific_dims": {"image": 16}}}  # thermal keeps the model's 32
    return tiny_config(decoder=False, modalities=modalities, paths=paths, **extra)


def test_each_path_can_have_its_own_widths(tmp_path):
    config = _per_path_config()
    assert config.paths["thermal"]["specific_dims"] == {"vision": 16}
    assert [config.specific_width("vision", p) for p in ("depth", "thermal", None)] == [24, 16, 32]
    model = mark_codebooks_trained(CodeBindModel(config).eval())
    assert model.specific_heads["depth"]["vision"].proj.weight.shape == (24, 32)
    assert model.specific_heads["thermal"]["vision"].proj.weight.shape == (16, 32)
    assert model.specific_heads["thermal"]["thermal"].proj.weight.shape == (32, 32)
    assert model.get_features("vision", IMAGES, path="depth", part="specific").shape == (3, 24)
    assert model.get_features("vision", IMAGES, path="thermal", part="concat").shape == (3, 48)
    # The widths travel in the path's settings: the artifact loads onto a base that has none of its own.
    model.save_pretrained(tmp_path / "model")
    folder = model.save_path("depth", tmp_path / "depth-path")
    recorded = json.loads((folder / "path_config.json").read_text())
    assert recorded["path"]["specific_dims"] == {"vision": 24, "depth": 16} and "specific_dims" not in recorded["dims"]
    base = CodeBindModel.from_pretrained(tmp_path / "model")
    base.remove_path("depth")
    base.load_path(folder)
    assert torch.equal(base.get_features("depth", DEPTH, part="concat"), model.get_features("depth", DEPTH, part="concat"))


@pytest.mark.parametrize("specific_dims, message", [
    ({"thermal": 8}, r"paths\['depth'\].specific_dims names \['thermal'\], not modalities of the path"),
    ({"text": 8}, r"paths\['depth'\].specific_dims\['text'\]=8: must be >= 0, and 0 for a modality without"),
    ({"vision": -8}, r"specific_dims\['vision'\]=-8"),
    ({"vision": 20}, "the vision specific codevector width 8 must divide its specific width 20"),
])
def test_path_widths_are_validated(specific_dims, message):
    with pytest.raises(Exception, match=message):
        tiny_config(decoder=False, paths={"depth": {"loss_weights": {"orth": 0.0}, "specific_dims": specific_dims}})
