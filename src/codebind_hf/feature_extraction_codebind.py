"""Audio front end of ImageBind: windowed-sinc resampling, 2-s clips, Kaldi log-mel filterbanks, in torch.

The recipe is ImageBind's ``load_and_transform_audio_data`` (torchaudio cannot be installed beside torch 2.13, so the
two torchaudio steps are re-implemented here and checked against the reference outputs):

1. Resample to 16 kHz with the band-limited windowed-sinc filter of ``torchaudio.functional.resample`` at its defaults
   (Hann window, ``lowpass_filter_width=6`` zero crossings, ``rolloff=0.99``): [`resample`].
2. Take ``clips_per_sample`` (3) clips of ``clip_duration`` (2 s) spread evenly over the file, as pytorchvideo's
   ``ConstantClipsPerVideoSampler``: the first starts at 0, the last ends at the end, clip ``i`` starts at
   ``i * (duration - 2) / (clips - 1)``; a file shorter than 2 s gives the same (shorter) clip 3 times:
   [`clip_boundaries`].
3. Per clip, subtract its mean over all channels. As in the reference this happens in place on the shared waveform,
   so where clips overlap a later clip sees the earlier clip's mean already removed.
4. Kaldi filterbank of the first channel (``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True``,
   ``window_type="hanning"``, ``dither=0``, ``use_energy=False``, 25 ms frames every 10 ms, 128 bins): per frame DC
   removal, pre-emphasis 0.97, symmetric Hann window, zero padding to a 512-point FFT, power spectrum, triangular mel
   filters from 20 Hz to Nyquist, log with a floor at float32 epsilon: [`kaldi_fbank`].
5. Transpose to `(mel bins, frames)`, zero-pad or cut to ``target_length`` (204) frames, normalise with mean -4.268
   and std 9.138.
"""

from __future__ import annotations

import inspect
import math
import wave
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .validation import check_sampling_rate

# Kaldi frame settings ImageBind uses.
FRAME_LENGTH_MS, FRAME_SHIFT_MS, PREEMPHASIS = 25.0, 10.0, 0.97
_RESAMPLE_BLOCK = 1 << 14  # output blocks per matmul, bounds the memory of long files


# ---------------------------------------------------------------------------------------------------- resampling
@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, lowpass_filter_width: int, rolloff: float, dtype: torch.dtype):
    """Interpolation filters `(new, 2 * width + orig)` for reduced rates, built as torchaudio builds them.

    Cached (the same few rate pairs recur); callers must not modify the returned kernel.
    """
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=dtype)[None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype)[:, None] / new + idx
    t = (t * base).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones((), dtype=dtype), t.sin() / t)
    return kernel * (window * (base / orig)), width


