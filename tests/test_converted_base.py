"""The converted ImageBind base as the examples use it: which towers it has (CodeBind's tactile/EEG added on
request), and codebind-bench on a base lacking towers (a suite's benchmarks skipped with a warning naming them,
``--benchmarks available``, a benchmark named on its own refused)."""

import json
import logging
import os

import pytest
import torch

from codebind_hf.convert.imagebind import convert_imagebind_checkpoint, main as convert_main
from codebind_hf.evaluation.cli import select_benchmarks
from codebind_hf.evaluation.loop import BenchmarkConfigError
from codebind_hf.evaluation.suite import SUITES

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_tiny")
IMAGEBIND_TOWERS = ["vision", "text", "audio", "depth", "thermal", "imu"]
TINY_TACTILE = {"tactile_embed_dim": 32, "tactile_num_blocks": 2, "tactile_num_heads": 4}


def _kwargs(**extra):
    with open(os.path.join(FIXTURE, "config.json")) as fh:
        return {**json.load(fh)["constructor_kwargs"], **extra}


def test_a_suite_skips_benchmarks_without_a_tower_and_names_them(caplog):
    caplog.set_level(logging.WARNING, logger="codebind_hf.evaluation")
    kept = select_benchmarks(["ib17"], IMAGEBIND_TOWERS)
    skipped = ["tag_material", "tag_hard_soft", "tag_rough_smooth", "in_eeg"]  # tactile x3, EEG
    assert [d.name for d in kept] == [n for n in SUITES["ib17"] if n not in skipped] and len(kept) == 13
    assert f"skipping {skipped}: the model has no ['eeg', 'tactile'] tower" in caplog.text


def test_available_and_named_benchmarks(caplog):
    caplog.set_level(logging.WARNING, logger="codebind_hf.evaluation")
    available = [d.name for d in select_benchmarks(["available"], [*IMAGEBIND_TOWERS, "tactile"])]
    assert available == [n for n in SUITES["ib17"] if n != "in_eeg"]  # vl needs point and EEG towers
    assert "skipping" not in caplog.text  # what was asked for is what the model can do
    assert [d.name for d in select_benchmarks(["nyu_d,esc50", "ib17"], IMAGEBIND_TOWERS)][:2] == ["nyu_d", "esc50"]
    with pytest.raises(BenchmarkConfigError, match=r"no tower for \['eeg'\] .*which \['in_eeg'\] need; drop them or use "
                                                   r"--benchmarks available"):
        select_benchmarks(["nyu_d", "in_eeg"], IMAGEBIND_TOWERS)
    with pytest.raises(BenchmarkConfigError, match="none of the benchmarks"):
        select_benchmarks(["vl"], IMAGEBIND_TOWERS)


def test_converter_adds_codebind_towers_on_request_and_keeps_imagebinds_weights(tmp_path, capsys):
    plain = convert_imagebind_checkpoint(os.path.join(FIXTURE, "imagebind_tiny.pth"), _kwargs())
    assert sorted(plain.towers) == sorted(IMAGEBIND_TOWERS)
    config = tmp_path / "kwargs.json"
    config.write_text(json.dumps(_kwargs(**TINY_TACTILE)))
    assert convert_main([os.path.join(FIXTURE, "imagebind_tiny.pth"), str(tmp_path / "base"), "--imagebind-config",
                         str(config), "--add-towers", "tactile"]) == 0
    assert "tactile: " in capsys.readouterr().out
    from codebind_hf import CodeBindModel, CodeBindProcessor

    model = CodeBindModel.from_pretrained(tmp_path / "base").eval()
    assert sorted(model.towers) == sorted([*IMAGEBIND_TOWERS, "tactile"])
    assert model.towers["tactile"].hidden_size == 32 and model.towers["tactile"].num_blocks == 2
    plain_state = plain.state_dict()
    for key, value in model.state_dict().items():  # every ImageBind weight as converted without the extra tower
        if key.startswith(("towers.", "shared_heads.", "logit_scales.")) and ".tactile" not in key:
            assert torch.equal(value, plain_state[key]), key
    touch = CodeBindProcessor.from_pretrained(tmp_path / "base")(tactile=[torch.rand(3, 40, 40).numpy()])["tactile_values"]
    assert model.get_features("tactile", touch, quantize=False).shape == (1, 32)
    with pytest.raises(ValueError, match=r"extra towers \['point'\]: the converter can add \['tactile', 'eeg'\]"):
        convert_imagebind_checkpoint(os.path.join(FIXTURE, "imagebind_tiny.pth"), _kwargs(), ("point",))
