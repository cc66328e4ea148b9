"""`CodeBindProcessor`: one call for any subset of modalities, returning the model's input keys.

It composes the text tokenizer, the image processor (images, videos, depth, thermal, tactile), the audio
feature extractor and the sensor processor (IMU, EEG, point clouds). It is a plain class rather than a
transformers ``ProcessorMixin``: the mixin expects tokenizer / image-processor / feature-extractor classes
registered with transformers, and our components (an offline CLIP BPE, a torch Kaldi fbank) are not;
saving writes ``processor_config.json`` plus the tokenizer's files, and nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from transformers import BatchFeature

from .feature_extraction_codebind import CodeBindAudioFeatureExtractor
from .feature_extraction_sensors import CodeBindSensorProcessor
from .image_processing_codebind import CodeBindImageProcessor
from .tokenization_codebind import CodeBindTokenizer

PROCESSOR_CONFIG = "processor_config.json"


class CodeBindProcessor:
    """Preprocess any subset of modalities into a `BatchFeature` for [`CodeBindModel`].

    Example:

    ```python
    >>> import numpy as np
    >>> from codebind_hf.processing_codebind import CodeBindProcessor
    >>> processor = CodeBindProcessor.imagebind()
    >>> batch = processor(text=["a dog barking"], audio=[np.zeros(32000)], sampling_rate=16000, imu=[np.zeros((6, 500))])
    >>> {k: tuple(v.shape) for k, v in batch.items()}
    {'input_ids': (1, 77), 'audio_values': (1, 3, 1, 128, 204), 'imu_values': (1, 6, 2000)}

    ```
    """

    def __init__(self, tokenizer=None, image_processor=None, feature_extractor=None, sensor_processor=None):
        self.tokenizer = tokenizer or CodeBindTokenizer()
        self.image_processor = image_processor or CodeBindImageProcessor()
        self.feature_extractor = feature_extractor or CodeBindAudioFeatureExtractor()
        self.sensor_processor = sensor_processor or CodeBindSensorProcessor()

    @classmethod
    def imagebind(cls) -> CodeBindProcessor:
        """The ImageBind-exact processor, built offline from the files shipped in the package."""
        return cls()

    def __call__(
        self,
        text=None,
        images=None,
        videos=None,
        audio=None,
        sampling_rate=None,
        depth=None,
        thermal=None,
        imu=None,
        tactile=None,
        eeg=None,
        point_clouds=None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        data = {}
        if text is not None:
            data["input_ids"] = self.tokenizer(text)
        if images is not None:
            data["pixel_values"] = self.image_processor.images(images)
        if videos is not None:
            data["pixel_values_videos"] = self.image_processor.videos(videos)
        if audio is not None:
            data["audio_values"] = self.feature_extractor(audio, sampling_rate)
        elif sampling_rate is not None:
            raise ValueError("sampling_rate was given without audio")
        if depth is not None:
            data["depth_values"] = self.image_processor.depth(depth)
        if thermal is not None:
            data["thermal_values"] = self.image_processor.thermal(thermal)
        if tactile is not None:
            data["tactile_values"] = self.image_processor.tactile(tactile)
        if imu is not None:
            data["imu_values"] = self.sensor_processor.imu(imu)
        if eeg is not None:
            data["eeg_values"] = self.sensor_processor.eeg(eeg)
        if point_clouds is not None:
            data["point_values"] = self.sensor_processor.point_clouds(point_clouds)
        if not data:
            raise ValueError(
                "no inputs given; pass some of text=, images=, videos=, audio=, depth=, thermal=, imu=, tactile=, eeg=, point_clouds="
            )
        return BatchFeature(data=data, tensor_type="pt")

    # ------------------------------------------------------------------ save / load
    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "image_processor": self.image_processor.to_dict(),
            "feature_extractor": self.feature_extractor.to_dict(),
            "sensor_processor": self.sensor_processor.to_dict(),
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``processor_config.json`` and the tokenizer files; atomically (temp dir, then rename)."""
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".processor-", dir=target.parent))
        try:
            (staging / PROCESSOR_CONFIG).write_text(json.dumps(self.to_dict(), indent=2))
            self.tokenizer.save_pretrained(staging)
            if target.exists():
                for item in staging.iterdir():
                    os.replace(item, target / item.name)
                staging.rmdir()
            else:
                os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> CodeBindProcessor:
        directory = Path(directory)
        path = directory / PROCESSOR_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; expected a folder written by CodeBindProcessor.save_pretrained")
        config = json.loads(path.read_text())
        return cls(
            tokenizer=CodeBindTokenizer.from_pretrained(directory),
            image_processor=CodeBindImageProcessor(**config["image_processor"]),
            feature_extractor=CodeBindAudioFeatureExtractor(**config["feature_extractor"]),
            sensor_processor=CodeBindSensorProcessor(**config["sensor_processor"]),
        )


__all__ = ["CodeBindProcessor"]
