"""An honest base-model fingerprint: any weight changed by more than half-precision rounding is detected, and the
same base cast to float16 or bfloat16 is recognised."""

import logging

import pytest
import torch

from codebind_hf import CodeBindModel
from codebind_hf.adapters.fingerprint import WeightsFingerprint, _legacy_fingerprint
from codebind_hf.adapters.paths import base_model_fingerprint, base_model_weights
from tiny_models import tiny_config


@pytest.fixture
def base():
    torch.manual_seed(0)
    return CodeBindModel(tiny_config(decoder=False)).eval()


def _unsampled_weight(model) -> tuple[str, int]:
    """A frozen bridge weight and a flat position the old 64-value sampler never looked at."""
    name = "towers.vision.backbone.layers.0.attention.q_proj.weight"
    numel = model.state_dict()[name].numel()
    step = max(1, numel // 64)
    return name, step + 1  # between the 2nd and 3rd sampled values


def test_a_change_the_old_sampler_missed_is_refused_by_load_path(base, tmp_path):
    folder = base.save_path("depth", tmp_path / "path")
    name, position = _unsampled_weight(base)
    before, legacy_before = base_model_fingerprint(base, "depth"), _legacy_fingerprint(base_model_weights(base, "depth").named)
    with torch.no_grad():
        base.state_dict()[name].view(-1)[position] += 0.5
    assert _legacy_fingerprint(base_model_weights(base, "depth").named) == legacy_before  # the old form missed it
    assert base_model_fingerprint(base, "depth") != before
    base.remove_path("depth")
    with pytest.raises(ValueError, match=r"Base model mismatch.*more than half-precision rounding"):
        base.load_path(folder)


@pytest.mark.parametrize("steps", [2, 3])
def test_one_weight_moved_by_a_few_half_precision_steps_anywhere_is_detected(base, steps):
    recorded = base_model_fingerprint(base, "depth")
    weights = base_model_weights(base, "depth")
    generator = torch.Generator().manual_seed(steps)
    for _ in range(5):  # five random weights of the frozen set, one at a time
        name, tensor = weights.named[int(torch.randint(len(weights.named), (1,), generator=generator))]
        if not tensor.is_floating_point():
            continue
        flat = tensor.view(-1)
        i = int(torch.randint(flat.numel(), (1,), generator=generator))
        old = flat[i].item()
        ulp = abs(old) * 2.0**-7 if old else 2.0**-133  # one bfloat16 step at that magnitude
        with torch.no_grad():
            flat[i] = old + steps * max(ulp, 1e-6)
        assert not base_model_weights(base, "depth").matches(recorded), f"{name}[{i}] moved unnoticed"
        with torch.no_grad():
            flat[i] = old
    assert base_model_weights(base, "depth").matches(recorded)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_same_base_cast_to_half_precision_loads_the_path(base, tmp_path, dtype):
    folder = base.save_path("depth", tmp_path / "path")
    base.remove_path("depth")
    half = base.to(dtype)
    assert half.load_path(folder) == "depth"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_fingerprint_recorded_on_a_half_copy_matches_the_float32_original(base, dtype):
    original = {k: v.clone() for k, v in base.state_dict().items()}
    recorded = WeightsFingerprint((k, v.to(dtype) if v.is_floating_point() else v) for k, v in original.items()).record()
    assert WeightsFingerprint(original.items()).matches(recorded)


def test_float16_and_bfloat16_digests_are_exactly_those_of_the_rounded_values():
    x = torch.tensor([1.0, 1.0 + 2.0**-9, 3.14159, -2.5e-3])
    fp = WeightsFingerprint([("w", x)])
    for view, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        assert fp.digest(view) == WeightsFingerprint([("w", x.to(dtype))]).digest(view)
    # 1 + 2^-9 rounds to 1 in bfloat16 but not in float16: the digests see exactly that.
    assert WeightsFingerprint([("w", x[:1])]).digest("bf16") == WeightsFingerprint([("w", x[1:2])]).digest("bf16")
    assert WeightsFingerprint([("w", x[:1])]).digest("fp16") != WeightsFingerprint([("w", x[1:2])]).digest("fp16")


def test_a_legacy_sampled_fingerprint_is_still_checked_with_a_warning(base, caplog):
    weights = base_model_weights(base, "depth")
    legacy = _legacy_fingerprint(weights.named)
    with caplog.at_level(logging.WARNING, logger="codebind_hf.adapters.fingerprint"):
        assert weights.matches(legacy)
    assert "earlier sampled form" in caplog.text
    assert not weights.matches("0" * 64)


def test_an_unknown_fingerprint_format_is_a_clear_error(base):
    with pytest.raises(ValueError, match="unknown base-model fingerprint format"):
        base_model_weights(base, "depth").matches("v9:abc:def")


def test_the_cost_benchmark_runs_on_a_small_full_size_tower(capsys):
    import json

    from tiny_models import load_script

    load_script("benchmarks/perf/fingerprint.py").main(["--tower", "imu"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["tower_params"] == result["params_per_tower"]["imu"] > 10**7
    assert result["path_frozen_params"] == sum(result["params_per_tower"][m] for m in ("text", "vision", "audio"))
    assert result["check_fp32_s"] > 0 and set(result["cpu_s"]) == {"record", "check_fp32", "check_float16", "check_bfloat16"}
