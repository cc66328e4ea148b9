"""Projector-only binding (``path.mode: projector``) and graded soft targets (``data.columns.grade``).

Projector runs: the loss falls, only the projector changes (towers and bridge heads bit-exact), the artifact
reloads into a fresh base with identical embeddings and refuses another base, an interrupted run resumes exactly.
Soft targets: `info_nce` against a hand computation and the plain loss, `grade_targets`' matrix, and what a grade
column does to the training loss.
"""

import json
import math

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CodeBindModel
from codebind_hf.losses.functional import info_nce
from codebind_hf.training.config import TrainConfig, load_config_file
from codebind_hf.losses.objective import PathObjective, ProjectorObjective, grade_targets
from codebind_hf.adapters.projector import PROJECTOR_WEIGHTS, ProjectorHead, attach_projector, load_projector
from codebind_hf.training.train_path import train
from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir, toy_columns, toy_dataset_dict
from tiny_models import tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_training_workdir(tmp_path_factory.mktemp("projector"))


def projector_config(workdir, output_dir, dataset=None, **training) -> TrainConfig:
    values = tiny_run_values(workdir, output_dir, dataset if dataset is not None else str(workdir / "data"),
                             **{"max_train_steps": 30, "checkpointing_steps": None, **training})
    values["path"].update(mode="projector", loss_weights={}, projector_hidden_dim=48)
    values["cache"] = {"dir": str(workdir / "cache")}  # shared by the runs of this file: built once per data
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def projector_run(workdir):
    torch.set_num_threads(1)
    output = workdir / "run"
    return train(projector_config(workdir, output), processor=ToyProcessor()), output


# ---------------------------------------------------------------------------------------------- projector mode
def test_projector_mode_trains_only_the_projector_and_the_loss_falls(projector_run, workdir):
    result, output = projector_run
    assert len(result.losses) == 30
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) - 1.5, result.losses
    assert {k for e in result.log_history if "loss" in e for k in e if k.startswith("loss/")} == {"loss/align"}
    assert result.metrics["zero_shot/acc1"] >= 0.75  # 4 classes: chance 0.25
    model = result.model
    assert isinstance(model.shared_heads["depth"], ProjectorHead) and model.shared_heads["depth"].hidden_dim == 48
    assert model.list_paths() == [] and model.decoder is None  # no codebooks, specific heads or decoder
    base = CodeBindModel.from_pretrained(workdir / "base").state_dict()
    trained = model.state_dict()
    frozen = [k for k in base if not k.startswith("shared_heads.depth.")]
    assert any(k.startswith("towers.depth.") for k in frozen) and any(k.startswith("shared_heads.vision.") for k in frozen)
    assert all(torch.equal(base[k], trained[k]) for k in frozen)  # towers and bridge heads bit-exact
    projector_keys = {f"shared_heads.depth.{n}" for n in model.shared_heads["depth"].state_dict()}
    assert set(trained) == set(frozen) | projector_keys and "shared_heads.depth.fc2.weight" in projector_keys
    (cache,) = (workdir / "cache").iterdir()  # every tower was cached
    assert {"text", "vision", "depth"} <= set(json.loads((cache / "cache_info.json").read_text())["modalities"])
    assert result.projector_dir == output / "projector" and not (output / "model").exists() and not (output / "path").exists()


