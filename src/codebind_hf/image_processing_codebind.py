"""Image-like inputs for the ImageBind / CodeBind towers: RGB images, videos, depth, thermal and tactile images.

- Images and tactile images (ImageBind's ``load_and_transform_vision_data``): PIL bicubic resize of the short side to
  224 (long side ``int(224 * long / short)``), centre crop (offsets rounded), [0, 1], CLIP mean / std ->
  `(3, 224, 224)`. PIL is what torchvision itself calls on PIL images, so this matches the reference exactly.
- Videos (ImageBind's ``load_and_transform_video_data``): 5 clips of 2 s spread evenly over the video (the audio clip
  sampler); clip frames are those with index in ``[ceil(fps * start), ceil(fps * end))``; 2 of them are taken with
  pytorchvideo's ``UniformTemporalSubsample`` (``linspace(0, n - 1, 2)`` truncated: the first and the last); [0, 1];
  short side scaled to 224 with torch bilinear interpolation (long side floored, no antialiasing, pytorchvideo's
  ``ShortSideScale``); CLIP mean / std; 3 spatial crops per clip (left / centre / right, or top / centre / bottom;
  centre offsets rounded up) -> `(5 * 3, 3, 2, 224, 224)` per video, clip-major. Frame arrays need their frame rate
  (``video_fps`` per call, or the processor's ``default_video_fps``); files are decoded with PyAV
  (``pip install av``) in place of ImageBind's decord.
- Depth (official CodeBind NYU-v2 / SUN RGB-D evaluation transform): depth in metres is clipped to ``[0.01, 50]``
  and converted to disparity ``baseline * focal_length / depth`` with the Kinect v1 camera of NYU-v2 (baseline
  0.075 m, focal length 518.857901 px); disparity is clamped to ``[0.01, 75]`` and divided by 75 (``DepthNorm``);
  bilinear antialiased resize of the short side to 224, centre crop, normalised with mean 0.23207855 and std
  0.11506188 (CodeBind's NYU statistics) -> `(1, 224, 224)`. Missing depth (0) therefore becomes the maximum
  disparity, as in CodeBind. Arrays are metres; 16-bit PNG files are divided by ``depth_file_scale`` (8000, the
  SUN RGB-D / CodeBind NYU export convention). ``input_type="disparity"`` skips the conversion.
- Thermal (official CodeBind LLVIP / FLIR transform): grayscale, [0, 1], bilinear antialiased resize + centre crop,
  normalised with mean 0.44531357 and std 0.26924619 -> `(1, 224, 224)`.

transformers' standard image options are settings (defaults: the above exactly); any setting can be given per call:
``do_resize`` (short side to ``size``), ``do_center_crop`` (``crop_size``, default ``size``; for videos the spatial
crops), ``do_rescale`` / ``rescale_factor`` (8-bit pixels of images, videos, tactile, thermal; depth is in metres),
``do_normalize`` (CLIP mean / std for RGB, the depth and thermal statistics for those), ``resample`` (images, tactile:
PIL resizes the 8-bit pixels as in ImageBind, so ``do_rescale=False`` keeps the 0..255 scale). Frames already sampled
(``do_sample_frames=False``) form consecutive clips of ``video_frames_per_clip`` frames.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .feature_extraction_codebind import clip_start_times, init_parameters, with_context

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PIL_FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
}
_Number = int | float


class _ImageSettings(TypedDict, total=False):
    """The settings of [`CodeBindImageProcessor`]: constructor, ``from_pretrained`` and per-call options."""

    do_resize: bool
    size: int
    resample: str | int
    do_center_crop: bool
    crop_size: int | None
    do_rescale: bool
    rescale_factor: _Number
    do_normalize: bool
    image_mean: list[_Number] | tuple[_Number, ...]
    image_std: list[_Number] | tuple[_Number, ...]
    video_clip_duration: _Number
    video_clips: int
    video_frames_per_clip: int
    video_spatial_crops: int
    default_video_fps: _Number | None
    depth_baseline: _Number
    depth_focal_length: _Number
    depth_min: _Number
    depth_max: _Number
    disparity_min: _Number
    disparity_max: _Number
    depth_mean: _Number
    depth_std: _Number
    depth_file_scale: _Number
    thermal_mean: _Number
    thermal_std: _Number
    return_tensors: str | None


class CodeBindImagesKwargs(_ImageSettings, total=False):
    """Per-call options for images, depth, thermal and tactile images (``images_kwargs`` of [`CodeBindProcessor`])."""

    depth_input_type: str


class CodeBindVideosKwargs(_ImageSettings, total=False):
    """Per-call options for videos (``videos_kwargs`` of [`CodeBindProcessor`])."""

    video_fps: Any  # frame rate(s) of frame arrays: `preprocess_videos` checks them, naming the video
    do_sample_frames: bool


# ---------------------------------------------------------------------------------------------------- helpers
def load_image(image, mode: str = "RGB") -> Image.Image:
    """A PIL image in ``mode`` from a path, a PIL image, or an array / tensor.

    Arrays are `(H, W)`, `(H, W, C)` or `(C, H, W)` with C in 1, 3, 4; uint8 in [0, 255] or float in [0, 1].
    """
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as handle:
                return handle.convert(mode)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{image}: not a readable image file ({err})") from err
    if isinstance(image, Image.Image):
        return image.convert(mode)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # channels first -> last
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)) or 0 in array.shape:
        raise ValueError(
            f"image arrays must be (H, W), (H, W, C) or (C, H, W) with C in 1/3/4; got shape {array.shape}"
        )
    if array.dtype != np.uint8:
        if array.dtype.kind not in "fiu":
            raise TypeError(f"image arrays must be uint8 or float, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError("image array contains NaN or inf")
        if array.dtype.kind != "f" or array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"non-uint8 image arrays must be float in [0, 1]; got {array.dtype} in [{array.min()}, {array.max()}]"
            )
        array = (array * 255).round().astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert(mode)


def _short_side_to(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)`` output `(height, width)`: short side ``size``, long side truncated."""
    short, long = sorted((width, height))
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


