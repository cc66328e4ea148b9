"""The ablation switches of the paper (Tables 6-7, Fig. 9, App. C.3): each changes what the model builds and what
the loss sums, on a tiny model and through the path trainer."""

import pytest
import torch

from codebind_hf import CodeBindModel
from codebind_hf.training.config import TrainConfig
from codebind_hf.training.train_path import train
from tiny_models import mark_codebooks_trained, tiny_config
from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir

pytestmark = pytest.mark.usefixtures("one_thread")
ALL_TERMS = {"align", "recon", "vq", "ctr", "cuni", "cm", "orth", "uni"}


def _model(**path) -> CodeBindModel:
    # random codebooks flagged trained: these tests check what each switch builds and quantises, not training
    return mark_codebooks_trained(CodeBindModel(tiny_config(paths={"depth": {"bridges": ["text", "vision"], **path}})))


def _batch(n: int = 4) -> dict:
    return {"input_ids": torch.randint(1, 100, (n, 6)), "pixel_values": torch.randn(n, 3, 16, 16),
            "depth_values": torch.randn(n, 1, 16, 16)}


def _path_keys(model) -> set[str]:
    return {k.rsplit(".", 1)[0] for k in model.state_dict() if k.startswith(("quantizers.depth.", "specific_heads.depth."))}


def test_no_codebooks_builds_none_and_drops_the_code_terms():
    model = _model(use_codebooks=False)
    assert not any(k.startswith("quantizers.") for k in model.state_dict())
    out = model.train()(**_batch(), return_loss=True)
    assert set(out.loss_breakdown) == {"align", "recon", "orth", "uni"}
    weights = model.config.path_config("depth").loss_weights
    assert torch.allclose(out.loss, sum(weights[k] * v for k, v in out.loss_breakdown.items()))
    model.eval()
    depth = torch.randn(2, 1, 16, 16)
    assert torch.equal(model.get_features("depth", depth), model.get_features("depth", depth, quantize=False))
    assert model(depth_values=depth).codes == {}


def test_no_decoupling_builds_no_specific_part_and_drops_its_terms():
    model = _model(use_decoupling=False)
    assert model.config.paths["depth"]["use_reconstruction"] is False  # nothing to reconstruct from
    assert _path_keys(model) == {"quantizers.depth.shared"}
    out = model.train()(**_batch(), return_loss=True)
    assert set(out.loss_breakdown) == {"align", "vq", "ctr", "cuni", "cm"}
    with pytest.raises(ValueError, match="no specific part"):
        model.get_features("depth", torch.randn(1, 1, 16, 16), part="concat")


def test_no_reconstruction_drops_only_the_decoder_term():
    model = _model(use_reconstruction=False)
    out = model.train()(**_batch(), return_loss=True)
    assert set(out.loss_breakdown) == ALL_TERMS - {"recon"}
    out.loss.backward()
    assert all(p.grad is None for p in model.decoder.parameters())  # the decoder is never run


def test_a_shared_codebook_per_modality():
    model = _model(shared_codebook="modality")
    books = model.quantizers["depth"]
    assert sorted(books.codebooks()) == ["shared.depth", "shared.text", "shared.vision", "specific.depth", "specific.vision"]
    assert {"quantizers.depth.shared.text", "quantizers.depth.shared.vision", "quantizers.depth.shared.depth"} <= _path_keys(model)
    assert "quantizers.depth.shared" not in _path_keys(model)
    model.eval()
    text = torch.randint(1, 100, (3, 6))
    unquantised = model.shared_heads["text"](model.towers["text"](text).last_hidden_state[:, 0])
    assert torch.equal(model(input_ids=text).codes["text"], books.shared_for("text")(unquantised).indices)
    out = model.train()(**_batch(), return_loss=True)
    assert set(out.loss_breakdown) == ALL_TERMS


def test_standard_vq_and_codebook_sizes():
    model = _model(quantizer={"codevector_dim": 32, "shared_codebook_size": 16, "specific_codebook_size": 12})
    books = model.quantizers["depth"]
    assert books.shared.codebook.shape == (16, 32) and books.specific["depth"].codebook.shape == (12, 32)
    model.eval()
    assert model(depth_values=torch.randn(2, 1, 16, 16)).codes["depth"].shape == (2, 1)  # one index per vector
    compositional = _model()
    assert compositional(depth_values=torch.randn(2, 1, 16, 16)).codes["depth"].shape == (2, 4)
    # (config errors arrive wrapped in huggingface_hub's StrictDataclassClassValidationError)
    with pytest.raises(Exception, match="codevector_dim=12 must divide embed_dim=32"):
        _model(quantizer={"codevector_dim": 12})
    with pytest.raises(Exception, match="Unknown paths\\['depth'\\].quantizer keys"):
        _model(quantizer={"codebook_dim": 8})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_training_workdir(tmp_path_factory.mktemp("ablations"))


@pytest.mark.parametrize("switches, books", [
    ({"use_codebooks": False}, []),
    ({"shared_codebook": "modality"}, ["shared.depth", "shared.text", "shared.vision", "specific.depth", "specific.vision"]),
    ({"use_decoupling": False, "quantizer": {"codevector_dim": 32}}, ["shared"]),
])
def test_the_path_trainer_runs_each_ablation(switches, books, workdir, tmp_path):
    values = tiny_run_values(workdir, tmp_path / "run", str(workdir / "data"), max_train_steps=2, checkpointing_steps=None,
                             save_full_model=False)
    values["path"].update(switches)
    result = train(TrainConfig.from_dict(values), processor=ToyProcessor())
    model = result.model
    assert sorted(model.quantizers["depth"].codebooks()) == books
    assert all(bool(b.initialized) for b in model.quantizers["depth"].codebooks().values())  # k-means ran on each
    last = next(entry for entry in reversed(result.log_history) if "loss" in entry)
    logged = {k.split("/", 1)[1] for k in last if k.startswith("loss/")}
    expected = set(ALL_TERMS)
    if not switches.get("use_codebooks", True):
        expected -= {"vq", "ctr", "cuni", "cm"}
    if not switches.get("use_decoupling", True):
        expected -= {"orth", "uni", "recon"}
    assert logged == expected
