"""Image processor: ImageBind image parity, video clips, depth -> disparity, thermal, tactile, errors."""

import json
import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from codebind_hf.image_processing_codebind import CLIP_MEAN, CLIP_STD, CodeBindImageProcessor, resize_and_crop

PRE = os.path.join(os.path.dirname(__file__), "fixtures", "imagebind_preprocessing")
META = json.load(open(os.path.join(PRE, "README.json")))
IMAGES = [os.path.join(PRE, name) for name in META["image_files"]]
MEAN, STD = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)


@pytest.fixture(scope="module")
def processor():
    return CodeBindImageProcessor()


def test_images_match_reference(processor):
    expected = load_file(os.path.join(PRE, "expected.safetensors"))["vision"]
    out = processor(images=IMAGES)["pixel_values"]
    diff = (out - expected).abs()
    assert out.shape == expected.shape == (3, 3, 224, 224)
    assert diff.max() <= 1e-2 and diff.mean() <= 1e-3  # measured: exactly 0 (PIL is what torchvision calls)


def test_image_input_forms_agree(processor):
    pil = Image.open(IMAGES[1]).convert("RGB")
    array = np.array(pil)
    forms = [IMAGES[1], pil, array, array.astype(np.float64) / 255, torch.from_numpy(array).permute(2, 0, 1)]
    outs = processor.preprocess(forms)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    gray = processor.preprocess([np.full((50, 70), 128, np.uint8)])[0]
    assert torch.allclose(gray, ((128 / 255 - MEAN) / STD)[:, None, None].expand(3, 224, 224), atol=1e-6)


@pytest.mark.parametrize("size, resized", [((640, 360), (398, 224)), ((360, 640), (224, 398)), ((100, 50), (448, 224))])
def test_resize_short_side_then_centre_crop(size, resized):
    image = Image.new("RGB", size)
    assert image.resize(resized).size == resized  # the torchvision size rule: long side int(224 * long / short)
    assert resize_and_crop(image).size == (224, 224)


def test_video_clip_frame_indices_follow_the_clip_sampler(processor):
    # 45 frames at 10 fps = 4.5 s: clips start every 2.5 / 4 s, keep frames [ceil(10 t), ceil(10 (t + 2))), first + last
    assert processor._clip_frame_indices(45, 10.0) == [[0, 19], [7, 26], [13, 32], [19, 38], [25, 44]]
    # shorter than one clip: every clip is the whole video
    assert processor._clip_frame_indices(10, 10.0) == [[0, 9]] * 5


def test_video_values_frames_and_crops(processor):
    # frame t is uniform with value t in channel 0; columns carry a ramp in channel 1 (for the crop positions)
    frames = np.zeros((45, 48, 64, 3), np.uint8)
    frames[..., 0] = np.arange(45)[:, None, None]
    frames[..., 1] = np.arange(64)[None, None, :] * 4
    out = processor(videos=[frames], video_fps=10)["pixel_values_videos"]
    assert out.shape == (1, 15, 3, 2, 224, 224)
    picked = out[0, :, 0, :, 100, 100] * STD[0] + MEAN[0]  # (clip x crop, frame)
    expected = torch.tensor([[0, 19], [7, 26], [13, 32], [19, 38], [25, 44]]).repeat_interleave(3, 0) / 255
    assert torch.allclose(picked, expected, atol=1e-6)
    # the 3 crops of a landscape video are left / centre / right of the 224 x 298 frame (offsets 0, 37, 74)
    ramp = torch.from_numpy(frames[0, ..., 1]).float().div(255)[None, None]
    scaled = (F.interpolate(ramp, size=(224, 298), mode="bilinear", align_corners=False)[0, 0] - MEAN[1]) / STD[1]
    for crop, left in enumerate((0, 37, 74)):
        assert torch.allclose(out[0, crop, 1, 0], scaled[:, left : left + 224], atol=1e-6)


def test_video_file_equals_decoded_frames(processor, tmp_path):
    av = pytest.importorskip("av")
    path = str(tmp_path / "clip.mp4")
    rng = np.random.default_rng(0)
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(40):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(path) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    from_file = processor.preprocess_videos([path])
    assert torch.equal(from_file, processor.preprocess_videos([decoded], video_fps=12))
    with pytest.raises(ValueError, match="runs at 12.0 fps"):
        processor.preprocess_videos([path], video_fps=30)
    with pytest.raises(ValueError, match="not a readable video"):
        processor.preprocess_videos([os.path.join(PRE, "README.json")])
    with pytest.raises(ValueError, match="no video stream"):
        processor.preprocess_videos([os.path.join(PRE, "car_audio.wav")])


def test_video_files_without_pyav_raise_a_clear_error(processor, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match="pip install av"):
        processor.preprocess_videos(["clip.mp4"])


def _disparity_value(processor, depth_m):
    depth_m = min(max(depth_m, 0.01), 50.0)
    disparity = min(max(0.075 * 518.857901 / depth_m, 0.01), 75.0) / 75.0
    return (disparity - 0.23207855) / 0.11506188


