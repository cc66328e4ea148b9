"""Processors: parity with ImageBind's preprocessing, signal-processing checks, errors, save/load."""

import json
import math
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codebind_hf.feature_extraction_codebind import CodeBindAudioFeatureExtractor, clip_boundaries, kaldi_fbank, mel_banks, resample
from codebind_hf.processing_codebind import CodeBindProcessor

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_preprocessing")
META = json.load(open(os.path.join(HERE, "README.json")))


@pytest.fixture(scope="module")
def expected():
    return load_file(os.path.join(HERE, "expected.safetensors"))


@pytest.fixture(scope="module")
def processor():
    return CodeBindProcessor.imagebind()


def _files(kind):
    return [os.path.join(HERE, name) for name in META[f"{kind}_files"]]


def test_text_matches_reference_exactly(processor, expected):
    assert torch.equal(processor(text=META["texts"])["input_ids"], expected["text"])


def test_long_text_keeps_end_token(processor):
    ids = processor(text=["word " * 200])["input_ids"]
    assert ids.shape == (1, 77) and ids[0, -1] == 49407 and ids[0, 0] == 49406


def test_images_match_reference(processor, expected):
    out = processor(images=_files("image"))["pixel_values"]
    diff = (out - expected["vision"]).abs()
    assert diff.max() <= 1e-2 and diff.mean() <= 1e-3


def test_audio_matches_reference(processor, expected):
    out = processor(audio=_files("audio"))["audio_values"]
    assert out.shape == expected["audio"].shape
    assert (out - expected["audio"]).abs().max() <= 1e-3


def test_audio_arrays_equal_files(processor):
    from codebind_hf.feature_extraction_codebind import read_wav

    data, rate = read_wav(_files("audio")[1])
    from_array = processor(audio=[data], sampling_rate=rate)["audio_values"]
    assert torch.equal(from_array, processor(audio=[_files("audio")[1]])["audio_values"])


def test_resampler_identity_length_and_frequency():
    x = torch.randn(2, 1000)
    assert resample(x, 16000, 16000) is x
    tone = torch.sin(2 * math.pi * 440 * torch.arange(44100) / 44100)
    out = resample(tone, 44100, 16000)
    assert out.shape == (16000,)
    spectrum = torch.fft.rfft(out[2000:14000] * torch.hann_window(12000))
    peak_hz = int(spectrum.abs().argmax()) * 16000 / 12000
    assert abs(peak_hz - 440) < 2
    # a tone above the new Nyquist is removed
    high = torch.sin(2 * math.pi * 12000 * torch.arange(44100) / 44100)
    assert resample(high, 44100, 16000)[1000:-1000].abs().max() < 0.02


def test_fbank_tone_peaks_in_its_mel_bin():
    freq = 1000.0
    tone = torch.sin(2 * math.pi * freq * torch.arange(16000) / 16000)
    fbank = kaldi_fbank(tone)
    assert fbank.shape == (1 + (16000 - 400) // 160, 128)
    banks = mel_banks(128, 512, 16000)
    fft_bin = round(freq / (16000 / 512))
    assert int(fbank.mean(0).argmax()) == int(banks[:, fft_bin].argmax())
    assert kaldi_fbank(torch.zeros(100)).shape == (0, 128)


def test_clip_boundaries_spread_evenly():
    assert clip_boundaries(80000, 16000) == [(0, 32000), (24000, 56000), (48000, 80000)]
    assert clip_boundaries(16000, 16000) == [(0, 32000)] * 3  # short: same clip, padded later


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"audio": [np.zeros(100)]}, "sampling_rate is required"),
        ({"audio": [np.zeros(100)], "sampling_rate": 16000.5}, "positive integer"),
        ({"audio": [np.zeros(0)], "sampling_rate": 16000}, "empty"),
        ({"audio": [np.full(100, np.nan)], "sampling_rate": 16000}, "NaN"),
        ({"audio": [np.zeros((1000, 2))], "sampling_rate": 16000}, "channels"),
        ({"audio": [np.zeros(100), np.zeros(100)], "sampling_rate": [16000]}, "sampling rates for 2"),
        ({"images": [os.path.join(HERE, "README.json")]}, "not a readable image"),
        ({"audio": [os.path.join(HERE, "README.json")]}, "not a readable PCM wav"),
        ({"videos": [np.zeros((4, 8, 8))]}, r"\(T, H, W, 3\)"),
        ({"imu": [np.zeros((3, 100))]}, r"\(6, time\)"),
        ({"point_clouds": [np.zeros((10, 4))]}, r"\(N, 3\)"),
        ({"depth": [np.full((8, 8), -1.0)]}, "non-negative"),
        ({}, "no inputs given"),
        ({"sampling_rate": 16000, "text": ["x"]}, "without audio"),
    ],
)
def test_bad_inputs_raise_clear_errors(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(**kwargs)


def test_other_modalities_shapes(processor):
    rng = np.random.default_rng(0)
    batch = processor(
        videos=[rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)],
        depth=[rng.uniform(0.5, 5, (60, 80)).astype(np.float32)],
        thermal=[rng.integers(0, 255, (60, 80), dtype=np.uint8)],
        tactile=[rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)],
        imu=[rng.normal(size=(6, 2500))],
        eeg=[rng.normal(size=(128, 300))],
        point_clouds=[rng.normal(size=(5000, 3))],
    )
    assert batch["pixel_values_videos"].shape == (1, 5, 3, 2, 224, 224)
    assert batch["depth_values"].shape == batch["thermal_values"].shape == (1, 1, 224, 224)
    assert batch["tactile_values"].shape == (1, 3, 224, 224)
    assert batch["imu_values"].shape == (1, 6, 2000) and batch["eeg_values"].shape == (1, 128, 512)
    points = batch["point_values"]
    assert points.shape == (1, 8192, 3) and points.norm(dim=-1).max() <= 1 + 1e-5
    # disparity is inversely proportional to depth
    near, far = processor(depth=[np.full((8, 8), 1.0, np.float32), np.full((8, 8), 2.0, np.float32)])["depth_values"]
    assert torch.allclose(near, 2 * far)


def test_save_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path / "proc")
    again = CodeBindProcessor.from_pretrained(tmp_path / "proc")
    inputs = dict(text=META["texts"], images=_files("image")[:1], audio=_files("audio")[:1])
    a, b = processor(**inputs), again(**inputs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="processor_config.json"):
        CodeBindProcessor.from_pretrained(tmp_path)


def test_processor_output_feeds_converted_model(processor):
    from codebind_hf.convert.imagebind import convert_imagebind_checkpoint

    tiny = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_tiny")
    model = convert_imagebind_checkpoint(os.path.join(tiny, "imagebind_tiny.pth"), os.path.join(tiny, "config.json"))
    batch = processor(text=META["texts"][:3], images=_files("image"), audio=_files("audio"))
    with torch.no_grad():
        out = model(**batch)
    assert {m: e.shape[0] for m, e in out.shared_embeds.items()} == {"text": 3, "vision": 3, "audio": 3}
