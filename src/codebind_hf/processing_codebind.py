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

``__call__`` takes transformers' keyword groups (``text_kwargs``, ``images_kwargs``, ``videos_kwargs``,
``audio_kwargs``, ``common_kwargs``, typed by [`CodeBindProcessorKwargs`]) or the same options flat, merged by
``ProcessorMixin._merge_kwargs``; the defaults give ImageBind's inputs exactly. ``model_input_names`` lists the keys of
transformers' four input kinds (text, images, videos, audio), as ``ProcessorMixin`` defines it; every modality's key is
in [`~codebind_hf.modalities.INPUT_KEYS`].

``from_pretrained`` is overridden to build the components from this package's classes, so loading works offline
(``codebind_hf/__init__.py`` also registers them with ``AutoTokenizer``, ``AutoImageProcessor``,
``AutoFeatureExtractor`` and ``AutoProcessor``); its keywords reach the component that has the setting.
``save_pretrained`` writes into a temporary folder first and moves the files in, so a crash never leaves a half
written processor.
"""

# No `from __future__ import annotations`: ProcessorMixin reads the kwargs TypedDicts' annotations as classes.
import os
from pathlib import Path
from typing import is_typeddict

import numpy as np
import torch
from transformers import BatchFeature
from transformers.audio_utils import AudioInput
from transformers.image_utils import ImageInput
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.video_utils import VideoInput

from .adapters.io import write_files_atomically
from .feature_extraction_array_sensor import modality_processor_dicts, run_modality_processors
from .feature_extraction_codebind import CodeBindAudioKwargs, CodeBindFeatureExtractor, init_parameters
from .feature_extraction_sensors import CodeBindSensorFeatureExtractor
from .image_processing_codebind import CodeBindImageProcessor, CodeBindImagesKwargs, CodeBindVideosKwargs
from .processing_towers import TowerProcessors
from .tokenization_codebind import CodeBindTokenizer

# Every input also takes file paths (one, or a list); sensors take arrays.
_Paths = str | os.PathLike | list[str | os.PathLike]
_Arrays = np.ndarray | torch.Tensor | list[np.ndarray | torch.Tensor]
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
# Keywords transformers' loaders pass along that no CodeBind component takes.
_LOADER_KWARGS = ("trust_remote_code", "_from_auto", "_from_pipeline", "use_fast", "backend", "return_unused_kwargs")
# `PreTrainedTokenizerBase.__init__` settings (besides the special tokens) a `from_pretrained` keyword can set.
_TOKENIZER_SETTINGS = ("model_max_length", "padding_side", "truncation_side", "model_input_names",
                       "clean_up_tokenization_spaces", "split_special_tokens", "extra_special_tokens",
                       "additional_special_tokens")


class CodeBindProcessorKwargs(ProcessingKwargs, total=False):
    """The keyword groups of [`CodeBindProcessor.__call__`]: transformers' ``TextKwargs`` and CodeBind's image, video
    and audio options ([`CodeBindImagesKwargs`], [`CodeBindVideosKwargs`], [`CodeBindAudioKwargs`])."""

    images_kwargs: CodeBindImagesKwargs
    videos_kwargs: CodeBindVideosKwargs
    audio_kwargs: CodeBindAudioKwargs


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
    >>> grouped = processor(text=["a dog"], text_kwargs={"max_length": 8}, common_kwargs={"return_tensors": "np"})
    >>> grouped["input_ids"].shape, type(grouped["input_ids"]).__name__
    ((1, 8), 'ndarray')

    ```
    """

    valid_processor_kwargs = CodeBindProcessorKwargs
    # ImageBind's text inputs: padded and truncated to the context length (the tokenizer's model_max_length), as
    # torch tensors like every other modality.
    text_kwargs = {"padding": "max_length", "truncation": True, "return_tensors": "pt"}

    def __init__(self, tokenizer=None, image_processor=None, feature_extractor=None, sensor_processor=None,
                 modality_processors=None, tower_processors=None, **kwargs):
        # New sensors (codebind_hf.modalities): name -> its component's dict, saved in processor_config.json.
        self.modality_processors = modality_processor_dicts(modality_processors)
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
    def imagebind(cls) -> "CodeBindProcessor":
        """The ImageBind-exact processor, built offline from the files shipped in the package."""
        return cls()

    @classmethod
    def vitlens(cls, num_points: int = 8192, eeg_length: int = 512, eeg_channels: int = 128,
                image_size: int = 224) -> "CodeBindProcessor":
        """The CodeBind-VL processor: CLIP text and images (open_clip's eval transform is ImageBind's: bicubic resize
        of the short side, centre crop, CLIP mean/std) and ViT-Lens point clouds and EEG
        ([`CodeBindSensorFeatureExtractor.vitlens`]); defaults are ViT-Lens-L's sizes."""
        return cls(
            image_processor=CodeBindImageProcessor(size=image_size),
            sensor_processor=CodeBindSensorFeatureExtractor.vitlens(num_points, eeg_length, eeg_channels),
        )

    @classmethod
    def from_pretrained_towers(cls, config, **kwargs) -> "CodeBindProcessor":
        """A processor for a model's towers: each tower loaded from a transformers checkpoint preprocesses with that
        checkpoint's own tokenizer / image processor / feature extractor
        ([`~codebind_hf.processing_towers.TowerProcessors.from_config`]; ``config``: a [`CodeBindConfig`] or a model),
        the other modalities with CodeBind's components (given as keyword arguments, else the ImageBind ones)."""
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        return cls(tower_processors=TowerProcessors.from_config(config, **hub), **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        """The keys of transformers' four input kinds, as ``ProcessorMixin`` lists them: text (``input_ids``,
        ``attention_mask``), images (``pixel_values``), videos (``pixel_values_videos``), audio (``audio_values``).
        The other modalities' keys: [`~codebind_hf.modalities.INPUT_KEYS`]."""
        return [*self.tokenizer.model_input_names, "pixel_values", "pixel_values_videos",
                *self.feature_extractor.model_input_names]

    def add_modality(self, modality: str, component) -> "CodeBindProcessor":
        """Process a new modality with ``component`` (e.g. a `CodeBindArraySensorFeatureExtractor`), so that
        ``processor(<modality>=arrays)`` gives its input key; saved with the processor. Returns the processor."""
        self.modality_processors = {**self.modality_processors, **modality_processor_dicts({modality: component})}
        return self

    def __call__(
        self,
        images: ImageInput | _Paths | None = None,
        text: str | list[str] | None = None,
        videos: VideoInput | _Paths | None = None,
        audio: AudioInput | _Paths | None = None,
        depth: ImageInput | _Paths | None = None,
        thermal: ImageInput | _Paths | None = None,
        imu: _Arrays | None = None,
        tactile: ImageInput | _Paths | None = None,
        eeg: _Arrays | None = None,
        point_clouds: _Arrays | None = None,
        **kwargs: Unpack[CodeBindProcessorKwargs],
    ) -> BatchFeature:
        """Preprocess the given inputs; every input takes one item or a list (a batch).

        Args:
            text (`str` or `list[str]`): -> ``input_ids`` `(batch, 77)` (+ ``attention_mask``).
            images: paths, PIL images or arrays (or transformers' nested per-sample lists, flattened in order) ->
                ``pixel_values`` `(batch, 3, 224, 224)`.
            videos: paths or uint8 frame arrays `(T, H, W, 3)` / `(T, 3, H, W)` (with ``video_fps``) ->
                ``pixel_values_videos`` `(batch, 15, 3, 2, 224, 224)` (5 clips x 3 spatial crops).
            audio: paths or waveforms `(samples,)` / `(channels, samples)` (with ``sampling_rate``) ->
                ``audio_values`` `(batch, 3, 1, 128, 204)`.
            depth: depth maps in metres `(H, W)` or 16-bit depth PNG paths -> ``depth_values`` `(batch, 1, 224, 224)`.
            thermal: thermal images -> ``thermal_values`` `(batch, 1, 224, 224)`.
            imu: `(6, T)` arrays -> ``imu_values`` `(batch, 6, 2000)`.
            tactile: tactile images -> ``tactile_values`` `(batch, 3, 224, 224)`.
            eeg: `(128, T)` arrays -> ``eeg_values`` `(batch, 128, 512)`.
            point_clouds: `(N, 3)` / `(N, 6)` arrays -> ``point_values`` `(batch, 8192, 3 or 6)`.
            kwargs ([`CodeBindProcessorKwargs`]): options, flat or in their group: text (``padding``,
                ``max_length``, ``truncation``, ``return_attention_mask``, ...; default: pad and truncate to the
                tokenizer's 77 tokens); images, depth, thermal, tactile (``depth_input_type`` ``"depth"`` (metres) or
                ``"disparity"``, and any image processor setting: ``do_normalize``, ``size`` ...); videos
                (``video_fps``: the frame rate of frame arrays; ``do_sample_frames=False``: the frames are already
                sampled, see [`~CodeBindImageProcessor.preprocess_videos`]); audio (``sampling_rate``: the rate of
                the arrays); all (``return_tensors``: ``"pt"`` (default) or ``"np"``).
        """
        inputs = {"text": text, "images": images, "videos": videos, "audio": audio, "depth": depth,
                  "thermal": thermal, "imu": imu, "tactile": tactile, "eeg": eeg, "point_clouds": point_clouds,
                  **{name: kwargs.pop(name) for name in list(kwargs) if name in self.modality_processors}}  # new sensors
        if all(value is None for value in inputs.values()):
            raise ValueError(f"no inputs given; pass some of {', '.join(f'{name}=' for name in inputs)}")
        return_tensors = _check_options(kwargs)
        merged = self._merge_kwargs(CodeBindProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        for flag in ("return_mm_token_type_ids", "return_text_replacement_offsets"):
            if merged.pop(flag, False) or merged["text_kwargs"].pop(flag, False):
                raise ValueError(f"{flag}: CodeBind's text has no multimodal placeholder tokens")
        if videos is None and merged["videos_kwargs"].get("video_fps") is not None:
            raise ValueError("video_fps was given without videos")
        if audio is None and merged["audio_kwargs"].get("sampling_rate") is not None:
            raise ValueError("sampling_rate was given without audio")
        data = {}
        # Modalities whose pretrained tower brings its own preprocessing (codebind_hf.processing_towers).
        if self.tower_processors:
            self.tower_processors.refuse_videos(videos)
            given = {"text": text, "vision": images, "audio": audio, "depth": depth, "thermal": thermal, "imu": imu,
                     "tactile": tactile, "eeg": eeg, "point": point_clouds}
            # The user's text options only: a tower's own tokenizer keeps its own defaults, not ImageBind's.
            text_options = {k: kwargs[k] for k in ("padding", "max_length", "truncation", "return_attention_mask")
                            if k in kwargs} | dict(kwargs.get("text_kwargs") or {})
            data.update(self.tower_processors(given, merged["audio_kwargs"].get("sampling_rate"), text_options))
            text, images, audio, depth, thermal, imu, tactile, eeg, point_clouds = (
                None if modality in self.tower_processors else value for modality, value in given.items())
        if text is not None:
            data.update(self._tokenize(text, merged["text_kwargs"]))
        if any(value is not None for value in (images, depth, thermal, tactile)):
            data.update(self.image_processor(images=images, depth=depth, thermal=thermal, tactile=tactile,
                                             **merged["images_kwargs"]))
        if videos is not None:
            data.update(self.image_processor(videos=videos, **merged["videos_kwargs"]))
        if audio is not None:
            data.update(self.feature_extractor(audio, **merged["audio_kwargs"]))
        if any(value is not None for value in (imu, eeg, point_clouds)):
            data.update(self.sensor_processor(imu=imu, eeg=eeg, point_clouds=point_clouds,
                                              return_tensors=return_tensors or "pt"))
        data.update(run_modality_processors(self.modality_processors, {k: inputs[k] for k in self.modality_processors
                                                                         if k in inputs}))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _tokenize(self, text, text_kwargs: dict) -> BatchFeature:
        texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"text must be a string or a non-empty list of strings, got {text!r:.80}")
        return self.tokenizer(texts, **text_kwargs)

    # ------------------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Write ``processor_config.json`` and the tokenizer files into ``save_directory``; returns their paths,
        ``processor_config.json`` first (as ``ProcessorMixin.save_pretrained``).

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
        written.sort(key=lambda path: Path(path).name != "processor_config.json")
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", target.name)
            self.push_to_hub(repo_id, **kwargs)
        return written

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "CodeBindProcessor":
        """Load a processor written by [`save_pretrained`] from a folder or a Hub repository id.

        Hub keyword arguments (``cache_dir``, ``revision``, ``token``, ``local_files_only`` ...) are honoured; a
        keyword that is a component's setting reaches that component (``size=`` or ``do_normalize=`` the image
        processor, ``clips_per_sample=`` the audio feature extractor, ``model_max_length=`` or ``cls_token=`` the
        tokenizer); ``tokenizer=``, ``image_processor=``, ``feature_extractor=`` replace a component and
        ``sensor_processor=`` (a dict or an instance) the saved sensor settings. Any other keyword is refused.
        """
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        for name in _LOADER_KWARGS:
            kwargs.pop(name, None)
        routed = {name: {k: kwargs.pop(k) for k in list(kwargs) if k in settings}
                  for name, settings in _component_settings().items()}
        unknown = sorted(set(kwargs) - {*cls.get_attributes(), "sensor_processor", "chat_template"})
        if unknown:
            raise TypeError(f"CodeBindProcessor.from_pretrained got unknown keywords {unknown}: not a setting of any "
                            "component (see CodeBindImageProcessor, CodeBindFeatureExtractor, CodeBindTokenizer)")
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


def _component_settings() -> dict[str, set[str]]:
    """Per component, the ``from_pretrained`` keywords that are its settings."""
    tokenizer = {*init_parameters(CodeBindTokenizer), *PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES,
                 *_TOKENIZER_SETTINGS}
    return {"image_processor": set(init_parameters(CodeBindImageProcessor)),
            "feature_extractor": set(init_parameters(CodeBindFeatureExtractor)), "tokenizer": tokenizer}


def _check_options(kwargs: dict) -> str | None:
    """Refuse option names no group takes (transformers would ignore them with a warning) and a ``return_tensors``
    other than "pt" / "np"; returns the ``return_tensors`` asked for the whole call (flat or in ``common_kwargs``)."""
    groups = {name: set(group.__annotations__) for name, group in CodeBindProcessorKwargs.__annotations__.items()
              if is_typeddict(group)}
    groups["common_kwargs"] = set.intersection(*groups.values())  # applied to every group
    known = {*CodeBindProcessorKwargs.__annotations__, "common_kwargs", *set().union(*groups.values())}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"CodeBindProcessor got unknown options {unknown}; see CodeBindProcessorKwargs for the options")
    for name, allowed in groups.items():
        extra = sorted(set(kwargs.get(name) or {}) - allowed)
        if extra:
            raise TypeError(f"{name} takes {sorted(allowed)}; got unknown {extra}")
    asked = [kwargs.get("return_tensors"), (kwargs.get("common_kwargs") or {}).get("return_tensors")]
    asked += [(kwargs.get(name) or {}).get("return_tensors") for name in groups]
    bad = [value for value in asked if value not in (None, "pt", "np")]
    if bad:
        raise ValueError(f"return_tensors must be 'pt' or 'np', got {bad[0]!r}")
    return asked[0] or asked[1]


__all__ = ["CodeBindProcessor", "CodeBindProcessorKwargs"]
