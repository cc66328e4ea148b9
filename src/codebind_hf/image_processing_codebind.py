"""Image-like inputs for ImageBind towers: RGB images, video clips, depth (as disparity), thermal, tactile.

Images follow ImageBind's torchvision recipe with PIL: bicubic resize of the short side to 224 (long side
``int(224 * long / short)``), centre crop (offsets rounded), scale to [0, 1], CLIP mean/std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _open_image(image, mode: str) -> Image.Image:
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as handle:
                return handle.convert(mode)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{image}: not a readable image file ({err})") from err
    if isinstance(image, Image.Image):
        return image.convert(mode)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if not np.isfinite(array).all():
            raise ValueError("image array contains NaN or inf")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(f"float image arrays must lie in [0, 1]; got range [{array.min()}, {array.max()}]")
        array = (array * 255).round().astype(np.uint8)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"image arrays must be (H, W) or (H, W, C) with C in 1/3/4; got shape {array.shape}")
    return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array).convert(mode)


def resize_and_crop(image: Image.Image, size: int = 224, resample=Image.BICUBIC) -> Image.Image:
    """Short side to ``size`` (torchvision's rounding), then a centred ``size`` x ``size`` crop."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    image = image.resize(new_size, resample)
    left = int(round((image.width - size) / 2.0))
    top = int(round((image.height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


class CodeBindImageProcessor:
    """Images, videos, depth maps, thermal and tactile images -> tensors for the ImageBind towers."""

    def __init__(self, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD, frames_per_clip: int = 2, clips_per_video: int = 5,
                 depth_focal_length: float = 518.857901, depth_baseline: float = 0.075, max_disparity: float | None = None):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.frames_per_clip, self.clips_per_video = frames_per_clip, clips_per_video
        self.depth_focal_length, self.depth_baseline, self.max_disparity = depth_focal_length, depth_baseline, max_disparity

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    def _rgb(self, image) -> torch.Tensor:
        array = np.asarray(resize_and_crop(_open_image(image, "RGB"), self.size), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        return (tensor - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]

    def images(self, images) -> torch.Tensor:
        """Paths, PIL images or arrays -> `(batch, 3, size, size)`."""
        items = images if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ValueError("images is empty")
        return torch.stack([self._rgb(i) for i in items])

    def videos(self, videos) -> torch.Tensor:
        """Frame arrays `(T, H, W, 3)` (uint8) -> `(batch, clips, 3, frames_per_clip, size, size)`.

        ``clips_per_video`` segments spread evenly over the video, ``frames_per_clip`` evenly spaced frames each,
        every frame resized and centre-cropped like an image (ImageBind also takes 3 spatial crops per clip; we
        take the centre one).
        """
        items = videos if isinstance(videos, (list, tuple)) else [videos]
        if not items:
            raise ValueError("videos is empty")
        out = []
        for video in items:
            frames = np.asarray(video)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"videos must be frame arrays of shape (T, H, W, 3); got shape {frames.shape}")
            bounds = np.linspace(0, frames.shape[0], self.clips_per_video + 1)
            clips = []
            for start, end in zip(bounds[:-1], bounds[1:]):
                picks = np.linspace(start, max(start, end - 1), self.frames_per_clip).round().astype(int)
                clips.append(torch.stack([self._rgb(frames[min(i, frames.shape[0] - 1)]) for i in picks], dim=1))
            out.append(torch.stack(clips))
        return torch.stack(out)

    def _single_channel(self, image, scale: float = 255.0) -> torch.Tensor:
        array = np.asarray(resize_and_crop(image, self.size, Image.BILINEAR), dtype=np.float32) / scale
        return torch.from_numpy(array)[None]

    def depth(self, depth_maps, input_type: str = "depth") -> torch.Tensor:
        """Depth maps in metres (``input_type="depth"``, converted to disparity ``f·b / depth`` with the NYU-v2
        camera's focal length and baseline, zeros kept as 0) or disparity maps -> `(batch, 1, size, size)`."""
        if input_type not in ("depth", "disparity"):
            raise ValueError(f"input_type must be 'depth' or 'disparity', got {input_type!r}")
        items = depth_maps if isinstance(depth_maps, (list, tuple)) else [depth_maps]
        out = []
        for item in items:
            array = np.asarray(Image.open(item) if isinstance(item, (str, Path)) else item, dtype=np.float32)
            if array.ndim != 2:
                raise ValueError(f"depth maps must be 2-D (H, W); got shape {array.shape}")
            if not np.isfinite(array).all() or (array < 0).any():
                raise ValueError("depth maps must be finite and non-negative")
            if input_type == "depth":
                array = np.where(array > 0, self.depth_focal_length * self.depth_baseline / np.maximum(array, 1e-6), 0.0)
            if self.max_disparity:
                array = array / self.max_disparity
            out.append(self._single_channel(Image.fromarray(array.astype(np.float32), mode="F"), scale=1.0))
        return torch.stack(out)

    def thermal(self, images) -> torch.Tensor:
        """Thermal images (paths/arrays, read as grayscale) -> `(batch, 1, size, size)` in [0, 1]."""
        items = images if isinstance(images, (list, tuple)) else [images]
        return torch.stack([self._single_channel(_open_image(i, "L")) for i in items])

    def tactile(self, images) -> torch.Tensor:
        """Tactile (GelSight-style RGB) images -> `(batch, 3, size, size)`, normalised like images."""
        return self.images(images)


__all__ = ["CodeBindImageProcessor", "resize_and_crop", "CLIP_MEAN", "CLIP_STD"]
