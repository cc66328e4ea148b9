"""CodeBindProcessor as transformers calls it, beyond the common suite (tests/test_processing_codebind.py): the keyword
groups with ImageBind's defaults, options reaching their component or refused, the components through their own Auto
classes, `from_pretrained` keywords reaching the components, and a folder saved in the earlier format loading to the
very tensors it gave."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoProcessor, AutoTokenizer

from codebind_hf import CodeBindFeatureExtractor, CodeBindProcessor, CodeBindTokenizer
from codebind_hf.image_processing_codebind import CodeBindImageProcessor
from codebind_hf.tokenization_codebind import PACKAGED_BPE_DIR

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SAVED = os.path.join(FIXTURES, "processor_saved_c6f5d33")
DEPTH = np.full((20, 24), 2.0)
AUDIO = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- keyword groups
@pytest.fixture(scope="module")
def processor():
    return CodeBindProcessor(image_processor=CodeBindImageProcessor(size=32))


def test_keyword_groups_flat_or_grouped_and_imagebind_text_defaults(processor):
    texts = ["a dog", "a cat on a mat"]
    plain = processor(text=texts, depth=[DEPTH], audio=[AUDIO], sampling_rate=16000)
    grouped = processor(text=texts, depth=[DEPTH], audio=[AUDIO],
                        text_kwargs={"padding": "max_length"}, images_kwargs={"depth_input_type": "depth"},
                        audio_kwargs={"sampling_rate": 16000}, common_kwargs={"return_tensors": "pt"})
    assert set(plain) == set(grouped) == {"input_ids", "attention_mask", "depth_values", "audio_values"}
    assert all(torch.equal(plain[k], grouped[k]) for k in plain)
    # the default text is ImageBind's: start, ids, end, zero padding to the 77-token context
    ids = processor.tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    assert torch.equal(plain["input_ids"], ids["input_ids"]) and plain["input_ids"].shape == (2, 77)
    short = processor(text=texts, padding="longest", max_length=10)
    assert short["input_ids"].shape == (2, 7) and short["attention_mask"].sum(1).tolist() == [4, 7]  # start, 2 / 5 words, end
    assert processor(text=["a dog"], max_length=5, padding="max_length")["input_ids"].shape == (1, 5)
    as_numpy = processor(text=["a dog"], depth=[DEPTH], common_kwargs={"return_tensors": "np"})
    assert all(isinstance(v, np.ndarray) for v in as_numpy.values())
    only_text_numpy = processor(text=["a dog"], depth=[DEPTH], text_kwargs={"return_tensors": "np"})
    assert isinstance(only_text_numpy["input_ids"], np.ndarray) and torch.is_tensor(only_text_numpy["depth_values"])


def test_options_reach_their_component_and_bad_ones_are_refused(processor):
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    flat = processor(images=[image], do_normalize=False, size=16)["pixel_values"]
    assert torch.equal(flat, processor.image_processor(images=[image], do_normalize=False, size=16)["pixel_values"])
    assert flat.shape == (1, 3, 16, 16) and 0 <= flat.min() and flat.max() <= 1  # rescaled, not normalised
    frames = np.zeros((4, 24, 32, 3), np.uint8)  # already sampled: 2 clips of 2 frames, no frame rate needed
    assert processor(videos=[frames], do_sample_frames=False)["pixel_values_videos"].shape == (1, 6, 3, 2, 32, 32)
    with pytest.raises(ValueError, match="passed two times"):
        processor(images=[image], size=16, images_kwargs={"size": 16})
    with pytest.raises(TypeError, match=r"audio_kwargs takes \['return_tensors', 'sampling_rate'\]; got unknown"):
        processor(audio=[AUDIO], audio_kwargs={"sampling_rate": 16000, "n_fft": 400})
    with pytest.raises(TypeError, match=r"unknown options \['sampling_rte'\]"):
        processor(audio=[AUDIO], sampling_rte=16000)
    with pytest.raises(ValueError, match="'pt' or 'np'"):
        processor(text="x", common_kwargs={"return_tensors": "tf"})
    with pytest.raises(ValueError, match="video_fps was given without videos"):
        processor(text="x", video_fps=30)
    with pytest.raises(ValueError, match="no multimodal placeholder tokens"):
        processor(text="x", return_mm_token_type_ids=True)


# ---------------------------------------------------------------------------------------------------- save / load
def test_components_load_through_auto_classes_and_from_pretrained_kwargs_reach_them(processor, tmp_path):
    written = processor.save_pretrained(tmp_path)
    assert os.path.basename(written[0]) == "processor_config.json"
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path), CodeBindTokenizer)
    assert AutoImageProcessor.from_pretrained(tmp_path).to_dict() == processor.image_processor.to_dict()
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), CodeBindFeatureExtractor)
    assert AutoProcessor.from_pretrained(tmp_path).to_dict() == processor.to_dict()
    changed = CodeBindProcessor.from_pretrained(tmp_path, size=48, do_normalize=False, clips_per_sample=2,
                                                model_max_length=20, cls_token="(CLS)")
    assert (changed.image_processor.size, changed.image_processor.do_normalize) == (48, False)
    assert changed.feature_extractor.clips_per_sample == 2 and changed.tokenizer.cls_token == "(CLS)"
    assert changed(depth=[DEPTH])["depth_values"].shape == (1, 1, 48, 48)
    assert changed(text=["a dog"])["input_ids"].shape == (1, 20)
    with pytest.raises(TypeError, match=r"unknown keywords \['sise'\]"):
        CodeBindProcessor.from_pretrained(tmp_path, sise=48)


def _saved_format_inputs() -> dict:
    """The inputs the fixture's expected tensors were computed from (tests/fixtures/processor_saved_c6f5d33)."""
    rng = np.random.default_rng(0)
    return dict(
        text=["a dog barking", "a car engine starting in the cold morning air, loudly and for a long time"],
        images=[rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)],
        videos=[rng.integers(0, 256, (24, 36, 48, 3), dtype=np.uint8)],
        audio=[rng.standard_normal(12000).astype(np.float32) * 0.1], sampling_rate=8000,
        depth=[rng.uniform(0.5, 5, (30, 40))], thermal=[rng.integers(0, 256, (30, 40), dtype=np.uint8)],
        tactile=[rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)],
        imu=[rng.normal(size=(6, 150))], point_clouds=[rng.normal(size=(100, 3))],
    )


def test_folder_saved_in_the_earlier_format_loads_to_the_same_tensors(tmp_path):
    folder = tmp_path / "saved"
    shutil.copytree(SAVED, folder)
    omitted = json.load(open(os.path.join(SAVED, "README.json")))["omitted_files_sha256"]
    for name, digest in omitted.items():  # the packaged BPE files are the ones that code wrote, byte for byte
        assert hashlib.sha256((PACKAGED_BPE_DIR / name).read_bytes()).hexdigest() == digest
        shutil.copy(PACKAGED_BPE_DIR / name, folder / name)
    expected = load_file(os.path.join(SAVED, "expected.safetensors"))
    for loaded in (CodeBindProcessor.from_pretrained(folder), AutoProcessor.from_pretrained(folder)):
        batch = loaded(**_saved_format_inputs())
        assert set(batch) == set(expected)
        for key in expected:
            assert torch.equal(batch[key], expected[key]), key
    assert AutoImageProcessor.from_pretrained(folder).to_dict() == loaded.image_processor.to_dict()
    assert AutoFeatureExtractor.from_pretrained(folder).to_dict() == loaded.feature_extractor.to_dict()
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 16
