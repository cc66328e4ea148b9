"""The sweep's conditions: which view of the spoken digits the target modality gets.

- ``speech``: the microphone clips of [`DemoData`] as built (the bridge's digit content is easy to hear);
- ``vibration``: the same utterances as a body-contact vibration sensor (a throat microphone or a phone's
  accelerometer picking up speech) records them: band-limited to ``60-500 Hz`` (4th-order Butterworth, causal, as
  the sensor's mechanics filter) and buried in the sensor's own white noise at ``0-10 dB`` SNR (seeded per clip).

Why this view: it is *informatively weak* for what the bridge carries (the formants that tell "one" from "nine" lie
above 500 Hz; a linear probe for the digit on the log-mels of the full training set drops from 0.99 on speech to
0.68 on this view, held-out voices) while it keeps what the bridge never sees (the fundamental frequency, i.e. pitch,
and the speaking rate). That is the case the paper says hard alignment handles worst: a target forced to match the
bridge as a whole, with little of the bridge's content to match. Same clips, same rows, same test voices as
``speech``: only the signal differs, so the two conditions' sweeps are directly comparable.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from .data import DemoData, audio_features

CONDITIONS = ("speech", "vibration")
VIBRATION_BAND_HZ = (60.0, 500.0)
VIBRATION_SNR_DB = (0.0, 10.0)


@functools.lru_cache(maxsize=4)
def _band_filter(sample_rate: int, band: tuple[float, float], order: int = 4) -> np.ndarray:
    from scipy.signal import butter

    return butter(order, band, btype="bandpass", fs=sample_rate, output="sos")


def vibration_view(waves: np.ndarray, sample_rate: int, seed: int, band=VIBRATION_BAND_HZ, snr_db=VIBRATION_SNR_DB) -> np.ndarray:
    """The vibration-sensor view `(N, samples)` of microphone clips `(N, samples)` (see the module docstring).

    Row ``i``'s noise comes from a generator keyed by ``(seed, i)``, so a row's view does not depend on the others.

    Example:

    ```python
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> clips = np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    >>> view = vibration_view(clips, 16000, seed=0, snr_db=(60.0, 60.0))  # almost no noise: see the filter
    >>> [round(float(np.sqrt((v[4000:] ** 2).mean()) / np.sqrt((c[4000:] ** 2).mean())), 2) for v, c in zip(view, clips)]
    [1.0, 0.0]

    ```
    """
    from scipy.signal import sosfilt

    waves = np.asarray(waves, dtype=np.float32)
    if waves.ndim != 2:
        raise ValueError(f"vibration_view takes clips of shape (N, samples), got {waves.shape}")
    low, high = band
    if not 0 < low < high < sample_rate / 2:
        raise ValueError(f"band must satisfy 0 < low < high < {sample_rate / 2} Hz (Nyquist), got {band}")
    filtered = sosfilt(_band_filter(sample_rate, (float(low), float(high))), waves, axis=-1).astype(np.float32)
    out = np.empty_like(filtered)
    for i, clip in enumerate(filtered):
        rng = np.random.default_rng([seed, 500, i])
        rms = np.sqrt(np.mean(clip**2) + 1e-12) / 10 ** (rng.uniform(*snr_db) / 20)
        out[i] = clip + rng.standard_normal(clip.shape[-1]).astype(np.float32) * rms
    return out


def condition_data(data: DemoData, condition: str) -> DemoData:
    """``data`` as the target modality sees it in ``condition`` (``"speech"`` returns ``data`` itself).

    The view replaces the waveforms and the normalised log-mels (with the view's own training statistics, as a new
    sensor's processor would have); images, prompts, metadata and the split are shared.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"Unknown condition {condition!r}; expected one of {CONDITIONS}")
    if condition == "speech":
        return data
    spec = data.spec
    waves = {split: vibration_view(getattr(data, f"waves_{split}").numpy(), spec.sample_rate, spec.seed + k)
             for k, split in enumerate(("train", "test"))}  # fmt: skip
    raw = audio_features(waves["train"], spec, torch.tensor([0.0, 1.0]))  # un-normalised log-mels
    stats = torch.tensor([float(raw.mean()), float(raw.std())])
    return dataclasses.replace(
        data,
        waves_train=torch.from_numpy(waves["train"]),
        waves_test=torch.from_numpy(waves["test"]),
        audio_stats=stats,
        audio_train=(raw - stats[0]) / stats[1],
        audio_test=audio_features(waves["test"], spec, stats),
    )


__all__ = ["CONDITIONS", "VIBRATION_BAND_HZ", "VIBRATION_SNR_DB", "vibration_view", "condition_data"]