def resample(
    waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Band-limited windowed-sinc resampling of `(..., time)`, numerically ``torchaudio.functional.resample``.

    Output sample ``j`` of each block of ``new`` samples is the dot product of one filter with a window of the input
    that moves by ``orig`` samples per block (rates reduced by their gcd), so the whole resampling is one strided
    view and one matrix product.

    Args:
        waveform (`torch.Tensor` of shape `(..., time)`): floating point signal.
        orig_freq (`int`), new_freq (`int`): the rates in Hz.
        lowpass_filter_width (`int`, *optional*, defaults to 6): zero crossings of the sinc on each side.
        rolloff (`float`, *optional*, defaults to 0.99): cut-off as a fraction of the lower Nyquist frequency.

    Returns:
        `torch.Tensor` of shape `(..., ceil(time * new_freq / orig_freq))`.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.feature_extraction_codebind import resample
    >>> resample(torch.zeros(2, 44100), 44100, 16000).shape
    torch.Size([2, 16000])

    ```
    """
    for name, rate in (("orig_freq", orig_freq), ("new_freq", new_freq)):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    if not waveform.is_floating_point():
        raise TypeError(f"resample expects a floating point waveform, got dtype {waveform.dtype}")
    if lowpass_filter_width <= 0:
        raise ValueError(f"lowpass_filter_width must be positive, got {lowpass_filter_width}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff, waveform.dtype)
    shape = waveform.shape
    flat = F.pad(waveform.reshape(-1, shape[-1]), (width, width + orig))
    frames = flat.unfold(-1, kernel.shape[-1], orig)  # (signals, blocks, taps), a view
    blocks = [frames[:, i : i + _RESAMPLE_BLOCK] @ kernel.t() for i in range(0, frames.shape[1], _RESAMPLE_BLOCK)]
    out = torch.cat(blocks, dim=1).reshape(flat.shape[0], -1)
    # torchaudio rounds the target length through a float32 tensor; do the same so lengths agree exactly.
    target = math.ceil(float(np.float32(new * shape[-1] / orig)))
    return out[:, :target].reshape(*shape[:-1], -1)


# ---------------------------------------------------------------------------------------------------- Kaldi fbank
def _mel(freq):
    return (
        1127.0 * (1.0 + freq / 700.0).log() if isinstance(freq, torch.Tensor) else 1127.0 * math.log(1.0 + freq / 700.0)
    )


@lru_cache(maxsize=8)
def mel_banks(
    num_bins: int, fft_size: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0
) -> torch.Tensor:
    """Kaldi's triangular mel filters `(num_bins, fft_size // 2 + 1)`; the Nyquist bin gets no weight, as in Kaldi.

    ``high_freq <= 0`` counts down from Nyquist (0 means Nyquist). Returned tensors are cached: do not modify them.
    """
    nyquist = 0.5 * sample_rate
    high = high_freq + nyquist if high_freq <= 0 else high_freq
    if not 0 <= low_freq < high <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz), got {low_freq} and {high}")
    mel_low, mel_high = _mel(low_freq), _mel(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins)[:, None]
    left, center, right = mel_low + bins * delta, mel_low + (bins + 1.0) * delta, mel_low + (bins + 2.0) * delta
    mel = _mel(torch.arange(fft_size // 2, dtype=torch.float32) * (sample_rate / fft_size))[None]
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(weights, (0, 1))


def kaldi_fbank(signal: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 128) -> torch.Tensor:
    """Log-mel filterbank `(frames, num_mel_bins)` of a mono float signal `(time,)`.

    Equal to ``torchaudio.compliance.kaldi.fbank(signal[None], htk_compat=True, sample_frequency=sample_rate,
    use_energy=False, window_type="hanning", num_mel_bins=num_mel_bins, dither=0.0, frame_length=25, frame_shift=10)``:
    ``1 + (time - 400) // 160`` frames at 16 kHz (edges snipped; none when the signal is shorter than one frame).
    """
    if signal.ndim != 1:
        raise ValueError(f"kaldi_fbank expects a mono signal (time,), got shape {tuple(signal.shape)}")
    frame = int(sample_rate * FRAME_LENGTH_MS * 0.001)
    shift = int(sample_rate * FRAME_SHIFT_MS * 0.001)
    if signal.shape[0] < frame:
        return signal.new_zeros(0, num_mel_bins)
    fft_size = 1 << (frame - 1).bit_length()
    frames = signal.unfold(0, frame, shift)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # Kaldi replicates the first sample
    frames = (frames - PREEMPHASIS * previous) * torch.hann_window(frame, periodic=False, dtype=frames.dtype)
    power = torch.fft.rfft(F.pad(frames, (0, fft_size - frame))).abs().pow(2.0)
    energies = power @ mel_banks(num_mel_bins, fft_size, sample_rate).to(power.dtype).t()
    return energies.clamp_min(torch.finfo(torch.float32).eps).log()


def clip_boundaries(
    num_samples: int, sample_rate: int, clip_duration: float = 2.0, clips: int = 3
) -> list[tuple[int, int]]:
    """Sample ranges of ``clips`` clips of ``clip_duration`` s spread evenly over ``num_samples`` samples.

    pytorchvideo's ``ConstantClipsPerVideoSampler`` with ImageBind's slicing: exact fractions, with the duration
    subtraction done in floating point as the reference does, so the clip starts fall on the very same samples.

    Example:

    ```python
    >>> from codebind_hf.feature_extraction_codebind import clip_boundaries
    >>> clip_boundaries(80000, 16000)
    [(0, 32000), (24000, 56000), (48000, 80000)]

    ```
    """
    duration = Fraction(clip_duration)
    starts = clip_start_times(num_samples / sample_rate, clip_duration, clips)
    return [(int(start * sample_rate), int((start + duration) * sample_rate)) for start in starts]


def clip_start_times(duration: float, clip_duration: float, clips: int) -> list[Fraction]:
    """Start times (exact fractions of s) of ``clips`` clips spread over ``duration`` s, as pytorchvideo places them."""
    latest_start = Fraction(max(duration - Fraction(clip_duration), 0))
    step = latest_start / max(clips - 1, 1)
    return [step * i for i in range(clips)]


def with_context(err: Exception, where: str) -> Exception:
    """The same kind of error (``TypeError`` or ``ValueError``) with the failing batch item named first."""
    return (TypeError if isinstance(err, TypeError) else ValueError)(f"{where}: {err}")


def init_parameters(cls) -> list[str]:
    """Named parameters of a class's constructor (its settings: what ``from_pretrained`` keywords can set)."""
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


# ---------------------------------------------------------------------------------------------------- file reading
def _pcm_to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1) with torchaudio's scaling (unsigned 8-bit is offset by 128)."""
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if data.dtype in (np.int16, np.int32):
        return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    if data.dtype.kind == "f":
        return data.astype(np.float32)
    raise TypeError(f"unsupported audio sample type {data.dtype}; expected float, int16, int32 or uint8 PCM")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as `(channels, samples)` float32 and its sample rate.

    PCM wav (8/16/24/32-bit) is read with the standard library; float or extensible wav with ``scipy.io.wavfile``
    when scipy is installed; other formats (flac, ogg, mp3 ...) with ``soundfile`` when it is installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    errors = []
    try:
        with wave.open(str(path)) as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
        if width == 3:  # 24-bit little endian: sign-extend into int32, scale by 2**23
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
            data = ints.astype(np.float32) / float(2**23)
        else:
            dtype = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}.get(width)
            if dtype is None:
                raise ValueError(f"unsupported sample width {8 * width} bits")
            data = _pcm_to_float(np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("=")))
        return np.ascontiguousarray(data.reshape(-1, channels).T), rate
    except (wave.Error, EOFError, ValueError) as err:
        errors.append(f"wave: {err}")
    try:
        from scipy.io import wavfile

        rate, data = wavfile.read(path)
        data = _pcm_to_float(np.asarray(data))
        return np.ascontiguousarray(data.T if data.ndim == 2 else data[None]), int(rate)
    except ImportError:
        errors.append("scipy not installed")
    except (ValueError, TypeError) as err:
        errors.append(f"scipy: {err}")
    try:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(rate)
    except ImportError:
        errors.append("soundfile not installed (needed for non-wav formats)")
    except RuntimeError as err:
        errors.append(f"soundfile: {err}")
    raise ValueError(f"{path}: not a readable audio file ({'; '.join(errors)})")


