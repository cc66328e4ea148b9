"""IMU / EEG / point-cloud processors: documented lengths and formulas, determinism, errors."""

import numpy as np
import pytest
import torch

from codebind_hf.feature_extraction_sensors import CodeBindSensorFeatureExtractor


@pytest.fixture(scope="module")
def sensors():
    return CodeBindSensorFeatureExtractor()


def test_imu_keeps_the_centre_or_pads_the_end(sensors):
    long = np.arange(6 * 2500, dtype=np.float32).reshape(6, 2500)
    short = np.ones((6, 300), np.float32)
    out = sensors.imu([long, short])
    assert out.shape == (2, 6, 2000) and out.dtype == torch.float32
    assert torch.equal(out[0], torch.from_numpy(long[:, 250:2250]))
    assert out[1, :, :300].eq(1).all() and out[1, :, 300:].eq(0).all()


def test_eeg_window_then_linear_interpolation(sensors):
    # CodeBind: keep time steps [20, 460), then interpolate linspace(0, 1, 440) -> linspace(0, 1, 512)
    eeg = np.random.default_rng(0).standard_normal((128, 500)).astype(np.float32)
    out = sensors.eeg([eeg])
    kept = eeg[:, 20:460].astype(np.float64)
    grid = np.linspace(0, 1, 512)
    expected = np.stack([np.interp(grid, np.linspace(0, 1, 440), row) for row in kept])
    assert out.shape == (1, 128, 512)
    assert np.abs(out[0].numpy() - expected).max() < 1e-5
    assert torch.equal(out[0, :, 0], torch.from_numpy(eeg[:, 20])) and torch.allclose(
        out[0, :, -1], torch.from_numpy(eeg[:, 459])
    )
    # a linear ramp stays the same line
    ramp = np.tile(np.arange(20, 460, dtype=np.float32), (128, 1))
    line = CodeBindSensorFeatureExtractor(eeg_time_window=None).eeg([ramp])[0, 0]
    assert torch.allclose(line, torch.linspace(20, 459, 512), atol=1e-4)


def test_point_clouds_are_sampled_deterministically_and_normalised(sensors):
    rng = np.random.default_rng(1)
    big = rng.normal(size=(10000, 6)).astype(np.float32) * 5 + 3
    small = rng.normal(size=(100, 3)).astype(np.float32)
    a, b = sensors.point_clouds([big, big])
    assert a.shape == (8192, 6) and torch.equal(a, b)  # same cloud, same tensor
    radius = a[:, :3].norm(dim=1)
    assert torch.allclose(a[:, :3].mean(0), torch.zeros(3), atol=1e-5) and radius.max() == pytest.approx(1.0)
    rows = {tuple(r) for r in big[:, 3:].round(5).tolist()}
    assert all(tuple(r) in rows for r in a[:, 3:].numpy().round(5).tolist()[:50])  # extra channels untouched
    # fewer points than needed: every point is kept once, the rest are repeats
    out = sensors.point_clouds([small])[0]
    centred = small - small.mean(0)
    kept = torch.from_numpy(centred / np.linalg.norm(centred, axis=1).max())
    assert out.shape == (8192, 3) and not torch.equal(out[:100], kept)  # normalised on the sampled set...
    assert len({tuple(r) for r in out.numpy().round(5).tolist()}) == 100  # ...which holds exactly the 100 points
    assert torch.equal(CodeBindSensorFeatureExtractor(seed=0).point_clouds([big]), a[None])
    assert not torch.equal(CodeBindSensorFeatureExtractor(seed=1).point_clouds([big]), a[None])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"imu": [np.zeros((3, 100))]}, ValueError, r"\(6, time\)"),
        ({"imu": [np.zeros((100, 6))]}, ValueError, "pass the transpose"),
        ({"imu": [np.full((6, 10), np.nan)]}, ValueError, "NaN"),
        ({"imu": [np.zeros((6, 0))]}, ValueError, "empty"),
        ({"imu": []}, ValueError, "empty list"),
        ({"eeg": [np.zeros((64, 500))]}, ValueError, r"\(128, time\)"),
        ({"eeg": [np.zeros((128, 21))]}, ValueError, r"21 time steps, fewer than the 460"),
        ({"eeg": [np.array([["a"] * 500] * 128)]}, TypeError, "real-valued"),
        ({"point_clouds": [np.zeros((10, 4))]}, ValueError, r"\(N, 3\) or \(N, 6\)"),
        ({"point_clouds": [np.zeros((10, 3)), np.zeros((10, 6))]}, ValueError, "share their width"),
        ({"point_clouds": [np.full((10, 3), np.inf)]}, ValueError, "NaN or inf"),
    ],
)
def test_bad_inputs_raise_clear_errors(sensors, kwargs, error, message):
    with pytest.raises(error, match=message):
        sensors(**kwargs)


def test_settings_round_trip_and_validation(tmp_path):
    custom = CodeBindSensorFeatureExtractor(imu_length=100, eeg_time_window=[0, 100], num_points=16, seed=3)
    custom.save_pretrained(tmp_path)
    again = CodeBindSensorFeatureExtractor.from_pretrained(tmp_path)
    assert again.to_dict() == custom.to_dict() and again.eeg_time_window == [0, 100]
    with pytest.raises(ValueError, match="eeg_time_window"):
        CodeBindSensorFeatureExtractor(eeg_time_window=[10, 5])
    with pytest.raises(ValueError, match="num_points must be a positive int"):
        CodeBindSensorFeatureExtractor(num_points=0)
