"""Fixed-size tensors from sensor arrays: IMU, EEG and point clouds.

- IMU `(6, T)` (accelerometer xyz + gyroscope xyz) -> `(6, 2000)`: longer recordings keep their centre 2000
  samples, shorter ones are zero-padded at the end (ImageBind's Ego4D IMU clips are 2000 samples).
- EEG `(channels, T)` -> `(128, 512)`: the same centre cut / end padding in time; the channel count must match.
- Point clouds `(N, 3)` or `(N, 6)` (xyz + rgb/normals) -> `(num_points, C)`: xyz centred and scaled into the
  unit sphere; ``num_points`` drawn without replacement (with replacement when N is smaller) by a seeded
  generator, so the same cloud always gives the same tensor.
"""

from __future__ import annotations

import numpy as np
import torch


def _fixed_length(array: np.ndarray, length: int) -> np.ndarray:
    if array.shape[-1] >= length:
        start = (array.shape[-1] - length) // 2
        return array[..., start : start + length]
    return np.pad(array, [(0, 0)] * (array.ndim - 1) + [(0, length - array.shape[-1])])


def _finite_float(item, what: str) -> np.ndarray:
    array = np.asarray(item, dtype=np.float32)
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or inf values")
    return array


class CodeBindSensorProcessor:
    """IMU, EEG and point-cloud arrays -> batched tensors (see module docstring for the conventions)."""

    def __init__(self, imu_channels: int = 6, imu_length: int = 2000, eeg_channels: int = 128, eeg_length: int = 512,
                 num_points: int = 8192, seed: int = 0):
        self.imu_channels, self.imu_length = imu_channels, imu_length
        self.eeg_channels, self.eeg_length = eeg_channels, eeg_length
        self.num_points, self.seed = num_points, seed

    def to_dict(self) -> dict:
        return dict(vars(self))

    def _series(self, items, channels: int, length: int, what: str) -> torch.Tensor:
        items = items if isinstance(items, (list, tuple)) else [items]
        out = []
        for item in items:
            array = _finite_float(item, what)
            if array.ndim != 2 or array.shape[0] != channels:
                raise ValueError(f"{what} must have shape ({channels}, time); got {array.shape}")
            out.append(torch.from_numpy(np.ascontiguousarray(_fixed_length(array, length))))
        return torch.stack(out)

    def imu(self, items) -> torch.Tensor:
        return self._series(items, self.imu_channels, self.imu_length, "IMU data")

    def eeg(self, items) -> torch.Tensor:
        return self._series(items, self.eeg_channels, self.eeg_length, "EEG data")

    def point_clouds(self, items) -> torch.Tensor:
        items = items if isinstance(items, (list, tuple)) else [items]
        out = []
        for item in items:
            cloud = _finite_float(item, "point cloud")
            if cloud.ndim != 2 or cloud.shape[1] not in (3, 6):
                raise ValueError(f"point clouds must have shape (N, 3) or (N, 6); got {cloud.shape}")
            rng = np.random.default_rng(self.seed)
            picks = rng.choice(cloud.shape[0], self.num_points, replace=cloud.shape[0] < self.num_points)
            cloud = cloud[picks].copy()
            xyz = cloud[:, :3] - cloud[:, :3].mean(0)
            cloud[:, :3] = xyz / max(float(np.linalg.norm(xyz, axis=1).max()), 1e-12)
            out.append(torch.from_numpy(cloud))
        return torch.stack(out)


__all__ = ["CodeBindSensorProcessor"]