def _check_crop(height: int, width: int, crop: int) -> None:
    if min(height, width) < crop:
        raise ValueError(f"the image is {height} x {width} (height x width), smaller than the {crop} x {crop} crop; "
                         "keep do_resize=True or lower crop_size")


def resize_and_crop(image: Image.Image, size: int = 224, resample=Image.BICUBIC, crop: int | None = None,
                    do_resize: bool = True, do_center_crop: bool = True) -> Image.Image:
    """torchvision ``Resize(size)`` + ``CenterCrop(crop or size)`` on a PIL image (same output sizes and offsets)."""
    if do_resize:
        height, width = _short_side_to(image.height, image.width, size)
        image = image.resize((width, height), resample)
    if not do_center_crop:
        return image
    crop = size if crop is None else crop
    _check_crop(image.height, image.width, crop)
    left, top = int(round((image.width - crop) / 2.0)), int(round((image.height - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def resize_and_crop_tensor(x: torch.Tensor, size: int = 224, crop: int | None = None, do_resize: bool = True,
                           do_center_crop: bool = True) -> torch.Tensor:
    """torchvision ``Resize(size)`` (bilinear, antialiased) + ``CenterCrop(crop or size)`` on a float `(C, H, W)`."""
    if do_resize:
        new_hw = _short_side_to(*x.shape[-2:], size)
        x = F.interpolate(x[None], size=new_hw, mode="bilinear", align_corners=False, antialias=True)[0]
    if not do_center_crop:
        return x
    crop = size if crop is None else crop
    _check_crop(*x.shape[-2:], crop)
    top, left = int(round((x.shape[-2] - crop) / 2.0)), int(round((x.shape[-1] - crop) / 2.0))
    return x[:, top : top + crop, left : left + crop]


def _stack(tensors: list[torch.Tensor], what: str) -> torch.Tensor:
    shapes = sorted({tuple(t.shape) for t in tensors})
    if len(shapes) > 1:
        raise ValueError(f"{what} came out in different shapes {shapes}: without a resize and centre crop "
                         "(do_resize / do_center_crop) a batch needs inputs of one size")
    return torch.stack(tensors)


def _items(value, what: str) -> list:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    items = [x for item in items for x in (item if _is_item_list(item) else [item])]  # transformers' nested batches
    if not items:
        raise ValueError(f"{what} is empty; expected at least one item")
    missing = [i for i, item in enumerate(items) if item is None]
    if missing:
        raise ValueError(f"{what}[{missing[0]}] is None ({len(missing)} of {len(items)} items are); expected a file path, "
                         "PIL image, array or tensor for every item")
    return items


def _is_item_list(item) -> bool:
    return isinstance(item, (list, tuple)) and not any(isinstance(x, (list, tuple, int, float)) for x in item)


class _VideoFile:
    """Frame count, frame rate and selected RGB frames of a video file, decoded with PyAV."""

    def __init__(self, path: str | Path):
        try:
            import av
        except ImportError as err:
            raise ImportError(
                f"reading video files ({path}) needs PyAV: `pip install av` (the package's `video` extra); "
                "or pass uint8 frame arrays (T, H, W, 3) with video_fps"
            ) from err
        self.av, self.path = av, str(path)
        if not Path(path).is_file():
            raise FileNotFoundError(f"video file not found: {path}")
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise ValueError(f"{path}: no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else 0.0
                self.num_frames = stream.frames or sum(1 for _ in container.decode(stream))
        except av.error.FFmpegError as err:
            raise ValueError(f"{path}: not a readable video file ({err})") from err
        if self.fps <= 0 or self.num_frames <= 0:
            raise ValueError(f"{path}: could not determine frame rate / frame count (fps={self.fps}, "
                             f"frames={self.num_frames})")

    def frames(self, indices: set[int]) -> dict[int, np.ndarray]:
        found = {}
        with self.av.open(self.path) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index in indices:
                    found[index] = frame.to_ndarray(format="rgb24")
                if len(found) == len(indices):
                    break
        return found


# ---------------------------------------------------------------------------------------------------- processor
class CodeBindImageProcessor(BaseImageProcessor):
    """Images, videos, depth maps, thermal and tactile images -> tensors for the ImageBind / CodeBind towers.

    The settings are the reference ones (see the module docstring); all are saved with ``save_pretrained``, and any
    of them can be given to a call for that call only. A ``BaseImageProcessor`` (so ``AutoImageProcessor`` loads it)
    with its own pipeline: ``__call__`` gives the [`BatchFeature`]; ``preprocess`` and the ``preprocess_*`` methods
    give one modality's tensor.

    Example:

    ```python
    >>> import numpy as np
    >>> from codebind_hf.image_processing_codebind import CodeBindImageProcessor
    >>> processor = CodeBindImageProcessor()
    >>> rng = np.random.default_rng(0)
    >>> out = processor(images=[rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)], depth=[np.full((48, 64), 2.0)])
    >>> out["pixel_values"].shape, out["depth_values"].shape
    (torch.Size([1, 3, 224, 224]), torch.Size([1, 1, 224, 224]))
    >>> processor(images=[np.zeros((30, 40, 3), np.uint8)], size=32, do_normalize=False)["pixel_values"].shape
    torch.Size([1, 3, 32, 32])

    ```
    """

    model_input_names = ["pixel_values", "pixel_values_videos", "depth_values", "thermal_values", "tactile_values"]
    valid_kwargs = CodeBindImagesKwargs

    def __init__(
        self,
        size: int = 224,
        image_mean: list[float] = CLIP_MEAN,
        image_std: list[float] = CLIP_STD,
        resample: str = "bicubic",
        video_clip_duration: float = 2.0,
        video_clips: int = 5,
        video_frames_per_clip: int = 2,
        video_spatial_crops: int = 3,
        default_video_fps: float | None = None,
        depth_baseline: float = 0.075,
        depth_focal_length: float = 518.857901,
        depth_min: float = 0.01,
        depth_max: float = 50.0,
        disparity_min: float = 0.01,
        disparity_max: float = 75.0,
        depth_mean: float = 0.23207855,
        depth_std: float = 0.11506188,
        depth_file_scale: float = 8000.0,
        thermal_mean: float = 0.44531357,
        thermal_std: float = 0.26924619,
        do_resize: bool = True,
        do_center_crop: bool = True,
        crop_size: int | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        **kwargs,
    ):
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        for name, value in (("size", size), ("video_clips", video_clips),
                            ("video_frames_per_clip", video_frames_per_clip)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if crop_size is not None and (isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size <= 0):
            raise ValueError(f"crop_size must be a positive int or None (= size), got {crop_size!r}")
        for name, value in (("do_resize", do_resize), ("do_center_crop", do_center_crop),
                            ("do_rescale", do_rescale), ("do_normalize", do_normalize)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float)) or not (
            math.isfinite(rescale_factor) and rescale_factor != 0
        ):
            raise ValueError(f"rescale_factor must be a finite non-zero number, got {rescale_factor!r}")
        resample = {code: name for name, code in _PIL_FILTERS.items()}.get(resample, resample)  # PIL codes -> names
        if resample not in _PIL_FILTERS:
            raise ValueError(f"resample must be one of {sorted(_PIL_FILTERS)}, got {resample!r}")
        if video_spatial_crops not in (1, 3):
            raise ValueError(f"video_spatial_crops must be 1 (centre) or 3 (ImageBind), got {video_spatial_crops!r}")
        if default_video_fps is not None and (isinstance(default_video_fps, bool) or not default_video_fps > 0):
            raise ValueError(f"default_video_fps must be a positive number or None, got {default_video_fps!r}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"image_mean / image_std must be 3 values (std > 0), got {image_mean} / {image_std}")
        if not 0 < depth_min < depth_max or not 0 < disparity_min < disparity_max or depth_file_scale <= 0:
            raise ValueError("depth settings need 0 < depth_min < depth_max, 0 < disparity_min < disparity_max, "
                             "depth_file_scale > 0")
        if depth_std <= 0 or thermal_std <= 0 or video_clip_duration <= 0:
            raise ValueError("depth_std, thermal_std and video_clip_duration must be positive")
        self.size, self.image_mean, self.image_std, self.resample = size, list(image_mean), list(image_std), resample
        self.video_clip_duration, self.video_clips = float(video_clip_duration), video_clips
        self.video_frames_per_clip, self.video_spatial_crops = video_frames_per_clip, video_spatial_crops
        self.default_video_fps = default_video_fps
        self.depth_baseline, self.depth_focal_length = float(depth_baseline), float(depth_focal_length)
        self.depth_min, self.depth_max = float(depth_min), float(depth_max)
        self.disparity_min, self.disparity_max = float(disparity_min), float(disparity_max)
        self.depth_mean, self.depth_std = float(depth_mean), float(depth_std)
        self.depth_file_scale = float(depth_file_scale)
        self.thermal_mean, self.thermal_std = float(thermal_mean), float(thermal_std)
        self.do_resize, self.do_center_crop, self.crop_size = do_resize, do_center_crop, crop_size
        self.do_rescale, self.rescale_factor, self.do_normalize = do_rescale, float(rescale_factor), do_normalize

    def _with_settings(self, **settings) -> CodeBindImageProcessor:
        """This processor, or a copy with the given settings changed (``None`` = not given), validated as built."""
        names = init_parameters(type(self))
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown options {unknown}; expected the call options video_fps, "
                f"do_sample_frames, depth_input_type, return_tensors or settings {names}"
            )
        changed = {k: v for k, v in settings.items() if v is not None and v != getattr(self, k)}
        return type(self)(**{**{k: getattr(self, k) for k in names}, **changed}) if changed else self

    def _rescale(self, pixels) -> np.ndarray | torch.Tensor:
        """8-bit pixels -> float32 times ``rescale_factor`` (in float64 first: 1/255 then equals a float32 ``/ 255``
        exactly, ImageBind's ``ToTensor``)."""
        if isinstance(pixels, torch.Tensor):
            return pixels.double().mul(self.rescale_factor).float() if self.do_rescale else pixels.float()
        pixels = np.asarray(pixels)
        return (pixels.astype(np.float64) * self.rescale_factor).astype(np.float32) if self.do_rescale else (
            pixels.astype(np.float32))

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        return resize_and_crop_tensor(x, self.size, self.crop_size, self.do_resize, self.do_center_crop)

    def _normalise_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """`(3, ...)` -> CLIP-normalised (channel first), when ``do_normalize``."""
        if not self.do_normalize:
            return x
        shape = (3,) + (1,) * (x.ndim - 1)
        return (x - torch.tensor(self.image_mean).view(shape)) / torch.tensor(self.image_std).view(shape)

    # -------------------------------------------------------------------------------------------- images
    def preprocess(self, images) -> torch.Tensor:
        """Paths, PIL images or arrays -> `(batch, 3, size, size)`."""
        out = []
        for i, image in enumerate(_items(images, "images")):
            try:
                pil = resize_and_crop(load_image(image, "RGB"), self.size, _PIL_FILTERS[self.resample],
                                      self.crop_size, self.do_resize, self.do_center_crop)
            except (ValueError, TypeError) as err:
                raise with_context(err, f"image {i}") from err
            out.append(self._normalise_rgb(torch.from_numpy(self._rescale(pil)).permute(2, 0, 1)))
        return _stack(out, "images")

    def preprocess_tactile(self, images) -> torch.Tensor:
        """Tactile (GelSight-style RGB) images -> `(batch, 3, size, size)`, processed exactly like images."""
        return self.preprocess(images)

    # -------------------------------------------------------------------------------------------- videos
    def _clip_frame_indices(self, num_frames: int, fps: float) -> list[list[int]]:
        """Per clip, the indices of the frames it keeps (ImageBind's clip sampler + uniform temporal subsample)."""
        starts = clip_start_times(num_frames / fps, self.video_clip_duration, self.video_clips)
        clips = []
        for start in starts:
            first = math.ceil(fps * start)
            last = min(math.ceil(fps * (start + self.video_clip_duration)), num_frames)
            if last <= first:
                raise ValueError(f"no frame in the clip starting at {float(start):.3f} s "
                                 f"({num_frames} frames at {fps} fps)")
            picks = torch.linspace(0, last - first - 1, self.video_frames_per_clip).clamp(0, last - first - 1).long()
            clips.append([first + int(p) for p in picks])
        return clips

    def _video_clips(self, frames: np.ndarray) -> torch.Tensor:
        """`(clips, T, H, W, 3)` uint8 -> `(clips * crops, 3, T, crop, crop)` (one uncropped view without
        ``do_center_crop``)."""
        x = self._rescale(torch.from_numpy(np.ascontiguousarray(frames))).permute(0, 4, 1, 2, 3)  # (clips, C, T, H, W)
        clips, channels, steps, height, width = x.shape
        if self.do_resize:
            if width < height:
                new_hw = (int(math.floor(height / width * self.size)), self.size)
            else:
                new_hw = (self.size, int(math.floor(width / height * self.size)))
            x = F.interpolate(
                x.reshape(clips * channels, steps, height, width), size=new_hw, mode="bilinear", align_corners=False
            ).reshape(clips, channels, steps, *new_hw)
        x = self._normalise_rgb(x.transpose(0, 1)).transpose(0, 1)
        if not self.do_center_crop:
            return x
        height, width = x.shape[-2:]
        crop = self.size if self.crop_size is None else self.crop_size
        _check_crop(height, width, crop)
        out = []
        for clip in x:
            for spatial in (0, 1, 2) if self.video_spatial_crops == 3 else (1,):
                top, left = math.ceil((height - crop) / 2), math.ceil((width - crop) / 2)
                if height > width and spatial != 1:
                    top = 0 if spatial == 0 else height - crop
                elif height <= width and spatial != 1:
                    left = 0 if spatial == 0 else width - crop
                out.append(clip[:, :, top : top + crop, left : left + crop])
        return torch.stack(out)

    def _frame_array(self, video, i: int) -> np.ndarray:
        """A uint8 frame array `(T, H, W, 3)`; `(T, 3, H, W)` is accepted and transposed."""
        array = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
        if array.ndim == 4 and array.shape[-1] != 3 and array.shape[1] == 3:
            array = array.transpose(0, 2, 3, 1)
        if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
            raise ValueError(f"video {i}: frame arrays must have shape (T, H, W, 3) or (T, 3, H, W); got {array.shape}")
        if array.dtype != np.uint8:
            raise TypeError(f"video {i}: frame arrays must be uint8 (0..255), got dtype {array.dtype}")
        return array

    def preprocess_videos(self, videos, video_fps: float | list[float] | None = None,
                          do_sample_frames: bool | None = None) -> torch.Tensor:
        """Videos -> `(batch, video_clips * video_spatial_crops, 3, video_frames_per_clip, size, size)`.

        Args:
            videos: one video or a list; a video is a file path (decoded with PyAV) or a uint8 frame array
                `(T, H, W, 3)` (or `(T, 3, H, W)`).
            video_fps (`float` or `list[float]`): frame rate of the frame arrays (one for all, or one per video);
                required for arrays unless ``default_video_fps`` is set; files carry their own (a given rate must
                agree with it).
            do_sample_frames (`bool`, *optional*, defaults to `True`): `False` takes frame arrays as the frames
                already sampled: consecutive groups of ``video_frames_per_clip`` frames are the clips (`T` must be a
                multiple), so `(batch, T / video_frames_per_clip * crops, ...)`; no frame rate is used.
        """
        items = _items(videos, "videos")
        if do_sample_frames is False:
            if video_fps is not None:
                raise ValueError("video_fps is not used with do_sample_frames=False (the frames are already sampled)")
            return _stack([self._video_clips(self._given_clips(video, i)) for i, video in enumerate(items)], "videos")
        rates = list(video_fps) if isinstance(video_fps, (list, tuple)) else [video_fps] * len(items)
        fallback = self.default_video_fps
        if len(rates) != len(items):
            raise ValueError(f"got {len(rates)} video_fps values for {len(items)} videos")
        out = []
        for i, (video, fps) in enumerate(zip(items, rates, strict=True)):
            is_number = isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool)
            if fps is not None and (not is_number or not fps > 0):
                raise ValueError(f"video {i}: video_fps must be a positive number, got {fps!r}")
            if isinstance(video, (str, Path)):
                reader = _VideoFile(video)
                if fps is not None and abs(fps - reader.fps) > 1e-3 * reader.fps:
                    raise ValueError(f"video {i}: {video} runs at {reader.fps} fps but video_fps={fps} was given")
                clips = self._clip_frame_indices(reader.num_frames, reader.fps)
                decoded = reader.frames({j for clip in clips for j in clip})
                missing = sorted({j for clip in clips for j in clip} - decoded.keys())
                if missing:
                    raise ValueError(f"video {i}: {video} could not decode frames {missing[:5]}")
                frames = np.stack([np.stack([decoded[j] for j in clip]) for clip in clips])
            else:
                array = self._frame_array(video, i)
                fps = fps if fps is not None else fallback
                if fps is None:
                    raise ValueError(f"video {i}: video_fps is required for frame arrays (e.g. video_fps=30), "
                                     "or set the image processor's default_video_fps")
                clips = self._clip_frame_indices(array.shape[0], float(fps))
                frames = np.stack([array[clip] for clip in clips])
            out.append(self._video_clips(frames))
        return _stack(out, "videos")

    def _given_clips(self, video, i: int) -> np.ndarray:
        """Frames already sampled -> `(T / video_frames_per_clip, video_frames_per_clip, H, W, 3)`."""
        if isinstance(video, (str, Path)):
            raise ValueError(f"video {i}: do_sample_frames=False takes frame arrays; video files are always sampled")
        array, per_clip = self._frame_array(video, i), self.video_frames_per_clip
        if array.shape[0] % per_clip:
            raise ValueError(f"video {i}: do_sample_frames=False needs a multiple of video_frames_per_clip={per_clip} "
                             f"frames (consecutive frames form the clips), got {array.shape[0]}")
        return array.reshape(-1, per_clip, *array.shape[1:])

    # -------------------------------------------------------------------------------------------- depth, thermal
    def _depth_array(self, item, input_type: str) -> np.ndarray:
        if isinstance(item, (str, Path)):
            try:
                with Image.open(item) as handle:
                    array = np.asarray(handle, dtype=np.float32)
            except (UnidentifiedImageError, OSError) as err:
                raise ValueError(f"{item}: not a readable depth image ({err})") from err
            if array.ndim == 3:
                raise ValueError(f"{item}: depth images must have one channel, got shape {array.shape}")
            return array / self.depth_file_scale if input_type == "depth" else array
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        array = np.asarray(item)
        if array.dtype == object or array.dtype.kind not in "fiu":
            raise TypeError(f"depth maps must be real-valued arrays, got dtype {array.dtype}")
        array = array.astype(np.float32)
        if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
            array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
        if array.ndim != 2 or 0 in array.shape:
            raise ValueError(f"depth maps must be (H, W) (or (1, H, W) / (H, W, 1)); got shape {array.shape}")
        return array

    def preprocess_depth(self, depth_maps, input_type: str = "depth") -> torch.Tensor:
        """Depth maps in metres (or disparity maps) -> normalised disparity `(batch, 1, size, size)`."""
        if input_type not in ("depth", "disparity"):
            raise ValueError(f"input_type must be 'depth' or 'disparity', got {input_type!r}")
        out = []
        for i, item in enumerate(_items(depth_maps, "depth")):
            try:
                array = self._depth_array(item, input_type)
                if not np.isfinite(array).all() or (array < 0).any():
                    raise ValueError("values must be finite and non-negative")
                if input_type == "depth":
                    array = self.depth_baseline * self.depth_focal_length / array.clip(self.depth_min, self.depth_max)
                disparity = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
                disparity = self._geometry(disparity.clamp(self.disparity_min, self.disparity_max) / self.disparity_max)
            except (ValueError, TypeError) as err:
                raise with_context(err, f"depth map {i}") from err
            out.append((disparity - self.depth_mean) / self.depth_std if self.do_normalize else disparity)
        return _stack(out, "depth")

    def preprocess_thermal(self, images) -> torch.Tensor:
        """Thermal images (paths, PIL images or arrays; read as grayscale) -> `(batch, 1, size, size)`."""
        out = []
        for i, image in enumerate(_items(images, "thermal")):
            try:
                x = self._geometry(torch.from_numpy(self._rescale(load_image(image, "L")))[None])
            except (ValueError, TypeError) as err:
                raise with_context(err, f"thermal image {i}") from err
            out.append((x - self.thermal_mean) / self.thermal_std if self.do_normalize else x)
        return _stack(out, "thermal")

    def __call__(self, images=None, videos=None, depth=None, thermal=None, tactile=None,
                 video_fps: float | list[float] | None = None, depth_input_type: str | None = None,
                 return_tensors: str | None = None, do_sample_frames: bool | None = None, **settings) -> BatchFeature:
        """[`BatchFeature`] with ``pixel_values``, ``pixel_values_videos``, ``depth_values``, ``thermal_values`` and
        ``tactile_values`` for the inputs given (shapes in the method docstrings above).

        ``depth_input_type`` is ``"depth"`` (the default) or ``"disparity"``; ``return_tensors`` ``"pt"`` or `None`
        (torch tensors) or ``"np"``; any setting (``do_normalize=False``, ``size=256`` ...) applies to this call.
        """
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        processor = self._with_settings(**settings)
        data = {}
        if images is not None:
            data["pixel_values"] = processor.preprocess(images)
        if videos is not None:
            data["pixel_values_videos"] = processor.preprocess_videos(videos, video_fps, do_sample_frames)
        elif video_fps is not None:
            raise ValueError("video_fps was given without videos")
        if depth is not None:
            data["depth_values"] = processor.preprocess_depth(depth, depth_input_type or "depth")
        if thermal is not None:
            data["thermal_values"] = processor.preprocess_thermal(thermal)
        if tactile is not None:
            data["tactile_values"] = processor.preprocess_tactile(tactile)
        return BatchFeature(data, tensor_type=return_tensors)


__all__ = [
    "CodeBindImageProcessor",
    "CodeBindImagesKwargs",
    "CodeBindVideosKwargs",
    "load_image",
    "resize_and_crop",
    "resize_and_crop_tensor",
    "CLIP_MEAN",
    "CLIP_STD",
]