@torch.no_grad()
def test_projector_artifact_reloads_into_a_fresh_base_and_refuses_another(projector_run, workdir, tmp_path):
    result, output = projector_run
    fresh = CodeBindModel.from_pretrained(workdir / "base").eval()
    assert load_projector(fresh, output / "projector") == "depth"
    depth = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    trained = result.model.eval()
    assert torch.equal(fresh.get_features("depth", depth, quantize=False), trained.get_features("depth", depth, quantize=False))
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    base = CodeBindModel.from_pretrained(workdir / "base").eval()
    assert torch.equal(fresh.get_features("vision", images, quantize=False), base.get_features("vision", images, quantize=False))
    # a projector has no codebooks: the unquantised embedding, never random codevectors
    assert torch.equal(fresh.get_features("depth", depth), fresh.get_features("depth", depth, quantize=False))
    other = CodeBindModel.from_pretrained(workdir / "base").eval()
    other.towers["vision"].backbone.layers[0].attention.q_proj.weight.add_(0.5)
    with pytest.raises(ValueError, match="Base model mismatch"):
        load_projector(other, output / "projector")
    assert not isinstance(other.shared_heads["depth"], ProjectorHead)  # a refused load leaves the model alone
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in (output / "projector").iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    data = bytearray((broken / PROJECTOR_WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (broken / PROJECTOR_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted or truncated"):
        load_projector(fresh, broken)


def test_interrupted_projector_run_resumes_exactly(projector_run, workdir, tmp_path):
    result, _ = projector_run
    output = tmp_path / "resumed"
    first = train(projector_config(workdir, output, max_steps_this_run=12), processor=ToyProcessor())
    assert first.interrupted and first.global_step == 12 and not (output / "projector").exists()
    rest = train(projector_config(workdir, output, resume_from_checkpoint="latest"), processor=ToyProcessor())
    assert rest.steps_this_run == 18 and (output / "projector").is_dir()
    np.testing.assert_allclose(rest.losses, result.losses, rtol=0, atol=1e-6)
    for key, value in result.model.shared_heads["depth"].state_dict().items():
        assert torch.allclose(rest.model.shared_heads["depth"].state_dict()[key], value, atol=1e-6), key


def test_projector_settings_are_checked():
    values = load_config_file("tiny")
    values["path"].update(mode="projector", loss_weights={"vq": 1.0})
    with pytest.raises(ValueError, match="trains only the 'align' term"):
        TrainConfig.from_dict(values)
    values["path"].update(loss_weights={}, adaptive_weights=True)
    with pytest.raises(ValueError, match="has only 'align'"):
        TrainConfig.from_dict(values)


# ---------------------------------------------------------------------------------------------- soft targets
def test_soft_info_nce_equals_a_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    logits = [[2.0, 1.2], [0.0, 1.6]]  # a @ b.T / 0.5

    def cross_entropy(row, weights):  # -sum_j w_j log softmax(row)_j with w normalised
        total = sum(weights)
        log_z = math.log(sum(math.exp(x) for x in row))
        return -sum(w / total * (x - log_z) for w, x in zip(weights, row))

    a_to_b = (cross_entropy(logits[0], [1.0, 0.5]) + cross_entropy(logits[1], [0.0, 1.0])) / 2
    columns = [[logits[0][0], logits[1][0]], [logits[0][1], logits[1][1]]]
    b_to_a = (cross_entropy(columns[0], [1.0, 0.0]) + cross_entropy(columns[1], [0.5, 1.0])) / 2
    assert float(info_nce(a, b, 0.5, targets=targets)) == pytest.approx(a_to_b + b_to_a, rel=1e-12)
    assert a_to_b + b_to_a == pytest.approx(0.797472, abs=1e-6)  # worked by hand: (0.637768 + 0.183901 + 0.126928 + 0.646347) / 2


def test_identity_targets_equal_the_plain_loss():
    generator = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    b = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    plain = info_nce(a, b, 0.1)
    assert torch.allclose(info_nce(a, b, 0.1, targets=torch.eye(6)), plain, rtol=0, atol=1e-6)
    assert torch.allclose(info_nce(a, b, 0.1, targets=3 * torch.eye(6)), plain, rtol=0, atol=1e-6)  # rows normalised
    assert torch.allclose(info_nce(a, b, 0.1, targets=grade_targets(torch.ones(6))), plain, rtol=0, atol=1e-6)
    assert not torch.allclose(info_nce(a, b, 0.1, targets=grade_targets(torch.full((6,), 0.5))), plain, atol=1e-3)


def test_grade_targets_matrix_and_bad_grades():
    targets = grade_targets(torch.tensor([1.0, 0.5, 0.0, 1.0]))
    # off-diagonal: ((1 - g_i) + (1 - g_j)) / (2 * 3)
    expected = torch.tensor([[1.0, 1 / 12, 1 / 6, 0.0], [1 / 12, 0.5, 1 / 4, 1 / 12],
                             [1 / 6, 1 / 4, 0.0, 1 / 6], [0.0, 1 / 12, 1 / 6, 1.0]])
    assert torch.allclose(targets, expected, atol=1e-7) and torch.equal(targets, targets.t())
    assert torch.equal(grade_targets(torch.ones(5)), torch.eye(5))
    for bad in (torch.tensor([1.0, 1.5]), torch.tensor([float("nan"), 1.0]), torch.tensor([1.0])):
        with pytest.raises(ValueError, match="grades"):
            grade_targets(bad)


def test_projector_objective_uses_grade_targets_and_lower_grades_cost_more_on_aligned_pairs():
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False)).eval()
    attach_projector(model, "depth", 16)
    objective = ProjectorObjective(model, "depth", ["text", "vision"], temperature=0.1).eval()
    cached = {m: torch.randn(6, 32) for m in ("text", "vision", "depth")}
    grades = torch.tensor([1.0, 0.5, 0.0, 1.0, 0.5, 1.0])
    with torch.no_grad():
        out = objective(inputs={}, cached=cached, grades=grades)
        unit = {m: F.normalize(model.shared_heads[m](x), dim=-1) for m, x in cached.items()}
    expected = sum(info_nce(unit["depth"], unit[b], 0.1, grade_targets(grades)) for b in ("text", "vision"))
    assert torch.allclose(out["loss"], expected, rtol=0, atol=1e-6) and out["records"] == []
    # Perfectly aligned pairs: the less a pair is graded a match, the more its alignment costs.
    aligned = unit["vision"]
    costs = [float(info_nce(aligned, aligned, 0.1, grade_targets(torch.full((6,), g)))) for g in (1.0, 0.5, 0.0)]
    assert costs[0] < costs[1] < costs[2], costs


def test_grades_in_the_path_objective_change_only_the_target_bridge_terms():
    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False)).eval()
    ids = torch.randint(1, 99, (6, 5))
    inputs = {"text": ids, "vision": torch.randn(6, 3, 16, 16), "depth": torch.randn(6, 1, 16, 16)}
    objective = PathObjective(model, "depth").eval()
    with torch.no_grad():
        plain = objective(inputs=inputs)["breakdown"]
        ones = objective(inputs=inputs, grades=torch.ones(6))["breakdown"]
        graded = objective(inputs=inputs, grades=torch.tensor([1.0, 0.5, 0.0, 1.0, 1.0, 0.5]))["breakdown"]
    assert all(torch.allclose(ones[k], plain[k], rtol=0, atol=1e-6) for k in plain)
    assert not torch.allclose(graded["align"], plain["align"], atol=1e-4)
    assert all(torch.equal(graded[k], plain[k]) for k in plain if k != "align")


