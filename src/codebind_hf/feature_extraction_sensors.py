"""Fixed-size tensors from sensor arrays: IMU, EEG and point clouds.

- IMU `(6, T)` (accelerometer xyz + gyroscope xyz, ImageBind's Ego4D layout) -> `(6, 2000)`, the length of
  ImageBind's IMU tower. ImageBind ships no IMU loader; here a longer recording keeps its centre 2000 samples and a
  shorter one is zero-padded at the end. Resample to the tower's rate yourself before, if yours differs.
- EEG `(128, T)` -> `(128, 512)` as the official CodeBind loader: keep time steps ``[20, 460)`` (``eeg_time_window``),
  then linearly interpolate the kept samples onto 512 equally spaced points (first and last sample kept). A recording
  shorter than the window (fewer than 460 steps) is refused rather than stretched.
- Point clouds `(N, 3)` (xyz) or `(N, 6)` (xyz + rgb or normals) -> `(num_points, C)` with ``num_points=8192``:
  ``N >= num_points``: a random subset without replacement; ``N < num_points``: every point, plus random repeats to
  fill. The generator is seeded (``seed``), so one cloud always gives the same tensor. Then xyz are centred on their
  mean and scaled into the unit sphere; extra channels are left as they are. ImageBind has no point-cloud tower;
  these are the usual PointNet-style conventions.

The ViT-Lens variant ([`CodeBindSensorFeatureExtractor.vitlens`], CodeBind-VL) keeps the EEG recipe above (it is
ViT-Lens's too, with ``eeg_length`` the lens's ``time_len``) and samples point clouds as ViT-Lens does, but
deterministically (``point_sampling="fps"``): ``N > num_points``: farthest point sampling from point 0 (ViT-Lens
starts at a random point); ``N == num_points``: the cloud as it is; ``N < num_points``: every point, then the cloud
again from its first point until ``num_points`` are filled (ViT-Lens would keep fewer points). Only xyz is kept
(``point_channels=3``; an `(N, 6)` cloud loses its last three columns, as ViT-Lens's ModelNet40 loader does), then
centred and scaled into the unit sphere (ViT-Lens's ``pc_norm``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .encoders.vitlens_layers import farthest_point_sample  # the point lens's own sampler
from .validation import check_window


POINT_SAMPLING = ("random", "fps")


def _as_float_array(item, what: str) -> np.ndarray:
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    array = np.asarray(item)
    if array.dtype == object or array.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be a real-valued array, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.size == 0:
        raise ValueError(f"{what} is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or inf values")
    return array


def _batch(items, what: str) -> list:
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    if not items:
        raise ValueError(f"{what}: got an empty list; expected at least one array")
    return items


def fixed_length(array: np.ndarray, length: int) -> np.ndarray:
    """Centre `length` samples of the last axis, or zero-padding at the end when shorter."""
    if array.shape[-1] >= length:
        start = (array.shape[-1] - length) // 2
        return array[..., start : start + length]
    return np.pad(array, [(0, 0)] * (array.ndim - 1) + [(0, length - array.shape[-1])])


class CodeBindSensorFeatureExtractor(FeatureExtractionMixin):
    """IMU, EEG and point-cloud arrays -> batched tensors (conventions in the module docstring).

    Args:
        imu_channels (`int`, *optional*, defaults to 6), imu_length (`int`, *optional*, defaults to 2000)
        eeg_channels (`int`, *optional*, defaults to 128), eeg_length (`int`, *optional*, defaults to 512)
        eeg_time_window (`list[int]`, *optional*, defaults to `[20, 460]`): time steps kept before interpolation;
            `None` keeps all.
        num_points (`int`, *optional*, defaults to 8192), seed (`int`, *optional*, defaults to 0): point sampling.
        point_sampling (`str`, *optional*, defaults to `"random"`): ``"random"`` (seeded subset / repeats) or
            ``"fps"`` (farthest point sampling from point 0 / cyclic repeats; ViT-Lens).
        point_channels (`int`, *optional*): ``3`` keeps xyz only; ``None`` keeps the 3 or 6 columns given.

    Example:

    ```python
    >>> import numpy as np
    >>> from codebind_hf.feature_extraction_sensors import CodeBindSensorFeatureExtractor
    >>> sensors = CodeBindSensorFeatureExtractor()
    >>> out = sensors(imu=[np.zeros((6, 500))], eeg=[np.zeros((128, 500))], point_clouds=[np.random.rand(100, 3)])
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'imu_values': (1, 6, 2000), 'eeg_values': (1, 128, 512), 'point_values': (1, 8192, 3)}

    ```
    """

    model_input_names = ["imu_values", "eeg_values", "point_values"]

    def __init__(
        self,
        imu_channels: int = 6,
        imu_length: int = 2000,
        eeg_channels: int = 128,
        eeg_length: int = 512,
        eeg_time_window: list[int] | None = (20, 460),
        num_points: int = 8192,
        seed: int = 0,
        point_sampling: str = "random",
        point_channels: int | None = None,
        **kwargs,
    ):
        kwargs.pop("feature_extractor_type", None)
        super().__init__(**kwargs)
        for name, value in (
            ("imu_channels", imu_channels),
            ("imu_length", imu_length),
            ("eeg_channels", eeg_channels),
            ("eeg_length", eeg_length),
            ("num_points", num_points),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if eeg_time_window is not None:
            eeg_time_window = [int(v) for v in eeg_time_window]
            if len(eeg_time_window) != 2 or not 0 <= eeg_time_window[0] < eeg_time_window[1] - 1:
                raise ValueError(
                    f"eeg_time_window must be [start, end) with 0 <= start < end - 1, got {eeg_time_window}"
                )
        self.imu_channels, self.imu_length = imu_channels, imu_length
        self.eeg_channels, self.eeg_length, self.eeg_time_window = eeg_channels, eeg_length, eeg_time_window
        self.num_points, self.seed = num_points, int(seed)
        if point_sampling not in POINT_SAMPLING:
            raise ValueError(f"point_sampling must be one of {POINT_SAMPLING}, got {point_sampling!r}")
        if point_channels not in (None, 3):
            raise ValueError(f"point_channels must be None (keep 3 or 6 columns) or 3 (xyz only), got {point_channels!r}")
        self.point_sampling, self.point_channels = point_sampling, point_channels

    @classmethod
    def vitlens(cls, num_points: int = 8192, eeg_length: int = 512, eeg_channels: int = 128, **kwargs):
        """The ViT-Lens (CodeBind-VL) variant: xyz clouds by farthest point sampling, EEG window [20, 460) resampled
        to ``eeg_length`` (the EEG lens's ``time_len``); defaults are ViT-Lens-L's.

        Example:

        ```python
        >>> import numpy as np
        >>> sensors = CodeBindSensorFeatureExtractor.vitlens(num_points=256, eeg_length=64)
        >>> out = sensors(eeg=[np.zeros((128, 500))], point_clouds=[np.random.rand(1000, 6)])
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'eeg_values': (1, 128, 64), 'point_values': (1, 256, 3)}

        ```
        """
        settings = dict(num_points=num_points, eeg_length=eeg_length, eeg_channels=eeg_channels,
                        eeg_time_window=(20, 460), point_sampling="fps", point_channels=3)
        return cls(**{**settings, **kwargs})

    def _series(self, array: np.ndarray, channels: int, what: str) -> np.ndarray:
        if array.ndim != 2 or array.shape[0] != channels:
            hint = (
                " (pass the transpose: time must be the last axis)"
                if array.ndim == 2 and array.shape[1] == channels
                else ""
            )
            raise ValueError(f"{what} must have shape ({channels}, time); got {array.shape}{hint}")
        return array

    def imu(self, items) -> torch.Tensor:
        """IMU arrays `(imu_channels, T)` -> `(batch, imu_channels, imu_length)` (centre cut / end padding)."""
        out = []
        for i, item in enumerate(_batch(items, "imu")):
            array = self._series(_as_float_array(item, f"IMU item {i}"), self.imu_channels, f"IMU item {i}")
            out.append(torch.from_numpy(np.ascontiguousarray(fixed_length(array, self.imu_length))))
        return torch.stack(out)

    def eeg(self, items) -> torch.Tensor:
        """EEG `(eeg_channels, T)` -> `(batch, eeg_channels, eeg_length)`: time window, then linear resampling.

        A recording must cover the whole window (``T >= eeg_time_window[1]``): a shorter one is refused, not
        stretched. Without a window (``eeg_time_window=None``) any ``T >= 2`` is resampled, as asked."""
        out = []
        for i, item in enumerate(_batch(items, "eeg")):
            array = self._series(_as_float_array(item, f"EEG item {i}"), self.eeg_channels, f"EEG item {i}")
            # A recording shorter than the window is refused, never stretched into 512 steps of something else.
            if self.eeg_time_window is not None:
                start, end = self.eeg_time_window
                check_window(array.shape[1], end, f"EEG item {i} (time window [{start}, {end}))")
                array = array[:, start:end]
            if array.shape[1] < 2:
                raise ValueError(f"EEG item {i} has {array.shape[1]} time steps; need at least 2 to interpolate")
            # float64 like the reference's scipy interp1d; align_corners=True maps linspace(0, 1, T) onto
            # linspace(0, 1, eeg_length).
            series = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))[None]
            out.append(F.interpolate(series, size=self.eeg_length, mode="linear", align_corners=True)[0].float())
        return torch.stack(out)

    def point_clouds(self, items) -> torch.Tensor:
        """Point clouds `(N, 3)` or `(N, 6)` -> `(batch, num_points, 3 or 6)` (``point_channels=3``: `(batch,
        num_points, 3)`); all items must have the same width."""
        out = []
        for i, item in enumerate(_batch(items, "point_clouds")):
            cloud = _as_float_array(item, f"point cloud {i}")
            if cloud.ndim != 2 or cloud.shape[1] not in (3, 6):
                raise ValueError(f"point cloud {i} must have shape (N, 3) or (N, 6); got {cloud.shape}")
            if self.point_channels == 3:
                cloud = np.ascontiguousarray(cloud[:, :3])
            cloud = cloud[self._point_picks(cloud)]
            xyz = cloud[:, :3] - cloud[:, :3].mean(0)
            radius = float(np.linalg.norm(xyz, axis=1).max())
            cloud[:, :3] = xyz / radius if radius > 0 else xyz
            out.append(torch.from_numpy(cloud))
        if len({c.shape[1] for c in out}) > 1:
            raise ValueError(
                f"point clouds in one batch must share their width; got {sorted({c.shape[1] for c in out})}"
            )
        return torch.stack(out)

    def _point_picks(self, cloud: np.ndarray) -> np.ndarray:
        """Indices of the ``num_points`` points kept (module docstring)."""
        count = cloud.shape[0]
        if self.point_sampling == "fps":
            if count <= self.num_points:
                return np.arange(self.num_points) % count
            return farthest_point_sample(torch.from_numpy(cloud[None, :, :3]), self.num_points)[0].numpy()
        rng = np.random.default_rng(self.seed)
        if count >= self.num_points:
            return rng.choice(count, self.num_points, replace=False)
        extra = rng.choice(count, self.num_points - count, replace=True)
        return np.concatenate([np.arange(count), extra])

    def __call__(self, imu=None, eeg=None, point_clouds=None, return_tensors: str | None = "pt") -> BatchFeature:
        """[`BatchFeature`] with ``imu_values``, ``eeg_values``, ``point_values`` for the inputs given."""
        data = {}
        if imu is not None:
            data["imu_values"] = self.imu(imu)
        if eeg is not None:
            data["eeg_values"] = self.eeg(eeg)
        if point_clouds is not None:
            data["point_values"] = self.point_clouds(point_clouds)
        return BatchFeature(data, tensor_type=return_tensors)


__all__ = ["CodeBindSensorFeatureExtractor", "fixed_length", "POINT_SAMPLING"]
