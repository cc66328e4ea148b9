"""The components' transformers-style options beyond ImageBind's defaults: image settings per call (do_resize,
do_center_crop / crop_size, do_rescale / rescale_factor, do_normalize), frames already sampled
(do_sample_frames=False), nested image batches, and the audio feature extractor's default_sampling_rate."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from codebind_hf.feature_extraction_codebind import CodeBindFeatureExtractor
from codebind_hf.image_processing_codebind import CLIP_MEAN, CLIP_STD, CodeBindImageProcessor, resize_and_crop

PRE = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_preprocessing")
RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # H 40, W 50
MEAN, STD = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)


def _pixels(pil: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pil).astype(np.float32)).permute(2, 0, 1)


def test_rescaling_by_one_255th_is_imagebinds_division_for_every_pixel_value():
    values = np.arange(256, dtype=np.uint8)
    assert np.array_equal(CodeBindImageProcessor()._rescale(values), values.astype(np.float32) / 255.0)
    assert torch.equal(CodeBindImageProcessor()._rescale(torch.from_numpy(values)), torch.arange(256).float() / 255.0)


def test_rescale_and_normalise_options_on_images():
    processor = CodeBindImageProcessor(size=32)
    resized = _pixels(resize_and_crop(Image.fromarray(IMAGE), 32))
    raw = processor(images=[IMAGE], do_rescale=False, do_normalize=False)["pixel_values"][0]
    assert torch.equal(raw, resized)  # 0..255, as PIL resized them
    negated = processor(images=[IMAGE], rescale_factor=-1.0, do_normalize=False)["pixel_values"][0]
    assert torch.equal(negated, -resized)
    default = processor(images=[IMAGE])["pixel_values"][0]
    assert torch.allclose(default, (resized / 255 - MEAN[:, None, None]) / STD[:, None, None], atol=1e-6)


def test_a_setting_given_to_a_call_equals_the_processor_built_with_it():
    processor = CodeBindImageProcessor()
    inputs = dict(images=[IMAGE], depth=[np.full((30, 20), 3.0)], thermal=[IMAGE[..., 0]], tactile=[IMAGE])
    for settings in ({"size": 48, "rescale_factor": -1.0}, {"do_normalize": False, "depth_focal_length": 500.0},
                     {"crop_size": 24, "resample": "bilinear"}):
        per_call = processor(**inputs, **settings)
        built = CodeBindImageProcessor(**settings)(**inputs)
        assert per_call.keys() == built.keys() and all(torch.equal(per_call[k], built[k]) for k in built)
    assert processor.to_dict() == CodeBindImageProcessor().to_dict()  # a call changes nothing on the processor
    with pytest.raises(TypeError, match=r"unknown options \['do_flip'\]"):
        processor(images=[IMAGE], do_flip=True)
    with pytest.raises(ValueError, match="crop_size must be a positive int"):
        processor(images=[IMAGE], crop_size=-3)


def test_resize_and_crop_options_and_their_shapes():
    pil = Image.fromarray(IMAGE)
    # resize the short side to 40 (the image already is 40 x 50), centre crop 32: offsets round(9.0), round(4.0)
    cropped = CodeBindImageProcessor(size=40, crop_size=32, do_rescale=False, do_normalize=False)(images=[IMAGE])
    assert torch.equal(cropped["pixel_values"][0], _pixels(pil.crop((9, 4, 41, 36))))
    uncropped = CodeBindImageProcessor(size=20, do_center_crop=False)(images=[IMAGE])["pixel_values"]
    assert uncropped.shape == (1, 3, 20, 25)  # short side 20, long side int(20 * 50 / 40)
    crop_only = CodeBindImageProcessor(do_resize=False, crop_size=30, do_rescale=False, do_normalize=False)
    assert torch.equal(crop_only(images=[IMAGE])["pixel_values"][0], _pixels(pil.crop((10, 5, 40, 35))))
    with pytest.raises(ValueError, match="smaller than the 224 x 224 crop"):
        CodeBindImageProcessor(do_resize=False)(images=[IMAGE])
    with pytest.raises(ValueError, match="different shapes"):
        CodeBindImageProcessor(size=20, do_center_crop=False)(images=[IMAGE, IMAGE[:, :40]])
    depth = CodeBindImageProcessor(size=16, do_center_crop=False)(depth=[np.full((30, 20), 3.0)])["depth_values"]
    assert depth.shape == (1, 1, 24, 16)


def test_normalise_off_for_depth_and_thermal_gives_the_plain_maps():
    processor = CodeBindImageProcessor(size=16, do_normalize=False)
    depth = processor(depth=[np.full((30, 20), 2.0)])["depth_values"]
    assert torch.allclose(depth, torch.full_like(depth, 0.075 * 518.857901 / 2.0 / 75.0), atol=1e-6)  # disparity / 75
    thermal = processor(thermal=[np.full((30, 20), 51, np.uint8)])["thermal_values"]
    assert torch.allclose(thermal, torch.full_like(thermal, 51 / 255), atol=1e-6)


def test_frames_already_sampled_form_consecutive_clips():
    frames = np.zeros((4, 24, 32, 3), np.uint8)
    frames[..., 0] = np.arange(4)[:, None, None] * 10  # frame t has value 10 t in channel 0
    processor = CodeBindImageProcessor(size=24)
    out = processor(videos=[frames], do_sample_frames=False, do_normalize=False)["pixel_values_videos"]
    assert out.shape == (1, 2 * 3, 3, 2, 24, 24)  # 2 clips of 2 frames x 3 spatial crops
    assert torch.allclose(out[0, :, 0, :, 12, 12] * 255, torch.tensor([[0.0, 10], [0, 10], [0, 10],
                                                                       [20, 30], [20, 30], [20, 30]]), atol=1e-4)
    channels_first = processor(videos=[frames.transpose(0, 3, 1, 2)], do_sample_frames=False)["pixel_values_videos"]
    assert torch.equal(channels_first, processor(videos=[frames], do_sample_frames=False)["pixel_values_videos"])
    single_view = processor(videos=[frames], do_sample_frames=False, do_center_crop=False)["pixel_values_videos"]
    assert single_view.shape == (1, 2, 3, 2, 24, 32)
    with pytest.raises(ValueError, match="multiple of video_frames_per_clip=2"):
        processor(videos=[frames[:3]], do_sample_frames=False)
    with pytest.raises(ValueError, match="video_fps is not used"):
        processor(videos=[frames], do_sample_frames=False, video_fps=10)
    with pytest.raises(ValueError, match="video files are always sampled"):
        processor(videos=["clip.mp4"], do_sample_frames=False)


def test_nested_image_batches_are_flattened_in_order():
    processor = CodeBindImageProcessor(size=16)
    other = IMAGE[::-1].copy()
    nested = processor(images=[[IMAGE], [], [other]])["pixel_values"]
    assert torch.equal(nested, processor(images=[IMAGE, other])["pixel_values"])
    assert CodeBindImageProcessor(resample=3).resample == "bicubic"  # PIL's filter codes are accepted


def test_new_settings_round_trip_and_older_files_get_the_defaults(tmp_path):
    custom = CodeBindImageProcessor(size=40, crop_size=32, do_normalize=False, rescale_factor=0.5)
    custom.save_pretrained(tmp_path)
    assert CodeBindImageProcessor.from_pretrained(tmp_path).to_dict() == custom.to_dict()
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    for name in ("do_resize", "do_center_crop", "crop_size", "do_rescale", "rescale_factor", "do_normalize"):
        config.pop(name, None)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    older = CodeBindImageProcessor.from_pretrained(tmp_path)
    assert (older.do_resize, older.do_center_crop, older.crop_size, older.do_rescale, older.do_normalize) == (
        True, True, None, True, True) and older.rescale_factor == 1 / 255


def test_default_sampling_rate_is_assumed_only_for_arrays_without_a_rate():
    wave = np.sin(np.linspace(0, 300, 12000)).astype(np.float32)
    assumed = CodeBindFeatureExtractor(default_sampling_rate=8000)
    explicit = CodeBindFeatureExtractor()([wave], sampling_rate=8000)["audio_values"]
    assert torch.equal(assumed([wave])["audio_values"], explicit)
    assert not torch.equal(assumed([wave], sampling_rate=16000)["audio_values"], explicit)  # a given rate wins
    path = os.path.join(PRE, "dog_audio.wav")  # files carry their own rate
    assert torch.equal(assumed([path])["audio_values"], CodeBindFeatureExtractor()([path])["audio_values"])
    with pytest.raises(ValueError, match="sampling_rate is required .* default_sampling_rate"):
        CodeBindFeatureExtractor()([wave])
    with pytest.raises(ValueError, match="implausible"):
        CodeBindFeatureExtractor(default_sampling_rate=16)
    with pytest.raises(ValueError, match="an int number of Hz"):
        CodeBindFeatureExtractor(default_sampling_rate=16000.0)
