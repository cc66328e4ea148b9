"""A processor component for any fixed-size array sensor (radar maps, lidar range images, force or gas sensors ...).

One sample is an array of a fixed ``shape``, channels first (``(channels, ...)``); the output of a batch is
``{input_key: (batch, *shape)}``. Each array goes through, in order:

1. reading: a NumPy array, a tensor, a nested list, or the path of a ``.npy`` file;
2. channel order: ``channel_order="channels_last"`` arrays ``(..., channels)`` are moved to channels first;
3. non-finite values: NaN is refused (``nan_policy="raise"``, the default) or set to 0 (``"zero"``, before the
   normalisation); infinities are always refused;
4. the time axis (``time_axis``, of the output shape): ``time_policy="exact"`` (default) refuses another length,
   ``"pad_crop"`` pads at the end with ``pad_value`` or keeps ``crop`` (``"center"``, ``"start"``, ``"end"``) of a
   longer one, ``"resample"`` interpolates linearly onto the length (first and last sample kept); every other axis
   must match ``shape`` exactly;
5. per-channel normalisation ``(x - mean[c]) / std[c]`` when ``mean``/``std`` are set, given or computed from data
   with [`~CodeBindArraySensorFeatureExtractor.fit`];
6. the output ``dtype``.

Saved and loaded as any transformers feature extractor (``preprocessor_config.json``; ``AutoFeatureExtractor`` finds
the class by name once ``codebind_hf`` is imported), and as a ``modality_processors`` entry of a
[`CodeBindProcessor`].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .adapters.io import write_files_atomically
from .modalities import MODALITIES, check_new_modality_name

CHANNEL_ORDERS = ("channels_first", "channels_last")
TIME_POLICIES = ("exact", "pad_crop", "resample")
CROPS = ("center", "start", "end")
NAN_POLICIES = ("raise", "zero")
DTYPES = ("float32", "float16", "bfloat16", "float64")


def _choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


class CodeBindArraySensorFeatureExtractor(FeatureExtractionMixin):
    """Fixed-size sensor arrays -> ``{input_key: (batch, *shape)}`` (the steps are in the module docstring).

    Args:
        modality (`str`, *optional*, defaults to `"sensor"`): the modality it serves (names errors and the key).
        shape (`list[int]`): one output sample, channels first, e.g. ``[2, 64, 64]``.
        input_key (`str`, *optional*): the output key; defaults to ``<modality>_values``.
        dtype (`str`, *optional*, defaults to `"float32"`): the output dtype (the model's).
        channel_order (`str`, *optional*, defaults to `"channels_first"`): where the channels are in the given arrays.
        mean, std (`list[float]`, *optional*): per-channel statistics (one per channel, std > 0), or None.
        time_axis (`int`, *optional*, defaults to -1): the time axis of the output shape.
        time_policy (`str`, *optional*, defaults to `"exact"`): ``"exact"``, ``"pad_crop"`` or ``"resample"``.
        pad_value (`float`, *optional*, defaults to 0.0), crop (`str`, *optional*, defaults to `"center"`): for
            ``"pad_crop"``.
        nan_policy (`str`, *optional*, defaults to `"raise"`): ``"raise"`` or ``"zero"``.

    Example:

    ```python
    >>> import numpy as np
    >>> radar = CodeBindArraySensorFeatureExtractor(modality="radar", shape=[2, 4, 8], time_policy="pad_crop")
    >>> radar = radar.fit([np.full((2, 4, 8), 3.0), np.full((2, 4, 8), 5.0)])
    >>> radar.mean, radar.std
    ([4.0, 4.0], [1.0, 1.0])
    >>> out = radar([np.full((2, 4, 6), 5.0)])  # 6 time steps, padded to 8 with 0 before the normalisation
    >>> tuple(out["radar_values"].shape), out["radar_values"][0, 0, 0].tolist()
    ((1, 2, 4, 8), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -4.0, -4.0])

    ```
    """

    def __init__(
        self,
        modality: str = "sensor",
        shape: list[int] | tuple[int, ...] = (1, 16),
        input_key: str | None = None,
        dtype: str = "float32",
        channel_order: str = "channels_first",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        time_axis: int = -1,
        time_policy: str = "exact",
        pad_value: float = 0.0,
        crop: str = "center",
        nan_policy: str = "raise",
        **kwargs,
    ):
        kwargs.pop("feature_extractor_type", None)
        super().__init__(**kwargs)
        if not isinstance(shape, (list, tuple)) or not shape or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
            raise ValueError(f"shape must be a non-empty list of positive ints (channels first), got {shape!r}")
        self.modality, self.shape = str(modality), [int(n) for n in shape]
        self.input_key = input_key or f"{self.modality}_values"
        self.dtype = _choice("dtype", dtype, DTYPES)
        self.channel_order = _choice("channel_order", channel_order, CHANNEL_ORDERS)
        self.time_policy = _choice("time_policy", time_policy, TIME_POLICIES)
        self.crop = _choice("crop", crop, CROPS)
        self.nan_policy = _choice("nan_policy", nan_policy, NAN_POLICIES)
        if isinstance(time_axis, bool) or not isinstance(time_axis, int) or not -len(self.shape) <= time_axis < len(self.shape):
            raise ValueError(f"time_axis must index the {len(self.shape)} axes of shape {self.shape}, got {time_axis!r}")
        self.time_axis, self.pad_value = int(time_axis), float(pad_value)
        self.mean, self.std = self._statistic("mean", mean), self._statistic("std", std)
        if (self.mean is None) != (self.std is None):
            raise ValueError("give mean and std together (or neither); fit(arrays) computes both")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive for every channel, got {self.std}")

    def _statistic(self, name: str, values) -> list[float] | None:
        if values is None:
            return None
        values = [float(v) for v in (values if isinstance(values, (list, tuple, np.ndarray)) else [values])]
        if len(values) != self.shape[0] or not np.isfinite(values).all():
            raise ValueError(f"{name} needs one finite value per channel ({self.shape[0]}), got {values}")
        return values

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one output sample (what the tower must take)."""
        return tuple(self.shape)

    @property
    def model_input_names(self) -> list[str]:
        return [self.input_key]

    # ---------------------------------------------------------------------------------------------- one array
    def _read(self, item, index: int) -> np.ndarray:
        what = f"{self.modality} item {index}"
        if isinstance(item, (str, os.PathLike)):
            if not str(item).endswith(".npy"):
                raise ValueError(f"{what}: {item} is not a .npy file; give arrays or .npy paths")
            item = np.load(item, allow_pickle=False)
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().float().numpy()
        array = np.asarray(item)
        if array.dtype == object or array.dtype.kind not in "fiub":
            raise TypeError(f"{what} must be a real-valued array, got dtype {array.dtype}")
        array = array.astype(np.float32)
        if self.channel_order == "channels_last":
            array = np.moveaxis(array, -1, 0)
        if np.isinf(array).any():
            raise ValueError(f"{what} contains infinite values")
        if np.isnan(array).any():
            if self.nan_policy == "raise":
                raise ValueError(f"{what} contains {int(np.isnan(array).sum())} NaN values; clean the recording, or set "
                                 "nan_policy='zero' to replace them with 0")
            array = np.nan_to_num(array, nan=0.0)
        return self._fit_time(array, what)

    def _fit_time(self, array: np.ndarray, what: str) -> np.ndarray:
        expected, axis = self.shape, self.time_axis % len(self.shape)
        if array.ndim != len(expected):
            raise ValueError(f"{what} has shape {array.shape}; expected {len(expected)} axes, {tuple(expected)}"
                             f" ({self.channel_order})")
        others = [i for i in range(len(expected)) if i != axis]
        if any(array.shape[i] != expected[i] for i in others):
            flipped = self.channel_order == "channels_first" and array.shape[-1] == expected[0]
            hint = " (channels last? set channel_order='channels_last')" if flipped else ""
            raise ValueError(f"{what} has shape {array.shape}; expected {tuple(expected)} with axis {axis} (time) free "
                             f"under time_policy={self.time_policy!r}{hint}")
        length, target = array.shape[axis], expected[axis]
        if length == target:
            return array
        if self.time_policy == "exact":
            raise ValueError(f"{what} has {length} steps along the time axis {axis}, expected {target} "
                             "(time_policy='exact'; 'pad_crop' or 'resample' adapt the length)")
        if self.time_policy == "resample":
            if length < 2:
                raise ValueError(f"{what} has {length} time step; resampling needs at least 2")
            moved = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, axis, -1), dtype=np.float64))
            flat = moved.reshape(1, -1, length)
            out = F.interpolate(flat, size=target, mode="linear", align_corners=True).reshape(*moved.shape[:-1], target)
            return np.moveaxis(out.float().numpy(), -1, axis)
        if length > target:
            start = {"start": 0, "end": length - target, "center": (length - target) // 2}[self.crop]
            return np.take(array, range(start, start + target), axis=axis)
        pad = [(0, 0)] * array.ndim
        pad[axis] = (0, target - length)
        return np.pad(array, pad, constant_values=self.pad_value)

    def _batch(self, arrays) -> list:
        if isinstance(arrays, (np.ndarray, torch.Tensor)) and arrays.ndim == len(self.shape) + 1:
            return list(arrays)
        items = list(arrays) if isinstance(arrays, (list, tuple)) else [arrays]
        if not items:
            raise ValueError(f"{self.modality}: got an empty list; expected at least one array")
        return items

    def _normalize(self, batch: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return batch
        view = (1, -1) + (1,) * (len(self.shape) - 1)
        return (batch - np.asarray(self.mean, np.float32).reshape(view)) / np.asarray(self.std, np.float32).reshape(view)

    # ---------------------------------------------------------------------------------------------- the API
    def fit(self, arrays) -> CodeBindArraySensorFeatureExtractor:
        """Set ``mean``/``std`` to the per-channel statistics of ``arrays`` (after steps 1-4; float64 sums), e.g. the
        training split. A constant channel gets std 1 (nothing to scale). Returns the component."""
        stacked = np.stack([self._read(a, i) for i, a in enumerate(self._batch(arrays))]).astype(np.float64)
        channels = np.moveaxis(stacked, 1, 0).reshape(self.shape[0], -1)
        std = channels.std(axis=1)
        self.mean, self.std = channels.mean(axis=1).tolist(), np.where(std > 0, std, 1.0).tolist()
        return self

    def __call__(self, arrays, return_tensors: str | None = "pt") -> BatchFeature:
        """[`BatchFeature`] ``{input_key: (batch, *shape)}`` of one array or a list (a batch) of arrays."""
        batch = np.stack([self._read(a, i) for i, a in enumerate(self._batch(arrays))])
        tensor = torch.from_numpy(np.ascontiguousarray(self._normalize(batch), dtype=np.float32)).to(getattr(torch, self.dtype))
        data = {self.input_key: tensor if return_tensors == "pt" else tensor.float().numpy()}
        return BatchFeature(data, tensor_type=return_tensors if return_tensors == "pt" else None)

    def describe(self) -> str:
        """One line for model cards: shape, layout and every preprocessing step."""
        steps = [f"{' × '.join(map(str, self.shape))} {self.dtype} arrays ({self.channel_order} in, channels first out)",
                 f"time axis {self.time_axis}: {self.time_policy}" + (f" (pad {self.pad_value:g}, crop {self.crop})"
                                                                       if self.time_policy == "pad_crop" else ""),
                 f"NaN: {self.nan_policy}",
                 "per-channel mean " + str([round(m, 6) for m in self.mean]) + ", std " + str([round(s, 6) for s in self.std])
                 if self.mean is not None else "no normalisation"]
        return "; ".join(steps)

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """``preprocessor_config.json`` into ``save_directory``, written atomically (other files there are kept)."""
        target = Path(save_directory)
        save = super().save_pretrained
        written = [str(p) for p in write_files_atomically(target, lambda staging: save(str(staging)))]
        if push_to_hub:
            self.push_to_hub(kwargs.pop("repo_id", target.name), **kwargs)
        return written


def processor_component(value) -> FeatureExtractionMixin:
    """A processor component from itself or its ``to_dict()`` (its ``feature_extractor_type`` names the class:
    this module's, or any transformers feature extractor)."""
    if isinstance(value, FeatureExtractionMixin):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"a processor component must be a feature extractor or its dict, got {type(value).__name__}")
    kind = value.get("feature_extractor_type", CodeBindArraySensorFeatureExtractor.__name__)
    if kind == CodeBindArraySensorFeatureExtractor.__name__:
        return CodeBindArraySensorFeatureExtractor.from_dict(dict(value))
    from transformers.models.auto.feature_extraction_auto import feature_extractor_class_from_name

    found = feature_extractor_class_from_name(kind)
    if found is None:
        raise ValueError(f"unknown processor component type {kind!r}; expected {CodeBindArraySensorFeatureExtractor.__name__} "
                         "or a transformers feature extractor")
    return found.from_dict(dict(value))


def modality_processor_dicts(components) -> dict[str, dict]:
    """``CodeBindProcessor.modality_processors``: new modality -> its component's dict (what processor_config.json
    holds), from components or their dicts; the names are checked as `codebind_hf.modalities.check_new_modality_name`
    checks them."""
    out = {}
    for name, component in (components or {}).items():
        modality = check_new_modality_name(name)
        if modality in MODALITIES:
            raise ValueError(f"{modality!r} is a known modality with its own processor argument; modality_processors are "
                             "for new ones")
        out[modality] = processor_component(component).to_dict()
    return out


def run_modality_processors(components: dict[str, dict], given: dict) -> dict:
    """The tensors of the new modalities in ``given`` (processor keyword -> arrays), each by its component; a keyword
    without a component is a `TypeError` naming the ones there are."""
    unknown = sorted(name for name in given if name not in components)
    if unknown:
        raise TypeError(f"CodeBindProcessor got unexpected keyword arguments {unknown}; new modalities need a component "
                        f"(processor.add_modality(name, component)); it has {sorted(components) or 'none'}")
    data = {}
    for name, arrays in given.items():
        if arrays is not None:
            data.update(processor_component(components[name])(arrays, return_tensors="pt"))
    return data


__all__ = ["CodeBindArraySensorFeatureExtractor", "processor_component", "modality_processor_dicts",
           "run_modality_processors", "CHANNEL_ORDERS", "TIME_POLICIES", "NAN_POLICIES"]