def test_depth_to_normalised_disparity(processor, tmp_path):
    maps = [np.full((60, 80), 2.0), np.zeros((30, 20)), np.full((40, 40), 80.0)]
    out = processor(depth=maps)["depth_values"]
    assert out.shape == (3, 1, 224, 224)
    for value, depth_m in zip(
        out, (2.0, 0.0, 80.0), strict=True
    ):  # 2 m; missing (0) -> max disparity; beyond 50 m -> 50 m
        assert torch.allclose(value, torch.full_like(value, _disparity_value(processor, depth_m)), atol=1e-5)
    # a ramp: nearer is larger disparity, and the layouts (1, H, W) / (H, W, 1) are the same map
    ramp = np.linspace(1.0, 4.0, 80)[None].repeat(60, 0)
    a, b, c = processor.preprocess_depth([ramp, ramp[None], ramp[..., None]])
    assert torch.equal(a, b) and torch.equal(a, c) and a[0, 112, 0] > a[0, 112, -1]
    # disparity input skips the conversion
    disp = processor.preprocess_depth([np.full((20, 20), 30.0)], input_type="disparity")
    assert torch.allclose(disp, torch.full_like(disp, (30 / 75 - 0.23207855) / 0.11506188), atol=1e-5)
    # a 16-bit PNG holds depth * 8000 (the CodeBind / SUN RGB-D export)
    Image.fromarray(np.full((60, 80), 16000, np.uint16)).save(tmp_path / "d.png")
    assert torch.allclose(processor.preprocess_depth([str(tmp_path / "d.png")]), out[:1], atol=1e-6)


def test_thermal_and_tactile(processor):
    gray = np.full((60, 80), 128, np.uint8)
    thermal = processor(thermal=[gray, Image.fromarray(gray).convert("RGB")])["thermal_values"]
    assert thermal.shape == (2, 1, 224, 224)
    assert torch.allclose(thermal, torch.full_like(thermal, (128 / 255 - 0.44531357) / 0.26924619), atol=1e-5)
    tactile = processor(tactile=IMAGES[:1], images=IMAGES[:1])
    assert torch.equal(tactile["tactile_values"], tactile["pixel_values"])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"images": [os.path.join(PRE, "README.json")]}, ValueError, "not a readable image"),
        ({"images": [np.zeros((4, 5, 6, 7))]}, ValueError, r"\(H, W\), \(H, W, C\)"),
        ({"images": [np.full((8, 8, 3), 2.0)]}, ValueError, r"float in \[0, 1\]"),
        ({"images": [np.full((8, 8, 3), np.nan)]}, ValueError, "NaN"),
        ({"images": []}, ValueError, "images is empty"),
        ({"videos": [np.zeros((4, 8, 8, 3), np.uint8)]}, ValueError, "video_fps is required"),
        ({"videos": [np.zeros((4, 8, 8), np.uint8)], "video_fps": 5}, ValueError, r"\(T, H, W, 3\)"),
        ({"videos": [np.zeros((4, 8, 8, 3))], "video_fps": 5}, TypeError, "uint8"),
        ({"videos": [np.zeros((4, 8, 8, 3), np.uint8)], "video_fps": -1}, ValueError, "positive number"),
        ({"video_fps": 30}, ValueError, "without videos"),
        ({"depth": [np.full((8, 8), -1.0)]}, ValueError, "non-negative"),
        ({"depth": [np.full((8, 8), np.nan)]}, ValueError, "finite"),
        ({"depth": [np.zeros((8, 8, 3))]}, ValueError, r"\(H, W\)"),
        ({"depth": [np.ones((8, 8))], "depth_input_type": "meters"}, ValueError, "'depth' or 'disparity'"),
        ({"depth": [os.path.join(PRE, "README.json")]}, ValueError, "not a readable depth image"),
        ({"thermal": [os.path.join(PRE, "README.json")]}, ValueError, "thermal image 0"),
    ],
)
def test_bad_inputs_raise_clear_errors(processor, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor(**kwargs)


def test_settings_round_trip_and_validation(tmp_path):
    custom = CodeBindImageProcessor(
        size=64, video_clips=2, video_spatial_crops=1, depth_focal_length=500.0, default_video_fps=10
    )
    custom.save_pretrained(tmp_path)
    again = CodeBindImageProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == custom.to_dict()
    frames = np.zeros((30, 40, 50, 3), np.uint8)
    videos = again(videos=[frames])["pixel_values_videos"]  # default_video_fps applies
    assert videos.shape == (1, 2, 3, 2, 64, 64)
    assert torch.equal(videos, again(videos=[frames], video_fps=10)["pixel_values_videos"])
    assert again.preprocess_depth([np.full((8, 8), 2.0)])[0, 0, 0, 0].item() == pytest.approx(
        ((0.075 * 500 / 2) / 75 - 0.23207855) / 0.11506188, abs=1e-5
    )
    with pytest.raises(ValueError, match="video_spatial_crops"):
        CodeBindImageProcessor(video_spatial_crops=2)
    with pytest.raises(ValueError, match="resample"):
        CodeBindImageProcessor(resample="cubic")
    assert math.isclose(
        CodeBindImageProcessor().depth_baseline * CodeBindImageProcessor().depth_focal_length, 38.914342575
    )
