"""Audio front end: parity with ImageBind's spectrograms, resampler and fbank checks, wav reading, errors, speed."""

import json
import math
import os
import time
import wave

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from codebind_hf.feature_extraction_codebind import (
    CodeBindFeatureExtractor,
    _sinc_kernel,
    clip_boundaries,
    kaldi_fbank,
    mel_banks,
    read_audio,
    resample,
)

PRE = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_preprocessing")
META = json.load(open(os.path.join(PRE, "README.json")))
FILES = [os.path.join(PRE, name) for name in META["audio_files"]]


@pytest.fixture(scope="module")
def extractor():
    return CodeBindFeatureExtractor()


def _write_wav(path, data: np.ndarray, rate: int, width: int):
    """`(channels, samples)` integer PCM -> wav with the stdlib."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(data.shape[0])
        handle.setsampwidth(width)
        handle.setframerate(rate)
        frames = data.T.reshape(-1)
        if width == 3:
            raw = frames.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        else:
            raw = frames.astype({1: np.uint8, 2: "<i2", 4: "<i4"}[width]).tobytes()
        handle.writeframes(raw)


def test_files_match_reference_spectrograms(extractor):
    expected = load_file(os.path.join(PRE, "expected.safetensors"))["audio"]
    out = extractor(FILES)["audio_values"]
    assert out.shape == expected.shape == (3, 3, 1, 128, 204)
    diff = (out - expected).abs()
    assert diff.max() <= 1e-3 and diff.mean() <= 1e-5  # measured: max 2.4e-4, mean 4e-7


def test_arrays_equal_files(extractor):
    data, rate = read_audio(FILES[0])
    assert rate == 44100 and data.shape == (2, 220500) and data.dtype == np.float32
    from_array = extractor([data, torch.from_numpy(data[0])], sampling_rate=[rate, rate])["audio_values"]
    from_file = extractor([FILES[0]])["audio_values"]
    assert torch.equal(from_array[:1], from_file)
    # only the first channel is transformed, but the clip mean is taken over all channels (as the reference)
    assert not torch.equal(from_array[0], from_array[1])


def test_resampler_identity_length_and_tone():
    x = torch.randn(2, 1000)
    assert resample(x, 16000, 16000) is x
    tone = torch.sin(2 * math.pi * 440 * torch.arange(44100) / 44100)
    out = resample(tone, 44100, 16000)
    assert out.shape == (16000,)
    spectrum = torch.fft.rfft(out[2000:14000] * torch.hann_window(12000))
    assert abs(int(spectrum.abs().argmax()) * 16000 / 12000 - 440) < 2
    # the tone keeps its amplitude (pass band) ...
    assert abs(out[1000:-1000].abs().max().item() - 1.0) < 0.01
    # ... and a tone above the new Nyquist frequency is filtered out (stop band)
    high = torch.sin(2 * math.pi * 12000 * torch.arange(44100) / 44100)
    assert resample(high, 44100, 16000)[1000:-1000].abs().max() < 0.02
    # upsampling keeps the tone too; lengths are ceil(n * new / old)
    up = resample(torch.sin(2 * math.pi * 1000 * torch.arange(8000) / 8000), 8000, 22050)
    assert up.shape == (22050,) and abs(up[2000:-2000].abs().max().item() - 1.0) < 0.01
    assert resample(torch.zeros(1001), 44100, 16000).shape == (math.ceil(1001 * 160 / 441),)


@pytest.mark.parametrize("orig, new", [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (16000, 44100)])
def test_resampler_equals_strided_convolution(orig, new):
    """The blockwise matrix product is torchaudio's strided conv1d with the same filters."""
    x = torch.randn(3, 5000, dtype=torch.float64)
    g = math.gcd(orig, new)
    kernel, width = _sinc_kernel(orig // g, new // g, 6, 0.99, torch.float64)
    conv = F.conv1d(F.pad(x, (width, width + orig // g))[:, None], kernel[:, None], stride=orig // g)
    conv = conv.transpose(1, 2).reshape(3, -1)[:, : math.ceil(new * 5000 / orig)]
    assert torch.allclose(resample(x, orig, new), conv, atol=1e-12)


def test_mel_banks_are_kaldi_triangles():
    banks = mel_banks(128, 512, 16000)
    assert banks.shape == (128, 257) and banks[:, -1].eq(0).all() and banks.min() >= 0 and banks.max() <= 1
    # filter k peaks near its centre frequency on the mel scale (20 Hz .. 8 kHz, 129 equal steps)
    mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    step = (mel(8000) - mel(20)) / 129
    centre_hz = 700 * (math.exp((mel(20) + 50 * step) / 1127) - 1)
    assert abs(int(banks[49].argmax()) * 16000 / 512 - centre_hz) <= 16000 / 512


def test_fbank_tone_peaks_in_its_mel_bin_and_frame_count():
    freq = 1000.0
    tone = torch.sin(2 * math.pi * freq * torch.arange(16000) / 16000)
    fbank = kaldi_fbank(tone)
    assert fbank.shape == (1 + (16000 - 400) // 160, 128)
    banks = mel_banks(128, 512, 16000)
    assert int(fbank.mean(0).argmax()) == int(banks[:, round(freq / (16000 / 512))].argmax())
    # level: 1 kHz is exactly FFT bin 32, where the windowed sine has |X| = sum(hann) / 2 and pre-emphasis
    # scales the power by |1 - 0.97 exp(-i w)|^2; the mel energy is that times the filters' weights around bin 32
    w = 2 * math.pi * freq / 16000
    peak_power = (199.5 / 2) ** 2 * ((1 - 0.97 * math.cos(w)) ** 2 + (0.97 * math.sin(w)) ** 2)
    top = int(fbank.mean(0).argmax())
    assert fbank[1:-1, top].max().item() <= math.log(peak_power * banks[top, 31:34].sum().item())
    assert fbank[1:-1, top].min().item() >= math.log(peak_power * banks[top, 32].item())
    # silence and a constant signal (removed as DC) hit the log floor; shorter than one frame: no frames
    floor = math.log(torch.finfo(torch.float32).eps)
    assert torch.allclose(kaldi_fbank(torch.full((800,), 0.3)), torch.full((3, 128), floor))
    assert kaldi_fbank(torch.zeros(399)).shape == (0, 128)


def test_fbank_equals_a_float64_numpy_kaldi_recipe():
    """Frame by frame against the Kaldi steps written out independently (numpy, float64, mel filters by formula)."""
    signal = np.random.default_rng(0).standard_normal(2000) * 0.3
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    edges = mel(20.0) + np.arange(130) * (mel(8000.0) - mel(20.0)) / 129
    fft_mel = mel(np.arange(256) * 16000 / 512)
    up = (fft_mel[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    down = (edges[2:, None] - fft_mel[None]) / (edges[2:, None] - edges[1:-1, None])
    banks = np.pad(np.maximum(0.0, np.minimum(up, down)), ((0, 0), (0, 1)))
    rows = []
    for start in range(0, 2000 - 400 + 1, 160):
        frame = signal[start : start + 400] - signal[start : start + 400].mean()
        frame = (frame - 0.97 * np.concatenate([frame[:1], frame[:-1]])) * np.hanning(400)
        power = np.abs(np.fft.rfft(frame, 512)) ** 2
        rows.append(np.log(np.maximum(banks @ power, np.finfo(np.float32).eps)))
    ours = kaldi_fbank(torch.tensor(signal, dtype=torch.float32)).double().numpy()
    assert ours.shape == (len(rows), 128)
    assert np.abs(ours - np.stack(rows)).max() < 1e-3


def test_clip_boundaries_follow_the_clip_sampler():
    assert clip_boundaries(80000, 16000) == [(0, 32000), (24000, 56000), (48000, 80000)]
    assert clip_boundaries(16000, 16000) == [(0, 32000)] * 3  # short: one clip, repeated, padded later
    assert clip_boundaries(80000, 16000, clips=1) == [(0, 32000)]


def test_short_audio_is_padded_not_repeated_content(extractor):
    out = extractor([np.sin(np.arange(8000) * 0.3)], sampling_rate=16000)["audio_values"][0]
    pad = torch.tensor((0.0 - extractor.mean) / extractor.std, dtype=torch.float32)
    # the same samples thrice; the in-place mean removal (as the reference) leaves only rounding differences,
    # visible only in near-silent bins close to the log floor
    assert torch.allclose(out[0], out[1], atol=1e-2) and torch.allclose(out[1], out[2], atol=1e-2)
    frames = 1 + (8000 - 400) // 160
    is_pad = (out[0, 0] - pad).abs() < 1e-6
    assert is_pad[:, frames:].all() and not is_pad[:, :frames].any()


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_pcm_wav_widths(tmp_path, width):
    bits = 8 * width
    peak = 2 ** (bits - 1) - 1
    signal = np.round(np.sin(np.linspace(0, 20, 300)) * peak).astype(np.int64)[None].repeat(2, 0)
    signal[1] *= -1
    stored = signal + 128 if width == 1 else signal
    _write_wav(tmp_path / "x.wav", stored, 22050, width)
    data, rate = read_audio(tmp_path / "x.wav")
    assert rate == 22050 and data.shape == (2, 300) and data.dtype == np.float32
    assert np.allclose(data, signal / 2 ** (bits - 1), atol=1e-7)


def test_read_float_wav_with_scipy(tmp_path):
    wavfile = pytest.importorskip("scipy.io.wavfile")
    signal = (np.random.default_rng(0).standard_normal((1000, 2)) * 0.1).astype(np.float32)
    wavfile.write(tmp_path / "f.wav", 32000, signal)
    data, rate = read_audio(tmp_path / "f.wav")
    assert rate == 32000 and np.array_equal(data, signal.T)


def test_integer_pcm_arrays_are_scaled_like_files(extractor):
    pcm = (np.sin(np.linspace(0, 3000, 48000)) * 20000).astype(np.int16)
    from_int = extractor([pcm], sampling_rate=16000)["audio_values"]
    from_float = extractor([pcm.astype(np.float32) / 32768], sampling_rate=16000)["audio_values"]
    assert torch.equal(from_int, from_float)


@pytest.mark.parametrize(
    "audio, rate, error, message",
    [
        ([np.zeros(1000)], None, ValueError, "sampling_rate is required"),
        ([np.zeros(1000)], 16000.0, TypeError, "must be an int"),
        ([np.zeros(1000)], True, TypeError, "must be an int"),
        ([np.zeros(1000)], "16k", TypeError, "must be an int"),
        ([np.zeros(1000)], -16000, ValueError, "must be a positive number of Hz"),
        ([np.zeros(0)], 16000, ValueError, "empty"),
        ([np.full(1000, np.nan)], 16000, ValueError, "NaN"),
        ([np.full(1000, np.inf)], 16000, ValueError, "NaN or inf"),
        ([np.zeros((44100, 2))], 44100, ValueError, r"\(samples, channels\)"),
        ([np.zeros((2, 3, 100))], 16000, ValueError, r"\(channels, samples\)"),
        ([np.zeros(300)], 16000, ValueError, "too short"),
        ([np.array(["a", "b"])], 16000, TypeError, "real numbers"),
        ([np.zeros(1000), np.zeros(1000)], [16000], ValueError, "2 audio items"),
        ([], 16000, ValueError, "empty"),
        ([os.path.join(PRE, "README.json")], None, ValueError, "not a readable audio file"),
        ([os.path.join(PRE, "missing.wav")], None, FileNotFoundError, "not found"),
        ([FILES[0]], 16000, ValueError, "sampled at 44100 Hz"),
    ],
)
def test_bad_audio_inputs_raise_clear_errors(extractor, audio, rate, error, message):
    with pytest.raises(error, match=message):
        extractor(audio, sampling_rate=rate)


def test_config_round_trip_and_validation(tmp_path):
    custom = CodeBindFeatureExtractor(clips_per_sample=2, target_length=100)
    custom.save_pretrained(tmp_path)
    again = CodeBindFeatureExtractor.from_pretrained(tmp_path)
    assert again.to_dict() == custom.to_dict()
    assert again([np.zeros(40000)], sampling_rate=16000)["audio_values"].shape == (1, 2, 1, 128, 100)
    with pytest.raises(ValueError, match="num_mel_bins must be a positive int"):
        CodeBindFeatureExtractor(num_mel_bins=0)


def test_ten_second_clip_is_fast(extractor):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared CI cores make multi-threaded timings noisy
    try:
        clip = np.random.default_rng(0).standard_normal((2, 441000)).astype(np.float32) * 0.1
        extractor([clip], sampling_rate=44100)  # warm-up (kernel cache)
        start = time.perf_counter()
        extractor([clip], sampling_rate=44100)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert elapsed < 1.0  # measured ~0.04 s
