"""Runs never clobber runs: codebind-bench, codebind-train and index builds refuse an output folder holding a
finished run unless asked to overwrite it (--overwrite_output_dir) or to continue it (--resume_from_checkpoint)."""

import pytest

from codebind_hf.evaluation.cli import main as bench_main
from codebind_hf.validation import check_output_dir_free


def test_the_helper_names_the_folder_the_marker_and_both_flags(tmp_path):
    assert check_output_dir_free(tmp_path, "results.json", "benchmark run") is False
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileExistsError) as error:
        check_output_dir_free(tmp_path, "results.json", "benchmark run")
    message = str(error.value)
    assert str(tmp_path) in message and "results.json" in message
    assert "--overwrite_output_dir" in message and "--resume_from_checkpoint" in message
    assert check_output_dir_free(tmp_path, "results.json", "benchmark run", overwrite=True) is True
    assert check_output_dir_free(tmp_path, "results.json", "benchmark run", resume=True) is True


def test_codebind_bench_refuses_a_finished_run_before_loading_anything(tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "results.json").write_text('{"kept": true}')
    argv = ["--model", str(tmp_path / "no-such-model"), "--benchmarks", "esc50", "--output-dir", str(out)]
    assert bench_main(argv) == 2
    assert "holds a finished benchmark run" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"kept": true}'
    # With the flag the run goes on, past the check (and stops later: no --data-root).
    assert bench_main([*argv, "--overwrite_output_dir"]) == 2
    err = capsys.readouterr().err
    assert "no --data-root was given" in err and "finished benchmark run" not in err


# ---------------------------------------------------------------------------------------------- codebind-train
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-step run of the tiny toy config (checkpoint at step 1)."""
    import torch

    from codebind_hf.training.config import TrainConfig
    from codebind_hf.training.train_path import train
    from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir

    torch.set_num_threads(1)
    workdir = tiny_training_workdir(tmp_path_factory.mktemp("runs"))
    output = workdir / "run"

    def config(**training):
        values = tiny_run_values(workdir, output, str(workdir / "data"), max_train_steps=2, checkpointing_steps=1,
                                 save_full_model=False, **training)
        return TrainConfig.from_dict(values)

    train(config(), processor=ToyProcessor())
    return output, config, lambda cfg: train(cfg, processor=ToyProcessor())


def test_codebind_train_refuses_a_finished_run(finished_run):
    output, config, run = finished_run
    before = (output / "train_results.json").read_text()
    with pytest.raises(FileExistsError, match=r"holds a finished training run \(train_results\.json is there\).*--overwrite_output_dir.*--resume_from_checkpoint"):
        run(config())
    assert (output / "train_results.json").read_text() == before


def test_overwrite_output_dir_starts_afresh_and_resume_continues(finished_run):
    output, config, run = finished_run
    resumed = run(config(resume_from_checkpoint="latest"))  # continues the run (here: its last step again)
    assert resumed.global_step == 2
    fresh = run(config(overwrite_output_dir=True, seed=7))
    assert fresh.global_step == 2 and fresh.steps_this_run == 2  # from step 0: the old checkpoints were removed first
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["checkpoint-1"]


def test_the_cli_flag_sets_overwrite_output_dir(tmp_path):
    from codebind_hf.training.config import parse_args

    assert parse_args(["--config", "tiny", "--output_dir", str(tmp_path), "--overwrite_output_dir"]).training.overwrite_output_dir
    assert not parse_args(["--config", "tiny", "--output_dir", str(tmp_path)]).training.overwrite_output_dir


# ---------------------------------------------------------------------------------------------- index builds
def test_an_index_build_refuses_to_touch_a_finished_build_unless_asked(tmp_path):
    import datasets
    import torch

    from codebind_hf import CodeBindModel
    from codebind_hf.index.core import CodeBindIndex
    from tiny_models import tiny_config

    torch.manual_seed(0)
    model = CodeBindModel(tiny_config(decoder=False)).eval()
    data = datasets.Dataset.from_dict({"depth": torch.randn(4, 1, 16, 16).tolist()})

    def build(**kwargs):
        return CodeBindIndex.build_from_dataset(model, data, "depth", "depth", output_dir=tmp_path / "b", progress=False,
                                                backend="torch", **kwargs)

    first = build()
    with pytest.raises(FileExistsError, match=r"holds a finished index build \(manifest\.json\).*overwrite=True"):
        build(resume=False)
    assert torch.equal(build().codes, first.codes)  # resume (the default) loads the finished build, rebuilds nothing
    other = datasets.Dataset.from_dict({"depth": torch.randn(2, 1, 16, 16).tolist()})
    replaced = CodeBindIndex.build_from_dataset(model, other, "depth", "depth", output_dir=tmp_path / "b", progress=False,
                                                backend="torch", resume=False, overwrite=True)
    assert len(replaced) == 2 and len(CodeBindIndex.load(tmp_path / "b" / "index")) == 2
