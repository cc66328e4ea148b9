"""Audio front end of ImageBind, in torch: windowed-sinc resampling, Kaldi fbank, 2-s clips.

Recipe (ImageBind ``load_and_transform_audio_data``): resample to 16 kHz with the windowed-sinc filter of
torchaudio's ``functional.resample`` defaults (Hann window, 6 zero crossings, roll-off 0.99); keep the first
channel; take 3 clips of 2 s spread evenly over the file (a shorter file gives 3 identical, zero-padded
clips); per clip remove the mean (in place, as the reference, so overlapping clips see earlier
clips' mean removal), compute a Kaldi-compatible log-mel filterbank (25 ms Hann frames every
10 ms, 512-point FFT, pre-emphasis 0.97, per-frame DC removal, 128 mel bins from 20 Hz to Nyquist, power
spectrum, no dither), pad or cut to 204 frames, and normalise with mean -4.268 and std 9.138.
torchaudio cannot be installed beside torch 2.13 here, so both steps are implemented below.
"""

from __future__ import annotations

import math
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited windowed-sinc (Hann) resampling of `(..., time)`, numerically torchaudio's default."""
    if not (isinstance(orig_freq, int) and isinstance(new_freq, int)) or orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_freq!r} -> {new_freq!r}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    dtype = waveform.dtype
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + idx) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t) * window * (base / orig)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig).transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * shape[-1] / orig)
    return out[:, :target].reshape(*shape[:-1], -1)


def _mel(freq):
    return 1127.0 * (1.0 + freq / 700.0).log() if isinstance(freq, torch.Tensor) else 1127.0 * math.log(1.0 + freq / 700.0)


