"""CodeBindProcessor: reference parity through the one call, all keys, save/load round trip, errors, model feed."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codebind_hf.feature_extraction_codebind import CodeBindFeatureExtractor
from codebind_hf.feature_extraction_sensors import CodeBindSensorFeatureExtractor
from codebind_hf.image_processing_codebind import CodeBindImageProcessor
from codebind_hf.processing_codebind import CodeBindProcessor
from codebind_hf.tokenization_codebind import CodeBindTokenizer

HERE = os.path.dirname(__file__)
PRE = os.path.join(HERE, "fixtures", "imagebind_preprocessing")
META = json.load(open(os.path.join(PRE, "README.json")))


def _files(kind):
    return [os.path.join(PRE, name) for name in META[f"{kind}_files"]]


@pytest.fixture(scope="module")
def processor():
    return CodeBindProcessor.imagebind()


def _all_inputs():
    rng = np.random.default_rng(0)
    return dict(
        text=META["texts"][:2],
        images=_files("image")[:2],
        videos=[rng.integers(0, 256, (24, 48, 64, 3), dtype=np.uint8)],
        video_fps=8,
        audio=[_files("audio")[1], rng.standard_normal(20000) * 0.1],
        sampling_rate=[None, 8000],
        depth=[rng.uniform(0.5, 5, (60, 80))],
        thermal=[rng.integers(0, 256, (60, 80), dtype=np.uint8)],
        imu=[rng.normal(size=(6, 2500))],
        tactile=[rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)],
        eeg=[rng.normal(size=(128, 500))],
        point_clouds=[rng.normal(size=(5000, 3))],
    )


def test_reference_parity_through_the_processor(processor):
    expected = load_file(os.path.join(PRE, "expected.safetensors"))
    batch = processor(text=META["texts"], images=_files("image"), audio=_files("audio"))
    assert torch.equal(batch["input_ids"], expected["text"])
    vision = (batch["pixel_values"] - expected["vision"]).abs()
    audio = (batch["audio_values"] - expected["audio"]).abs()
    assert vision.max() <= 1e-2 and vision.mean() <= 1e-3  # measured 0 / 0
    assert audio.max() <= 1e-3  # measured 2.4e-4 (mean 4e-7)


def test_every_modality_key_and_shape(processor):
    batch = processor(**_all_inputs())
    shapes = {key: tuple(value.shape) for key, value in batch.items()}
    assert shapes == {
        "input_ids": (2, 77),
        "attention_mask": (2, 77),
        "pixel_values": (2, 3, 224, 224),
        "pixel_values_videos": (1, 15, 3, 2, 224, 224),
        "depth_values": (1, 1, 224, 224),
        "thermal_values": (1, 1, 224, 224),
        "tactile_values": (1, 3, 224, 224),
        "audio_values": (2, 3, 1, 128, 204),
        "imu_values": (1, 6, 2000),
        "eeg_values": (1, 128, 512),
        "point_values": (1, 8192, 3),
    }
    assert all(v.dtype == torch.float32 for k, v in batch.items() if k not in ("input_ids", "attention_mask"))
    only_text = processor(text="a dog", return_attention_mask=False)
    assert list(only_text) == ["input_ids"]
    as_numpy = processor(imu=[np.zeros((6, 10))], return_tensors="np")
    assert isinstance(as_numpy["imu_values"], np.ndarray) and as_numpy["imu_values"].shape == (1, 6, 2000)


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    custom = CodeBindProcessor(
        image_processor=CodeBindImageProcessor(video_clips=3),
        feature_extractor=CodeBindFeatureExtractor(clips_per_sample=2),
        sensor_processor=CodeBindSensorFeatureExtractor(num_points=1024, seed=7),
    )
    custom.save_pretrained(tmp_path / "proc")
    files = sorted(os.listdir(tmp_path / "proc"))
    assert files == ["merges.txt", "processor_config.json", "tokenizer_config.json", "vocab.json"]
    assert sorted(os.listdir(tmp_path)) == ["proc"]  # the staging folder is gone
    config = json.load(open(tmp_path / "proc" / "processor_config.json"))
    assert config["processor_class"] == "CodeBindProcessor" and config["sensor_processor"]["seed"] == 7
    again = CodeBindProcessor.from_pretrained(tmp_path / "proc")
    assert isinstance(again.tokenizer, CodeBindTokenizer) and again.image_processor.video_clips == 3
    inputs = _all_inputs()
    a, b = custom(**inputs), again(**inputs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (
        a["pixel_values_videos"].shape[1] == 9
        and a["audio_values"].shape[1] == 2
        and a["point_values"].shape[1] == 1024
    )
    # saving again over an existing folder replaces the files; overrides at load time are applied
    custom.save_pretrained(tmp_path / "proc")
    seeded = CodeBindProcessor.from_pretrained(tmp_path / "proc", sensor_processor={"seed": 1})
    assert seeded.sensor_processor.seed == 1 and seeded.sensor_processor.num_points == 8192


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="processor_config.json"):
        CodeBindProcessor.from_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "CodeBindProcessor"}))
    with pytest.raises(ValueError, match="lacks the"):
        CodeBindProcessor.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="sensor_processor must be"):
        CodeBindProcessor(sensor_processor=object())
    with pytest.raises(TypeError, match="tokenizer"):
        CodeBindProcessor(tokenizer=object())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "no inputs given"),
        ({"text": ["x"], "sampling_rate": 16000}, ValueError, "without audio"),
        ({"text": [1, 2]}, TypeError, "list of strings"),
        ({"text": []}, TypeError, "non-empty list of strings"),
        ({"audio": [np.zeros(1000)]}, ValueError, "audio item 0: sampling_rate is required"),
        ({"audio": [np.zeros(1000)], "sampling_rate": 16000.5}, TypeError, "must be an int"),
        ({"audio": [np.zeros((1000, 2))], "sampling_rate": 16000}, ValueError, "channels"),
        ({"images": [os.path.join(PRE, "README.json")]}, ValueError, "image 0: .*not a readable image"),
        ({"imu": [np.zeros((3, 100))]}, ValueError, r"\(6, time\)"),
        ({"text": "x", "return_tensors": "tf"}, ValueError, "'pt' or 'np'"),
    ],
)
def test_bad_inputs_raise_clear_errors(processor, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor(**kwargs)


def test_processor_output_feeds_the_converted_model(processor):
    from codebind_hf.convert.imagebind import convert_imagebind_checkpoint

    tiny = os.path.join(HERE, "fixtures", "imagebind_tiny")
    model = convert_imagebind_checkpoint(os.path.join(tiny, "imagebind_tiny.pth"), os.path.join(tiny, "config.json"))
    model.eval()
    texts = json.load(open(os.path.join(tiny, "config.json")))["texts"]
    batch = processor(text=texts, images=_files("image")[:2], audio=_files("audio")[:2], imu=[np.zeros((6, 2000))] * 2)
    with torch.no_grad():
        out = model(**batch)
    assert {m: tuple(e.shape) for m, e in out.shared_embeds.items()} == {
        m: (2, 32) for m in ("text", "vision", "audio", "imu")
    }
    # the tokenizer reproduces the reference ids of this fixture, so the text embeddings are the reference ones
    reference = load_file(os.path.join(tiny, "io.safetensors"))["output.text"]
    assert torch.allclose(out.shared_embeds["text"] * (reference.norm(dim=-1, keepdim=True)), reference, atol=1e-4)
