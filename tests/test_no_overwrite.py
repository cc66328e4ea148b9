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