def mel_banks(num_bins: int, fft_size: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
    """Kaldi's triangular mel filters `(num_bins, fft_size // 2 + 1)` (last FFT bin has zero weight)."""
    nyquist = 0.5 * sample_rate
    high = high_freq + nyquist if high_freq <= 0 else high_freq
    mel_low, mel_high = _mel(low_freq), _mel(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins, dtype=torch.float32)[:, None]
    left, center, right = mel_low + bins * delta, mel_low + (bins + 1) * delta, mel_low + (bins + 2) * delta
    mel = _mel(torch.arange(fft_size // 2, dtype=torch.float32) * (sample_rate / fft_size))[None]
    weights = torch.clamp(torch.minimum((mel - left) / (center - left), (right - mel) / (right - center)), min=0)
    return F.pad(weights, (0, 1))


def kaldi_fbank(signal: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 128) -> torch.Tensor:
    """Log-mel filterbank `(frames, num_mel_bins)` of a mono signal, as Kaldi / torchaudio's ``compliance.kaldi.fbank``
    with ``htk_compat=True, window_type="hanning", dither=0, use_energy=False``."""
    frame, shift = int(sample_rate * 0.025), int(sample_rate * 0.010)
    if signal.shape[-1] < frame:
        return torch.zeros(0, num_mel_bins)
    fft_size = 1 << (frame - 1).bit_length()
    frames = signal.unfold(0, frame, shift)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - 0.97 * previous) * torch.hann_window(frame, periodic=False, dtype=frames.dtype)
    power = torch.fft.rfft(F.pad(frames, (0, fft_size - frame))).abs().pow(2)
    energies = power @ mel_banks(num_mel_bins, fft_size, sample_rate).t()
    return energies.clamp_min(torch.finfo(torch.float32).eps).log()


def clip_boundaries(num_samples: int, sample_rate: int, clip_duration: float = 2.0, clips: int = 3) -> list[tuple[int, int]]:
    """Sample ranges of ``clips`` clips spread evenly (first at 0, last ending at the end), as ImageBind's sampler."""
    # The reference subtracts in floating point before converting to a fraction; doing the same keeps
    # clip starts on the very same sample.
    latest_start = Fraction(max(num_samples / sample_rate - clip_duration, 0.0))
    step = latest_start / max(clips - 1, 1)
    spans = []
    for index in range(clips):
        start = step * index
        spans.append((int(start * sample_rate), int((start + Fraction(clip_duration)) * sample_rate)))
    return spans


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """`(channels, samples)` float32 in [-1, 1] and the sample rate of a PCM wav file (stdlib only)."""
    try:
        with wave.open(str(path)) as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{path}: not a readable PCM wav file ({err})") from err
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise ValueError(f"{path}: unsupported sample width {8 * width} bits")
    return data.reshape(-1, channels).T.copy(), rate


class CodeBindAudioFeatureExtractor:
    """Waveforms or wav files -> ImageBind spectrogram clips `(batch, clips, 1, num_mel_bins, target_length)`.

    Arrays are 1-D `(samples,)` (mono) or 2-D `(channels, samples)`; only the first channel is used, as in the reference.
    """

    def __init__(self, sampling_rate: int = 16000, num_mel_bins: int = 128, target_length: int = 204, clip_duration: float = 2.0,
                 clips_per_sample: int = 3, mean: float = -4.268, std: float = 9.138, max_channels: int = 16):
        self.sampling_rate, self.num_mel_bins, self.target_length = sampling_rate, num_mel_bins, target_length
        self.clip_duration, self.clips_per_sample, self.mean, self.std = clip_duration, clips_per_sample, mean, std
        self.max_channels = max_channels

    def to_dict(self) -> dict:
        return dict(vars(self))

    def _waveform(self, audio, sampling_rate) -> tuple[torch.Tensor, int]:
        if isinstance(audio, (str, Path)):
            data, rate = read_wav(audio)
            return torch.from_numpy(data), rate
        if sampling_rate is None:
            raise ValueError("sampling_rate is required for audio arrays (e.g. sampling_rate=16000)")
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}")
        tensor = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if tensor.ndim == 1:
            tensor = tensor[None]
        if tensor.ndim != 2:
            raise ValueError(f"audio arrays must be (samples,) or (channels, samples); got shape {tuple(tensor.shape)}")
        if tensor.shape[0] > self.max_channels:
            raise ValueError(
                f"audio array has {tensor.shape[0]} channels (> {self.max_channels}); expected (channels, samples) — "
                "pass the transpose if your array is (samples, channels)"
            )
        return tensor, int(sampling_rate)

    def clips(self, audio, sampling_rate: int | None = None) -> torch.Tensor:
        """Spectrogram clips `(clips, 1, num_mel_bins, target_length)` of one waveform or file."""
        waveform, rate = self._waveform(audio, sampling_rate)
        if waveform.shape[-1] == 0:
            raise ValueError("audio is empty (0 samples)")
        if not torch.isfinite(waveform).all():
            raise ValueError("audio contains NaN or inf samples")
        waveform = resample(waveform, rate, self.sampling_rate).clone()
        out = []
        for start, end in clip_boundaries(waveform.shape[-1], self.sampling_rate, self.clip_duration, self.clips_per_sample):
            clip = waveform[:, start:end]
            # As the reference: the mean over all channels is removed in place on the shared waveform, so where
            # clips overlap a later clip sees the earlier clip's mean already removed; the fbank reads channel 0.
            clip -= clip.mean()
            fbank = kaldi_fbank(clip[0], self.sampling_rate, self.num_mel_bins).t()
            missing = self.target_length - fbank.shape[1]
            fbank = F.pad(fbank, (0, missing)) if missing > 0 else fbank[:, : self.target_length]
            out.append(((fbank - self.mean) / self.std)[None])
        return torch.stack(out)

    def __call__(self, audio, sampling_rate=None) -> torch.Tensor:
        """A list of waveforms/files (or one) -> `(batch, clips, 1, num_mel_bins, target_length)`.

        ``sampling_rate`` is one int for all arrays or a list with one per item; files carry their own.
        """
        items = audio if isinstance(audio, (list, tuple)) else [audio]
        if not items:
            raise ValueError("audio is empty; expected at least one waveform or file")
        rates = sampling_rate if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(items)
        if len(rates) != len(items):
            raise ValueError(f"got {len(rates)} sampling rates for {len(items)} audio items")
        return torch.stack([self.clips(a, r) for a, r in zip(items, rates)])


__all__ = ["CodeBindAudioFeatureExtractor", "resample", "kaldi_fbank", "mel_banks", "clip_boundaries", "read_wav"]
