"""Staged training: stages run in order with their own data, length and loss weights; a run interrupted at a
stage boundary and again in the middle of stage 2 resumes to the weights and losses of an uninterrupted run."""

import json

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codebind_hf.configuration_codebind import normalize_path_config
from codebind_hf.training.checkpointing import trained_state_dict
from codebind_hf.training.config import TrainConfig, load_config_file
from codebind_hf.training.stages import FINAL_STATE, STAGE_STATE, stage_config
from codebind_hf.training.train_path import train
from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir, toy_columns, toy_dataset_dict

STAGES = [
    {"name": "auto", "max_train_steps": 6, "loss_weights": {"cm": 0.0}},
    {"name": "verified", "num_train_epochs": 1, "loss_weights": {"vq": 2.0, "align": 0.5}},  # 48 rows / 8: 6 steps
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tiny_training_workdir(tmp_path_factory.mktemp("stages"), data="tier_a")
    features = toy_dataset_dict()["train"].features
    tier_b = datasets.Dataset.from_dict(toy_columns(48, seed=7, noise=0.5), features=features)
    datasets.DatasetDict({"train": tier_b}).save_to_disk(str(root / "tier_b"))
    return root


def staged_config(workdir, output_dir, **training) -> TrainConfig:
    values = tiny_run_values(workdir, output_dir, str(workdir / "tier_a"), checkpointing_steps=2, logging_steps=1,
                             save_full_model=False, **training)
    stages = [dict(s) for s in STAGES]
    stages[1]["data"] = {"dataset": str(workdir / "tier_b")}
    values["stages"] = stages
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def straight(workdir):
    torch.set_num_threads(1)
    output = workdir / "straight"
    return train(staged_config(workdir, output), processor=ToyProcessor()), output


def test_stages_run_in_order_with_their_data_length_and_weights(straight):
    result, output = straight
    assert not result.interrupted and [s.global_step for s in result.stages] == [6, 6]
    assert result.global_step == 12 and result.losses == result.stages[0].losses + result.stages[1].losses
    folders = sorted(p.name for p in (output / "stages").iterdir())
    assert folders == ["00-auto", "01-verified"]
    second = json.loads((output / "stages" / "01-verified" / "train_config.json").read_text())
    assert second["data"]["dataset"].endswith("tier_b") and second["training"]["max_train_steps"] is None
    tiny_weights = load_config_file("tiny")["path"]["loss_weights"]
    for stage, spec in zip(result.stages, STAGES):
        expected = normalize_path_config("depth", {"loss_weights": {**tiny_weights, **spec["loss_weights"]}})["loss_weights"]
        assert stage.model.config.paths["depth"]["loss_weights"] == expected
        for entry in (e for e in stage.log_history if "loss" in e):  # logging_steps=1: the step's weighted total
            total = sum(expected[name] * entry[f"loss/{name}"] for name in expected)
            assert entry["loss"] == pytest.approx(total, rel=1e-5, abs=1e-5)
    assert [e["stage"] for e in result.log_history if "loss" in e] == ["auto"] * 6 + ["verified"] * 6
    # Stage 2 starts from stage 1's final tensors; every stage leaves its path artifact, the run's is the last one.
    handed = load_file(str(output / "stages" / "00-auto" / FINAL_STATE))
    first = trained_state_dict(result.stages[0].model, "depth")
    assert handed.keys() == first.keys() and all(torch.equal(handed[k], first[k]) for k in first)
    assert result.path_dir == output / "stages" / "01-verified" / "path" and result.path_dir.is_dir()
    assert (output / "stages" / "00-auto" / "path" / "path.safetensors").is_file()
    summary = json.loads((output / "train_results.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["auto", "verified"] and summary["global_step"] == 12


def test_stage_two_alone_from_the_handed_state_reproduces_the_staged_losses(straight, workdir, tmp_path):
    result, output = straight
    config = staged_config(workdir, tmp_path / "x")
    alone = stage_config(config, 1, init_state=output / "stages" / "00-auto" / FINAL_STATE)
    alone.training.output_dir = str(tmp_path / "alone")
    again = train(alone, processor=ToyProcessor())
    np.testing.assert_allclose(again.losses, result.stages[1].losses, rtol=0, atol=1e-6)
    # and the hand-off matters: stage 2 from scratch trains differently
    fresh = stage_config(config, 1)
    fresh.training.output_dir = str(tmp_path / "fresh")
    assert not np.allclose(train(fresh, processor=ToyProcessor()).losses[:2], result.stages[1].losses[:2], atol=1e-3)


def test_interrupted_at_a_boundary_and_in_stage_two_resumes_to_the_same_weights(straight, workdir, tmp_path):
    result, _ = straight
    output = tmp_path / "interrupted"
    first = train(staged_config(workdir, output, max_steps_this_run=6), processor=ToyProcessor())
    assert first.interrupted and [s.global_step for s in first.stages] == [6]  # stopped at the stage boundary
    assert (output / "stages" / "00-auto" / STAGE_STATE).is_file() and not (output / "stages" / "01-verified").exists()
    second = train(staged_config(workdir, output, max_steps_this_run=3, resume_from_checkpoint="latest"), processor=ToyProcessor())
    assert second.interrupted and second.steps_this_run == 3 and second.stages[-1].global_step == 3
    checkpoints = sorted(p.name for p in (output / "stages" / "01-verified" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2", "checkpoint-3"]  # the scheduled one and the interruption's
    resumed = train(staged_config(workdir, output, resume_from_checkpoint="latest"), processor=ToyProcessor())
    assert not resumed.interrupted and resumed.steps_this_run == 3 and resumed.global_step == 12
    np.testing.assert_allclose(resumed.losses, result.losses, rtol=0, atol=1e-6)
    expected, got = trained_state_dict(result.model, "depth"), trained_state_dict(resumed.model, "depth")
    assert expected.keys() == got.keys() and any(k.startswith("quantizers.depth.") for k in got)
    for key, value in expected.items():
        assert torch.allclose(got[key].float(), value.float(), atol=1e-6), key


@pytest.mark.parametrize(
    "stages, message",
    [
        ([{"name": "a"}, {"name": "a"}], "stage names must be unique"),
        ([{"name": "a", "epochs": 2}], r"Unknown keys \['epochs'\] in stages\[0\]"),
        ([{"name": "a", "data": {"dataset_path": "x"}}], r"unknown data keys \['dataset_path'\]"),
        ([{"name": "a", "loss_weights": {"contrast": 1.0}}], r"unknown losses \['contrast'\]"),
        ([{"name": "a", "max_train_steps": 0}], "max_train_steps must be an integer >= 1"),
        ([{"name": "a/b"}], "it names a folder"),
        ("auto", "stages must be a list"),
    ],
)
def test_bad_stage_configs_are_refused(stages, message):
    values = load_config_file("tiny")
    values["stages"] = stages
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig.from_dict(values)


def test_staged_runs_resume_only_with_latest_and_stage_columns_merge(workdir, tmp_path):
    values = load_config_file("tiny")
    values["stages"] = [{"name": "a"}]
    values["training"]["resume_from_checkpoint"] = str(tmp_path)
    with pytest.raises(ValueError, match="resumes with training.resume_from_checkpoint='latest'"):
        TrainConfig.from_dict(values)
    config = staged_config(workdir, tmp_path)
    config.stages[1].data["columns"] = {"grade": "grade"}
    plain = stage_config(config, 1)
    assert plain.data.columns == {"depth": "depth", "vision": "image", "label": "label", "grade": "grade"}
    assert plain.cache.dir == str(tmp_path / "feature_cache") and not plain.stages


def test_projector_stages_hand_over_the_projector_and_read_a_stage_grade_column(workdir, tmp_path):
    features = toy_dataset_dict()["train"].features
    columns = toy_columns(32, seed=11)
    graded = datasets.Dataset.from_dict(columns, features=features).add_column("grade", [0.0, 0.5, 1.0, 1.0] * 8)
    values = tiny_run_values(workdir, tmp_path / "run", str(workdir / "tier_a"), checkpointing_steps=None, logging_steps=1)
    values["path"].update(mode="projector", loss_weights={})
    values["stages"] = [{"name": "auto", "max_train_steps": 4},
                        {"name": "graded", "max_train_steps": 3, "loss_weights": {"align": 2.0},
                         "data": {"dataset": datasets.DatasetDict({"train": graded}), "columns": {"grade": "grade"}}}]
    result = train(TrainConfig.from_dict(values), processor=ToyProcessor())
    handed = load_file(str(tmp_path / "run" / "stages" / "00-auto" / FINAL_STATE))
    assert sorted(handed) == sorted(f"shared_heads.depth.{k}" for k in result.model.shared_heads["depth"].state_dict())
    assert result.projector_dir == tmp_path / "run" / "stages" / "01-graded" / "projector"
    second = [e for e in result.stages[1].log_history if "loss" in e]
    assert all(e["loss"] == pytest.approx(2.0 * e["loss/align"], rel=1e-6) for e in second)
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["stages"][1]["data"]["dataset"] == "<DatasetDict>"
    stage_config_file = tmp_path / "run" / "stages" / "01-graded" / "train_config.json"
    assert json.loads(stage_config_file.read_text())["data"]["columns"]["grade"] == "grade"