# ---------------------------------------------------------------------------------------------------- extractor
class CodeBindAudioKwargs(TypedDict, total=False):
    """Per-call options of [`CodeBindFeatureExtractor`] (``audio_kwargs`` of [`CodeBindProcessor`])."""

    # Hz, one for all items or one per item; typed loosely because the extractor checks it and names the item.
    sampling_rate: Any
    return_tensors: str | None


class CodeBindFeatureExtractor(FeatureExtractionMixin):
    """Waveforms or audio files -> ImageBind spectrogram clips `(batch, clips, 1, num_mel_bins, target_length)`.

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000): the rate the spectrograms are computed at.
        num_mel_bins (`int`, *optional*, defaults to 128): mel filters.
        target_length (`int`, *optional*, defaults to 204): frames per clip after padding / cutting.
        clip_duration (`float`, *optional*, defaults to 2.0): seconds per clip.
        clips_per_sample (`int`, *optional*, defaults to 3): clips spread over each waveform.
        mean (`float`, *optional*, defaults to -4.268), std (`float`, *optional*, defaults to 9.138): normalisation.
        max_channels (`int`, *optional*, defaults to 16): more channels than this means the array is probably
            `(samples, channels)`, which is refused.
        default_sampling_rate (`int`, *optional*): the rate assumed for arrays given without ``sampling_rate``;
            `None` (the default) requires the rate with every array, since a wrong guess changes the spectrogram
            silently.

    Example:

    ```python
    >>> import numpy as np
    >>> from codebind_hf.feature_extraction_codebind import CodeBindFeatureExtractor
    >>> extractor = CodeBindFeatureExtractor()
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(44100 * 3) / 44100)
    >>> extractor([tone], sampling_rate=44100)["audio_values"].shape
    torch.Size([1, 3, 1, 128, 204])

    ```
    """

    model_input_names = ["audio_values"]
    valid_kwargs = CodeBindAudioKwargs

    def __init__(
        self,
        sampling_rate: int = 16000,
        num_mel_bins: int = 128,
        target_length: int = 204,
        clip_duration: float = 2.0,
        clips_per_sample: int = 3,
        mean: float = -4.268,
        std: float = 9.138,
        max_channels: int = 16,
        default_sampling_rate: int | None = None,
        **kwargs,
    ):
        kwargs.pop("feature_extractor_type", None)
        super().__init__(**kwargs)
        for name, value in (
            ("sampling_rate", sampling_rate),
            ("num_mel_bins", num_mel_bins),
            ("target_length", target_length),
            ("clips_per_sample", clips_per_sample),
            ("max_channels", max_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_sampling_rate(sampling_rate, "the feature extractor's target rate")
        if default_sampling_rate is not None:
            if isinstance(default_sampling_rate, bool) or not isinstance(default_sampling_rate, int):
                raise ValueError(
                    f"default_sampling_rate must be an int number of Hz or None, got {default_sampling_rate!r}"
                )
            check_sampling_rate(default_sampling_rate, "default_sampling_rate")
        if not clip_duration > 0 or not std > 0:
            raise ValueError(f"clip_duration and std must be positive, got {clip_duration!r} and {std!r}")
        self.sampling_rate, self.num_mel_bins, self.target_length = sampling_rate, num_mel_bins, target_length
        self.clip_duration, self.clips_per_sample = float(clip_duration), clips_per_sample
        self.mean, self.std, self.max_channels = float(mean), float(std), max_channels
        self.default_sampling_rate = default_sampling_rate

    def _waveform(self, audio, sampling_rate) -> tuple[torch.Tensor, int]:
        """`(channels, samples)` float32 and its rate, from a file path or an array."""
        if sampling_rate is not None and (
            isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer))
        ):
            raise TypeError(f"sampling_rate must be an int number of Hz (e.g. 16000), got {sampling_rate!r}")
        if sampling_rate is not None:
            check_sampling_rate(int(sampling_rate))  # positive, and not kHz by mistake
        if isinstance(audio, (str, Path)):
            data, rate = read_audio(audio)
            if sampling_rate is not None and int(sampling_rate) != rate:
                raise ValueError(f"{audio} is sampled at {rate} Hz but sampling_rate={sampling_rate} was given")
            return torch.from_numpy(data), rate
        sampling_rate = self.default_sampling_rate if sampling_rate is None else sampling_rate
        if sampling_rate is None:
            raise ValueError(
                "sampling_rate is required for audio arrays (e.g. sampling_rate=16000); files carry their own "
                "(or set the feature extractor's default_sampling_rate)"
            )
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        array = np.asarray(audio)
        if array.dtype == object or array.dtype.kind not in "fiu":
            raise TypeError(f"audio arrays must hold real numbers, got dtype {array.dtype}")
        array = _pcm_to_float(array) if array.dtype.kind in "iu" else array.astype(np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2:
            raise ValueError(f"audio arrays must be (samples,) or (channels, samples); got shape {array.shape}")
        if array.shape[0] > self.max_channels:
            raise ValueError(
                f"audio array has {array.shape[0]} channels (more than max_channels={self.max_channels}); expected "
                f"(channels, samples): pass the transpose if your array is (samples, channels)"
            )
        return torch.from_numpy(np.ascontiguousarray(array)), int(sampling_rate)

    def clips(self, audio, sampling_rate: int | None = None) -> torch.Tensor:
        """Spectrogram clips `(clips_per_sample, 1, num_mel_bins, target_length)` of one waveform or file."""
        waveform, rate = self._waveform(audio, sampling_rate)
        if waveform.shape[-1] == 0:
            raise ValueError("audio is empty (0 samples)")
        if not torch.isfinite(waveform).all():
            raise ValueError("audio contains NaN or inf samples")
        waveform = resample(waveform, rate, self.sampling_rate).clone()
        min_samples = int(self.sampling_rate * FRAME_LENGTH_MS * 0.001)
        if waveform.shape[-1] < min_samples:
            raise ValueError(
                f"audio is too short: {waveform.shape[-1]} samples at {self.sampling_rate} Hz, need at least one "
                f"{FRAME_LENGTH_MS:g} ms frame ({min_samples} samples)"
            )
        spans = clip_boundaries(waveform.shape[-1], self.sampling_rate, self.clip_duration, self.clips_per_sample)
        out = []
        for start, end in spans:
            clip = waveform[:, start:end]
            clip -= clip.mean()  # in place, as the reference (see module docstring)
            fbank = kaldi_fbank(clip[0], self.sampling_rate, self.num_mel_bins).t()
            missing = self.target_length - fbank.shape[1]
            fbank = F.pad(fbank, (0, missing)) if missing > 0 else fbank[:, : self.target_length]
            out.append(((fbank - self.mean) / self.std)[None])
        return torch.stack(out)

    def __call__(self, audio, sampling_rate=None, return_tensors: str | None = "pt") -> BatchFeature:
        """Spectrogram clips of a batch of waveforms or files.

        Args:
            audio: one item or a list of items; an item is a file path, or a `(samples,)` / `(channels, samples)`
                float array (numpy or torch; int16/int32/uint8 PCM arrays are scaled like wav files). Only the
                first channel is used, as in ImageBind.
            sampling_rate (`int` or `list[int]`): the rate of the arrays (one for all, or one per item); required
                for arrays unless ``default_sampling_rate`` is set. Files carry their own rate (a given rate must
                agree with it).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"`.

        Returns:
            [`BatchFeature`] with ``audio_values`` of shape `(batch, clips_per_sample, 1, num_mel_bins, target_length)`.
        """
        items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        if not items:
            raise ValueError("audio is empty; expected at least one waveform or file")
        rates = list(sampling_rate) if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(items)
        if len(rates) != len(items):
            raise ValueError(f"got {len(rates)} sampling rates for {len(items)} audio items")
        values = []
        for index, (item, rate) in enumerate(zip(items, rates, strict=True)):
            try:
                values.append(self.clips(item, rate))
            except (ValueError, TypeError) as err:
                raise with_context(err, f"audio item {index}") from err
        return BatchFeature({"audio_values": torch.stack(values)}, tensor_type=return_tensors)


__all__ = [
    "CodeBindFeatureExtractor",
    "resample",
    "kaldi_fbank",
    "mel_banks",
    "clip_boundaries",
    "clip_start_times",
    "read_audio",
    "with_context",
    "init_parameters",
    "CodeBindAudioKwargs",
]
