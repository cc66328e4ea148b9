"""`CodeBindProcessor`: one call for any subset of the nine modalities, returning the model's input keys.

Design: transformers' ``ProcessorMixin`` (v5) finds its components from the ``__init__`` parameters whose names
contain ``tokenizer``, ``image_processor``, ``feature_extractor`` ..., checks each against its base class and
saves / loads each through the matching Auto class. Nine modality components do not fit those slots cleanly, so the
processor holds the three standard ones, each covering a family of inputs:

- ``tokenizer`` ([`CodeBindTokenizer`], a ``PreTrainedTokenizer``): text;
- ``image_processor`` ([`CodeBindImageProcessor`], an ``ImageProcessingMixin``): images, videos, depth, thermal and
  tactile images;
- ``feature_extractor`` ([`CodeBindFeatureExtractor`], a ``FeatureExtractionMixin``): audio;

plus one plain keyword component, ``sensor_processor`` ([`CodeBindSensorFeatureExtractor`]): IMU, EEG and point
clouds. It is saved as a nested JSON dict in ``processor_config.json`` next to the two standard ones, and the
tokenizer writes ``vocab.json`` / ``merges.txt`` / ``tokenizer_config.json``: no pickle anywhere.

``from_pretrained`` is overridden to build the components from this package's classes, so loading works offline
without registering them with the Auto classes (which ``codebind_hf/__init__.py`` may still do for ``AutoProcessor``).
``save_pretrained`` writes into a temporary folder first and moves the files in, so a crash never leaves a half
written processor.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .adapters.io import write_files_atomically
from .feature_extraction_codebind import CodeBindFeatureExtractor
from .feature_extraction_sensors import CodeBindSensorFeatureExtractor
from .image_processing_codebind import CodeBindImageProcessor
from .processing_towers import TowerProcessors
from .tokenization_codebind import CodeBindTokenizer

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


class CodeBindProcessor(ProcessorMixin):
    """Preprocess any subset of modalities into a [`BatchFeature`] for [`CodeBindModel`].

    Args:
        tokenizer ([`CodeBindTokenizer`], *optional*): text; defaults to the packaged CLIP BPE.
        image_processor ([`CodeBindImageProcessor`], *optional*): images, videos, depth, thermal, tactile.
        feature_extractor ([`CodeBindFeatureExtractor`], *optional*): audio.
        sensor_processor ([`CodeBindSensorFeatureExtractor`] or `dict`, *optional*): IMU, EEG, point clouds.
        tower_processors ([`~codebind_hf.processing_towers.TowerProcessors`] or `dict`, *optional*): the own
            preprocessing of pretrained towers, by modality; those modalities skip CodeBind's components (see
            [`~CodeBindProcessor.from_pretrained_towers`]).

    Example:

    ```python
    >>> import numpy as np
    >>> from codebind_hf.processing_codebind import CodeBindProcessor
    >>> processor = CodeBindProcessor.imagebind()
    >>> batch = processor(
    ...     text=["a dog barking"], audio=[np.zeros(32000)], sampling_rate=16000, imu=[np.zeros((6, 500))]
    ... )
    >>> {k: tuple(v.shape) for k, v in batch.items()}
    {'input_ids': (1, 77), 'attention_mask': (1, 77), 'audio_values': (1, 3, 1, 128, 204), 'imu_values': (1, 6, 2000)}

    ```
    """

    def __init__(self, tokenizer=None, image_processor=None, feature_extractor=None, sensor_processor=None,
                 tower_processors=None, **kwargs):
        if isinstance(sensor_processor, dict):
            sensor_processor = CodeBindSensorFeatureExtractor(**sensor_processor)
        sensor_processor = sensor_processor if sensor_processor is not None else CodeBindSensorFeatureExtractor()
        if not isinstance(sensor_processor, CodeBindSensorFeatureExtractor):
            raise TypeError(
                f"sensor_processor must be a CodeBindSensorFeatureExtractor, got {type(sensor_processor).__name__}"
            )
        self.sensor_processor = sensor_processor
        self.tower_processors = TowerProcessors.coerce(tower_processors)  # pretrained towers' own (processing_towers)
        super().__init__(
            tokenizer if tokenizer is not None else CodeBindTokenizer(),
            image_processor if image_processor is not None else CodeBindImageProcessor(),
            feature_extractor if feature_extractor is not None else CodeBindFeatureExtractor(),
            **kwargs,
        )

    @classmethod
    def imagebind(cls) -> CodeBindProcessor:
        """The ImageBind-exact processor, built offline from the files shipped in the package."""
        return cls()

    @classmethod
    def vitlens(cls, num_points: int = 8192, eeg_length: int = 512, eeg_channels: int = 128,
                image_size: int = 224) -> CodeBindProcessor:
        """The CodeBind-VL processor: CLIP text and images (open_clip's eval transform is ImageBind's: bicubic resize
        of the short side, centre crop, CLIP mean/std) and ViT-Lens point clouds and EEG
        ([`CodeBindSensorFeatureExtractor.vitlens`]); defaults are ViT-Lens-L's sizes."""
        return cls(
            image_processor=CodeBindImageProcessor(size=image_size),
            sensor_processor=CodeBindSensorFeatureExtractor.vitlens(num_points, eeg_length, eeg_channels),
        )

    @classmethod
    def from_pretrained_towers(cls, config, **kwargs) -> CodeBindProcessor:
        """A processor for a model's towers: each tower loaded from a transformers checkpoint preprocesses with that
        checkpoint's own tokenizer / image processor / feature extractor
        ([`~codebind_hf.processing_towers.TowerProcessors.from_config`]; ``config``: a [`CodeBindConfig`] or a model),
        the other modalities with CodeBind's components (given as keyword arguments, else the ImageBind ones)."""
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        return cls(tower_processors=TowerProcessors.from_config(config, **hub), **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        names = [*self.tokenizer.model_input_names, *self.image_processor.model_input_names]
        return names + [*self.feature_extractor.model_input_names, *self.sensor_processor.model_input_names]

    def __call__(
        self,
        text: str | list[str] | None = None,
        images=None,
        videos=None,
        audio=None,
        sampling_rate: int | list[int] | None = None,
        depth=None,
        thermal=None,
        imu=None,
        tactile=None,
        eeg=None,
        point_clouds=None,
        return_tensors: str | None = "pt",
        video_fps: float | list[float] | None = None,
        depth_input_type: str = "depth",
        return_attention_mask: bool = True,
        *,
        padding: bool | str | None = None,
        max_length: int | None = None,
        truncation: bool | None = None,
        do_sample_frames: bool | None = None,
        text_kwargs: dict | None = None,
        images_kwargs: dict | None = None,
        videos_kwargs: dict | None = None,
        audio_kwargs: dict | None = None,
        common_kwargs: dict | None = None,
    ) -> BatchFeature:
        """Preprocess the given inputs; every argument takes one item or a list (a batch).

        Args:
            text (`str` or `list[str]`): -> ``input_ids`` `(batch, 77)` (+ ``attention_mask``).
            images: paths, PIL images or arrays -> ``pixel_values`` `(batch, 3, 224, 224)`.
            videos: paths or uint8 frame arrays `(T, H, W, 3)` (with ``video_fps``) ->
                ``pixel_values_videos`` `(batch, 15, 3, 2, 224, 224)` (5 clips x 3 spatial crops).
            audio: paths or waveforms `(samples,)` / `(channels, samples)` (with ``sampling_rate``) ->
                ``audio_values`` `(batch, 3, 1, 128, 204)`.
            depth: depth maps in metres `(H, W)` or 16-bit depth PNG paths -> ``depth_values`` `(batch, 1, 224, 224)`.
            thermal: thermal images -> ``thermal_values`` `(batch, 1, 224, 224)`.
            imu: `(6, T)` arrays -> ``imu_values`` `(batch, 6, 2000)`.
            tactile: tactile images -> ``tactile_values`` `(batch, 3, 224, 224)`.
            eeg: `(128, T)` arrays -> ``eeg_values`` `(batch, 128, 512)`.
            point_clouds: `(N, 3)` / `(N, 6)` arrays -> ``point_values`` `(batch, 8192, 3 or 6)`.
            sampling_rate (`int` or `list[int]`): rate of the audio arrays (required for arrays; files carry theirs).
            video_fps (`float` or `list[float]`): frame rate of the video frame arrays (required for arrays).
            depth_input_type (`str`, *optional*, defaults to `"depth"`): `"depth"` (metres) or `"disparity"`.
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"`.
            return_attention_mask (`bool`, *optional*, defaults to `True`): add the text ``attention_mask``.
            padding, max_length, truncation (*optional*): the tokenizer's (default: pad and truncate to 77 tokens,
                the text tower's context).
            do_sample_frames (`bool`, *optional*): videos are always sampled into ImageBind's clips; `False` is refused.
            text_kwargs, images_kwargs, videos_kwargs, audio_kwargs, common_kwargs (`dict`, *optional*): transformers'
                per-modality keyword groups: for the tokenizer, the image processor (``depth_input_type``, ...),
                videos (``video_fps``), the audio feature extractor (``sampling_rate``), and all
                (``return_tensors``).
        """
        common = dict(common_kwargs or {})
        return_tensors = common.pop("return_tensors", return_tensors)
        if common:
            raise TypeError(f"common_kwargs takes return_tensors only, got {sorted(common)}")
        videos_kwargs = dict(videos_kwargs or {})
        video_fps = videos_kwargs.pop("video_fps", videos_kwargs.pop("fps", video_fps))
        do_sample_frames = videos_kwargs.pop("do_sample_frames", do_sample_frames)
        if do_sample_frames is False:
            raise ValueError("do_sample_frames=False: CodeBind's video pipeline always samples ImageBind's clips")
        if videos_kwargs:
            raise TypeError(f"videos_kwargs takes video_fps and do_sample_frames, got {sorted(videos_kwargs)}")
        images_kwargs = dict(images_kwargs or {})
        depth_input_type = images_kwargs.pop("depth_input_type", depth_input_type)
        if images_kwargs:
            raise TypeError(f"images_kwargs takes depth_input_type, got {sorted(images_kwargs)}")
        audio_kwargs = dict(audio_kwargs or {})
        sampling_rate = audio_kwargs.pop("sampling_rate", sampling_rate)
        if audio_kwargs:
            raise TypeError(f"audio_kwargs takes sampling_rate, got {sorted(audio_kwargs)}")
        tokenizer_kwargs = {
            "padding": "max_length" if padding is None else padding,
            "truncation": True if truncation is None else truncation,
            "max_length": self.tokenizer.model_max_length if max_length is None else max_length,
            "return_attention_mask": return_attention_mask,
            **(text_kwargs or {}),
        }
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        if sampling_rate is not None and audio is None:
            raise ValueError("sampling_rate was given without audio")
        data = {}
        # Modalities whose pretrained tower brings its own preprocessing (codebind_hf.processing_towers).
        if self.tower_processors:
            self.tower_processors.refuse_videos(videos)
            given = {"text": text, "vision": images, "audio": audio, "depth": depth, "thermal": thermal, "imu": imu,
                     "tactile": tactile, "eeg": eeg, "point": point_clouds}
            text_options = {"padding": padding, "max_length": max_length, "truncation": truncation,
                            "return_attention_mask": return_attention_mask, **(text_kwargs or {})}
            data.update(self.tower_processors(given, sampling_rate, text_options))
            text, images, audio, depth, thermal, imu, tactile, eeg, point_clouds = (
                None if modality in self.tower_processors else value for modality, value in given.items())
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
            if not texts or not all(isinstance(t, str) for t in texts):
                raise TypeError(f"text must be a string or a non-empty list of strings, got {text!r:.80}")
            encoded = self.tokenizer(texts, **{**tokenizer_kwargs, "return_tensors": "pt"})
            data.update(encoded)
        vision = self.image_processor(
            images=images,
            videos=videos,
            depth=depth,
            thermal=thermal,
            tactile=tactile,
            video_fps=video_fps,
            depth_input_type=depth_input_type,
            return_tensors="pt",
        )
        data.update(vision)
        if audio is not None:
            data.update(self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="pt"))
        data.update(self.sensor_processor(imu=imu, eeg=eeg, point_clouds=point_clouds, return_tensors="pt"))
        if not data:
            raise ValueError(
                "no inputs given; pass some of text=, images=, videos=, audio=, depth=, thermal=, imu=, tactile=, "
                "eeg=, point_clouds="
            )
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ------------------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Write ``processor_config.json`` and the tokenizer files into ``save_directory``.

        Files are first written to a temporary folder beside it, then moved in (`write_files_atomically`).
        With ``push_to_hub=True`` the folder is then uploaded with [`~PushToHubMixin.push_to_hub`] (``repo_id`` and
        the other keyword arguments are passed on).
        """
        target = Path(save_directory)
        if target.is_file():
            raise NotADirectoryError(f"save_directory must be a directory, got the file {target}")
        save = super().save_pretrained

        def write(staging):
            save(str(staging))
            self.tower_processors.save_pretrained(staging)  # towers/<modality>/, described in processor_config.json

        written = [str(path) for path in write_files_atomically(target, write)]
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", target.name)
            self.push_to_hub(repo_id, **kwargs)
        return written

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> CodeBindProcessor:
        """Load a processor written by [`save_pretrained`] from a folder or a Hub repository id.

        Hub keyword arguments (``cache_dir``, ``revision``, ``token``, ``local_files_only`` ...) are honoured; a
        keyword a component's constructor takes reaches that component (``size=`` the image processor,
        ``sampling_rate=`` the audio feature extractor, ``model_max_length=`` the tokenizer); any other keyword
        overrides a ``processor_config.json`` entry of the same name.
        """
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        routed = {name: {k: kwargs.pop(k) for k in list(kwargs) if k in _init_parameters(component)}
                  for name, component in (("image_processor", CodeBindImageProcessor),
                                          ("feature_extractor", CodeBindFeatureExtractor),
                                          ("tokenizer", CodeBindTokenizer))}
        path = str(pretrained_model_name_or_path)
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "processor_config.json")):
            raise FileNotFoundError(
                f"{path}/processor_config.json not found; "
                "expected a folder written by CodeBindProcessor.save_pretrained"
            )
        processor_dict, _ = cls.get_processor_dict(path, **hub)
        missing = [k for k in ("image_processor", "feature_extractor") if not isinstance(processor_dict.get(k), dict)]
        if missing:
            raise ValueError(f"{path}: processor_config.json lacks the {missing} sections of a CodeBindProcessor")
        tokenizer = CodeBindTokenizer.from_pretrained(path, **hub, **routed["tokenizer"])
        image_processor = CodeBindImageProcessor(**{**processor_dict["image_processor"], **routed["image_processor"]})
        feature_extractor = CodeBindFeatureExtractor(**{**processor_dict["feature_extractor"], **routed["feature_extractor"]})
        described = processor_dict.get("tower_processors")  # pretrained towers' own components, in towers/<modality>/
        kwargs.setdefault("tower_processors", TowerProcessors.from_pretrained(path, described, **hub))
        return cls.from_args_and_dict([tokenizer, image_processor, feature_extractor], processor_dict, **kwargs)


def _init_parameters(cls) -> set[str]:
    """Named parameters of a component's constructor (what a `from_pretrained` keyword can set on it)."""
    return {name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


__all__ = ["CodeBindProcessor"]
