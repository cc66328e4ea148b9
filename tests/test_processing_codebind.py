"""CodeBindProcessor as transformers calls it: the keyword groups of `ProcessorMixin.__call__`, components that load
through their own Auto classes, and `from_pretrained` keywords that reach the components."""

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer

from codebind_hf import CodeBindFeatureExtractor, CodeBindProcessor, CodeBindTokenizer
from codebind_hf.image_processing_codebind import CodeBindImageProcessor

DEPTH = np.full((20, 24), 2.0)
AUDIO = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)


@pytest.fixture(scope="module")
def processor():
    return CodeBindProcessor(image_processor=CodeBindImageProcessor(size=32))


def test_keyword_groups_and_text_settings(processor):
    plain = processor(text=["a dog", "a cat on a mat"], depth=[DEPTH], audio=[AUDIO], sampling_rate=16000)
    grouped = processor(text=["a dog", "a cat on a mat"], depth=[DEPTH], audio=[AUDIO],
                        text_kwargs={"padding": "max_length"}, images_kwargs={"depth_input_type": "depth"},
                        audio_kwargs={"sampling_rate": 16000}, common_kwargs={"return_tensors": "pt"})
    assert set(plain) == set(grouped) == {"input_ids", "attention_mask", "depth_values", "audio_values"}
    assert all(torch.equal(plain[k], grouped[k]) for k in plain)
    short = processor(text=["a dog", "a cat on a mat"], padding="longest", max_length=10)
    assert short["input_ids"].shape[0] == 2 and short["input_ids"].shape[1] <= 10
    assert short["attention_mask"][0].sum() < short["attention_mask"][1].sum()  # shorter text, more padding
    assert processor(text=["a dog"], max_length=5, padding="max_length")["input_ids"].shape == (1, 5)
    as_numpy = processor(text=["a dog"], common_kwargs={"return_tensors": "np"})
    assert isinstance(as_numpy["input_ids"], np.ndarray)
    with pytest.raises(ValueError, match="do_sample_frames=False"):
        processor(text=["a dog"], do_sample_frames=False)
    with pytest.raises(TypeError, match="audio_kwargs takes sampling_rate"):
        processor(audio=[AUDIO], audio_kwargs={"sampling_rate": 16000, "n_fft": 400})


def test_components_load_through_auto_classes_and_from_pretrained_kwargs_reach_them(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path), CodeBindTokenizer)
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), CodeBindFeatureExtractor)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), CodeBindProcessor)
    loaded = CodeBindProcessor.from_pretrained(tmp_path)
    assert loaded.image_processor.size == 32
    changed = CodeBindProcessor.from_pretrained(tmp_path, size=48, clips_per_sample=2, model_max_length=20)
    assert changed.image_processor.size == 48 and changed.feature_extractor.clips_per_sample == 2
    assert changed.tokenizer.model_max_length == 20
    assert changed(depth=[DEPTH])["depth_values"].shape == (1, 1, 48, 48)
    assert changed(text=["a dog"])["input_ids"].shape == (1, 20)