def test_a_grade_column_feeds_the_trainer(workdir, tmp_path):
    columns = toy_columns(32, seed=3)
    rows = len(columns["label"])
    features = toy_dataset_dict()["train"].features
    plain = datasets.Dataset.from_dict(columns, features=features)
    graded = {name: plain.add_column("grade", values) for name, values in
              (("ones", [1.0] * rows), ("mixed", [(0.0, 0.5, 1.0)[i % 3] for i in range(rows)]))}
    run = {}
    for name, dataset in (("plain", plain), *graded.items()):
        config = projector_config(workdir, tmp_path / name, dataset=datasets.DatasetDict({"train": dataset}), max_train_steps=4)
        if name != "plain":
            config.data.columns["grade"] = "grade"
        run[name] = train(config, processor=ToyProcessor()).losses
    np.testing.assert_allclose(run["ones"], run["plain"], rtol=0, atol=1e-6)  # all-positive grades: plain InfoNCE
    assert abs(run["mixed"][0] - run["plain"][0]) > 1e-3
    bad = plain.add_column("grade", [2.0] + [1.0] * (rows - 1))
    config = projector_config(workdir, tmp_path / "bad", dataset=datasets.DatasetDict({"train": bad}), max_train_steps=1)
    config.data.columns["grade"] = "grade"
    with pytest.raises(ValueError, match=r"row 0, column 'grade': a grade must lie in \[0, 1\]"):
        train(config, processor=ToyProcessor())


@pytest.mark.parametrize("disable", [False, True])
def test_disable_tqdm_switches_the_progress_bar_off(workdir, tmp_path, capfd, disable):
    train(projector_config(workdir, tmp_path / "run", max_train_steps=3, disable_tqdm=disable), processor=ToyProcessor())
    bar = "path depth:" in capfd.readouterr().err
    assert bar is not disable
