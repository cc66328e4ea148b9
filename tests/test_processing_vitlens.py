"""The ViT-Lens point-cloud / EEG processor variant: deterministic FPS sampling by hand, fills, xyz only, the unit
sphere, EEG as ViT-Lens takes it, errors; the ImageBind-style variant is unchanged."""

import numpy as np
import pytest
import torch

from codebind_hf.encoders.vitlens_layers import farthest_point_sample
from codebind_hf.feature_extraction_sensors import CodeBindSensorFeatureExtractor
from codebind_hf.processing_codebind import CodeBindProcessor


def _unit_sphere(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    return centred / np.linalg.norm(centred, axis=1).max()


def test_more_points_than_needed_are_farthest_point_sampled_from_point_0():
    # 1-D cloud on the x axis: from 0, FPS takes 10 (farthest), then 5 (25 from both), then 2 (4 from 0, 9 from 5).
    xs = np.array([0, 1, 2, 5, 9, 10], np.float32)
    cloud = np.stack([xs, np.zeros(6), np.zeros(6)], 1).astype(np.float32)
    out = CodeBindSensorFeatureExtractor.vitlens(num_points=4).point_clouds([cloud])[0].numpy()
    assert np.allclose(out, _unit_sphere(cloud[[0, 5, 3, 2]]), atol=1e-6)
    big = np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32)
    sampled = CodeBindSensorFeatureExtractor.vitlens(num_points=512).point_clouds([big, big])
    picks = farthest_point_sample(torch.from_numpy(big)[None], 512)[0].numpy()
    assert torch.equal(sampled[0], sampled[1])  # deterministic: no seed involved
    assert np.allclose(sampled[0].numpy(), _unit_sphere(big[picks]), atol=1e-6)
    radius = sampled[0].norm(dim=1)
    assert torch.allclose(sampled[0].mean(0), torch.zeros(3), atol=1e-6) and radius.max() == pytest.approx(1.0)


def test_fewer_or_exactly_enough_points_keep_their_order():
    rng = np.random.default_rng(1)
    exact = rng.normal(size=(64, 3)).astype(np.float32)
    sensors = CodeBindSensorFeatureExtractor.vitlens(num_points=64)
    assert np.allclose(sensors.point_clouds([exact])[0].numpy(), _unit_sphere(exact), atol=1e-6)
    small = rng.normal(size=(5, 3)).astype(np.float32)
    filled = sensors.point_clouds([small])[0].numpy()
    assert filled.shape == (64, 3)
    assert np.allclose(filled, _unit_sphere(small[np.arange(64) % 5]), atol=1e-6)  # the cloud again from point 0


def test_xyz_only_and_errors():
    rng = np.random.default_rng(2)
    coloured = rng.normal(size=(100, 6)).astype(np.float32)
    sensors = CodeBindSensorFeatureExtractor.vitlens(num_points=100)
    assert np.allclose(sensors.point_clouds([coloured])[0].numpy(), _unit_sphere(coloured[:, :3]), atol=1e-6)
    with pytest.raises(ValueError, match=r"must have shape \(N, 3\) or \(N, 6\); got \(100, 4\)"):
        sensors.point_clouds([coloured[:, :4]])
    nan = coloured.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="point cloud 0 contains NaN"):
        sensors.point_clouds([nan])
    with pytest.raises(ValueError, match="point_sampling must be one of"):
        CodeBindSensorFeatureExtractor(point_sampling="grid")
    with pytest.raises(ValueError, match="point_channels"):
        CodeBindSensorFeatureExtractor(point_channels=6)


def test_eeg_as_vitlens_takes_it():
    # ViT-Lens: keep time steps [20, 460), interpolate linspace(0, 1, 440) -> linspace(0, 1, eeg_length) per channel
    eeg = np.random.default_rng(3).standard_normal((128, 500)).astype(np.float32)
    sensors = CodeBindSensorFeatureExtractor.vitlens(eeg_length=64)
    out = sensors.eeg([eeg])
    grid = np.linspace(0, 1, 64)
    expected = np.stack([np.interp(grid, np.linspace(0, 1, 440), row) for row in eeg[:, 20:460].astype(np.float64)])
    assert out.shape == (1, 128, 64) and np.abs(out[0].numpy() - expected).max() < 1e-5
    with pytest.raises(ValueError, match=r"must have shape \(128, time\); got \(500, 128\) \(pass the transpose"):
        sensors.eeg([eeg.T])
    with pytest.raises(ValueError, match=r"must have shape \(128, time\); got \(64, 500\)"):
        sensors.eeg([eeg[:64]])
    with pytest.raises(ValueError, match="contains NaN"):
        sensors.eeg([np.full((128, 500), np.nan)])
    with pytest.raises(ValueError, match=r"time window \[20, 460\)\) has 10 time steps, fewer than the 460"):
        sensors.eeg([eeg[:, :10]])  # refused, never stretched


def test_the_processor_variant_and_its_round_trip(tmp_path):
    processor = CodeBindProcessor.vitlens(num_points=128, eeg_length=32, image_size=64)
    processor.save_pretrained(tmp_path)
    loaded = CodeBindProcessor.from_pretrained(tmp_path)
    cloud = np.random.default_rng(4).normal(size=(500, 6)).astype(np.float32)
    a = processor(point_clouds=[cloud], images=[np.zeros((70, 90, 3), np.uint8)])
    b = loaded(point_clouds=[cloud], images=[np.zeros((70, 90, 3), np.uint8)])
    assert a["point_values"].shape == (1, 128, 3) and a["pixel_values"].shape == (1, 3, 64, 64)
    assert torch.equal(a["point_values"], b["point_values"]) and torch.equal(a["pixel_values"], b["pixel_values"])
    # the ImageBind-style default is unchanged: a seeded random subset, extra channels kept
    default = CodeBindSensorFeatureExtractor(num_points=128).point_clouds([cloud])
    assert default.shape == (1, 128, 6) and not torch.equal(default[..., :3], a["point_values"])
