"""A pretrained tower's own preprocessing, inside [`CodeBindProcessor`].

A tower loaded from a transformers checkpoint (``modalities[m]["pretrained"]``, see
`codebind_hf.encoders.hf_backbone.HFBackboneTower`) expects that checkpoint's preprocessing: MiniLM's WordPiece
tokenizer, CLIP's image processor, CLAP's or wav2vec2's feature extractor. [`TowerProcessor`] holds that component
(loaded with ``AutoTokenizer`` / ``AutoImageProcessor`` / ``AutoFeatureExtractor`` / ``AutoProcessor`` from the same
checkpoint and revision) and gives its output under the modality's CodeBind input key (``input_ids`` +
``attention_mask``, ``pixel_values``, ``audio_values``, ...). [`TowerProcessors`] is the set of them a
`CodeBindProcessor` holds (its ``tower_processors`` argument): the modalities it covers go to their tower's own
component, every other modality to CodeBind's.

``CodeBindProcessor.from_pretrained_towers(config)`` builds one for a model's config. Saved with the processor
(``processor.save_pretrained(folder)``), each component is written into ``towers/<modality>/`` and described in
``processor_config.json``, so ``CodeBindProcessor.from_pretrained(folder)`` gives it back with no network and no
source checkpoint.

Only the main tensor of a non-text component is kept (CLAP's ``is_longer`` and wav2vec2's ``attention_mask`` are
not inputs of a CodeBind tower); text keeps its attention mask.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    FeatureExtractionMixin,
    ImageProcessingMixin,
    PreTrainedTokenizerBase,
)
from transformers.utils import PushToHubMixin

from .encoders.pretrained import checkpoint_source
from .feature_extraction_codebind import read_audio, resample
from .image_processing_codebind import load_image
from .modalities import INPUT_KEYS, canonical_modality

KINDS = ("tokenizer", "image_processor", "feature_extractor")
_AUTO = {"tokenizer": AutoTokenizer, "image_processor": AutoImageProcessor, "feature_extractor": AutoFeatureExtractor}
_IMAGE_MODALITIES = ("vision", "depth", "thermal", "tactile")
# A tokenizer without a recorded limit reports this huge `model_max_length`.
_NO_LIMIT = 10**6
FOLDER = "towers"


def default_kind(modality: str) -> str:
    """Which component preprocesses a modality: text is tokenised, image-like modalities go through an image
    processor, everything else (audio, sensors) through a feature extractor."""
    if modality == "text":
        return "tokenizer"
    return "image_processor" if modality in _IMAGE_MODALITIES else "feature_extractor"


def _kind_of(component) -> str:
    for kind, base in (("tokenizer", PreTrainedTokenizerBase), ("image_processor", ImageProcessingMixin),
                       ("feature_extractor", FeatureExtractionMixin)):
        if isinstance(component, base):
            return kind
    raise TypeError(f"{type(component).__name__} is no tokenizer, image processor or feature extractor")


def load_component(kind: str, name_or_path: str, modality: str, **hub):
    """The checkpoint's component of ``kind`` (``"processor"``: ``AutoProcessor``, then its part for ``modality``)."""
    if kind == "processor":
        processor = AutoProcessor.from_pretrained(name_or_path, **hub)
        component = getattr(processor, default_kind(modality), None)
        if component is None:
            raise ValueError(f"{type(processor).__name__} of {name_or_path} has no {default_kind(modality)} for {modality}")
        return component
    if kind not in _AUTO:
        raise ValueError(f"a tower's processor is one of {[*KINDS, 'processor']}, got {kind!r}")
    return _AUTO[kind].from_pretrained(name_or_path, **hub)


def _check_tokenizer(tokenizer, name: str, vocab_size: int | None, modality: str) -> None:
    """A checkpoint without tokenizer files gets an empty tokenizer from ``AutoTokenizer`` (special tokens only), and
    one with more tokens than the tower's embedding would give ids it cannot embed: both are refused here."""
    where = f"modalities[{modality!r}]: the pretrained tower {name!r}"
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise OSError(f"{where} has no loadable tokenizer (no tokenizer files; AutoTokenizer made an empty "
                      f"{type(tokenizer).__name__}); save one beside its weights, or give it with tower_processors=")
    if vocab_size and len(tokenizer) > vocab_size:
        raise ValueError(f"{where}: its tokenizer has {len(tokenizer)} tokens, more than the text tower's "
                         f"vocab_size {vocab_size}; the tokenizer belongs to another model")


class TowerProcessor:
    """One modality's preprocessing by its tower's own component.

    Args:
        modality (`str`): the modality it preprocesses.
        component: a tokenizer, image processor or feature extractor (transformers').
        source (`dict`, *optional*): the checkpoint it came from (`codebind_hf.encoders.pretrained.checkpoint_source`).
        max_length (`int`, *optional*): longest token sequence (text); default the tokenizer's own limit.
    """

    def __init__(self, modality: str, component, source: dict | None = None, max_length: int | None = None):
        self.modality = canonical_modality(modality)
        self.component = component
        self.kind = _kind_of(component)
        self.source = source
        limit = getattr(component, "model_max_length", None)
        self.max_length = max_length or (limit if limit and limit < _NO_LIMIT else None)

    @classmethod
    def from_spec(cls, modality: str, spec: dict, view=None, **hub) -> TowerProcessor:
        """The processor of a tower spec's checkpoint (``spec["checkpoint_processor"]`` picks the Auto class; default by
        modality, `default_kind`). ``view``: the tower's config, whose ``max_position_embeddings`` bounds text."""
        modality = canonical_modality(modality)
        source = checkpoint_source(spec)
        if source is None:
            raise ValueError(f"modalities[{modality!r}] names no pretrained checkpoint; its processor is CodeBind's own")
        kind = spec.get("checkpoint_processor", default_kind(modality))
        kwargs = {**hub, "revision": source.get("commit") or source.get("revision")}
        if source.get("subfolder"):
            kwargs["subfolder"] = source["subfolder"]
        try:
            component = load_component(kind, source["pretrained"], modality, **kwargs)
        except (OSError, ValueError) as err:
            raise OSError(
                f"modalities[{modality!r}]: the pretrained tower {source['pretrained']!r} has no loadable {kind} "
                f"({err}); save one beside its weights, or give the processor with tower_processors="
            ) from err
        text = view.get_text_config() if view is not None and modality == "text" else None
        if kind == "tokenizer" or _kind_of(component) == "tokenizer":
            _check_tokenizer(component, source["pretrained"], getattr(text, "vocab_size", None), modality)
        positions = getattr(text, "max_position_embeddings", None)
        limit = getattr(component, "model_max_length", None)
        limit = limit if limit and limit < _NO_LIMIT else None
        return cls(modality, component, source, min(x for x in (positions, limit) if x) if positions or limit else None)

    # ------------------------------------------------------------------------------------------ preprocessing
    def __call__(self, inputs, sampling_rate: int | None = None, text_options: dict | None = None) -> dict:
        """``{input key: tensor}`` for one modality's batch (``attention_mask`` too for text)."""
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise ValueError(f"{self.modality} inputs are empty; expected at least one item")
        if self.kind == "tokenizer":
            return self._text(items, text_options or {})
        if self.kind == "image_processor":
            images = [load_image(item) if isinstance(item, (str, Path)) else item for item in items]
            out = self.component(images=images, return_tensors="pt")
        else:
            out = self.component(self._waveforms(items, sampling_rate), sampling_rate=self._rate(), return_tensors="pt",
                                 **self._padding())
        main = self.component.model_input_names[0]
        return {INPUT_KEYS[self.modality]: out[main]}

    def _text(self, texts: list, options: dict) -> dict:
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"text must be a string or a list of strings, got {texts!r:.80}")
        given = {k: v for k, v in options.items() if v is not None}
        settings = {"padding": True, "truncation": True, "max_length": self.max_length, "return_attention_mask": True,
                    **given}
        encoded = self.component(texts, return_tensors="pt", **settings)
        keep = ("input_ids", "attention_mask") if settings["return_attention_mask"] else ("input_ids",)
        return {k: encoded[k] for k in keep}

    def _padding(self) -> dict:
        """``padding=True`` (to the longest) for an extractor whose ``padding`` is a switch that is off by default
        (wav2vec2's); one that pads by itself (CLAP's ``"repeatpad"``, Whisper's ``"max_length"``) is left to it."""
        parameter = inspect.signature(self.component.__call__).parameters.get("padding")
        return {"padding": True} if parameter is not None and parameter.default is False else {}

    def _rate(self) -> int | None:
        return getattr(self.component, "sampling_rate", None)

    def _waveforms(self, items: list, sampling_rate: int | None) -> list[np.ndarray]:
        """Mono float32 waveforms at the component's rate, from files (their own rate) or arrays (``sampling_rate``)."""
        rate = self._rate()
        waves = []
        for index, item in enumerate(items):
            if isinstance(item, (str, Path)):
                data, item_rate = read_audio(item)
            elif self.modality == "audio" and sampling_rate is None:
                raise ValueError("sampling_rate is required for audio arrays (e.g. sampling_rate=16000); files carry their own")
            else:
                data, item_rate = np.asarray(item.detach().cpu() if isinstance(item, torch.Tensor) else item), sampling_rate
            if self.modality != "audio":  # a sensor array goes to its extractor as it is
                waves.append(data)
                continue
            data = np.asarray(data, dtype=np.float32)
            if data.ndim == 2:
                data = data.mean(axis=0)  # (channels, samples) -> mono
            if data.ndim != 1:
                raise ValueError(f"audio[{index}] must be (samples,) or (channels, samples); got shape {data.shape}")
            if rate and item_rate and int(item_rate) != int(rate):
                data = resample(torch.from_numpy(data), int(item_rate), int(rate)).numpy()
            waves.append(data)
        return waves

    # ------------------------------------------------------------------------------------------ save / load
    def to_dict(self) -> dict:
        return {"kind": self.kind, "class": type(self.component).__name__, "source": self.source,
                "max_length": self.max_length, "folder": f"{FOLDER}/{self.modality}"}

    def __repr__(self) -> str:
        return f"TowerProcessor({self.modality!r}, {type(self.component).__name__}, source={self.source})"


class TowerProcessors(PushToHubMixin):
    """The tower processors of a [`CodeBindProcessor`], by modality (what its ``tower_processors`` holds).

    Example:

    ```python
    >>> from codebind_hf.processing_towers import TowerProcessors
    >>> towers = TowerProcessors()
    >>> bool(towers), "text" in towers, towers.to_dict()
    (False, False, {})

    ```
    """

    def __init__(self, processors: dict | None = None):
        self.processors: dict[str, TowerProcessor] = {}
        for modality, processor in (processors or {}).items():
            if isinstance(processor, dict):
                raise TypeError(
                    f"tower_processors[{modality!r}] is a description ({sorted(processor)}); load a saved processor "
                    "with CodeBindProcessor.from_pretrained(folder)"
                )
            if not isinstance(processor, TowerProcessor):
                processor = TowerProcessor(modality, processor)
            self.processors[processor.modality] = processor

    @classmethod
    def coerce(cls, value) -> TowerProcessors:
        """``None`` (no tower processors), an instance, or a dict modality -> `TowerProcessor` or component."""
        return value if isinstance(value, cls) else cls(value)

    @classmethod
    def from_config(cls, config, **hub) -> TowerProcessors:
        """One processor per tower of ``config`` (a [`CodeBindConfig`] or a model) that comes from a checkpoint,
        except those whose spec says ``processor: "codebind"``. ``hub``: ``cache_dir``, ``token``, ..."""
        config = getattr(config, "config", config)
        processors = {}
        for modality, spec in (config.modalities or {}).items():
            if spec.get("family") == "hf" and checkpoint_source(spec) and spec.get("checkpoint_processor") != "codebind":
                processors[modality] = TowerProcessor.from_spec(modality, spec, config.tower_config(modality), **hub)
        return cls(processors)

    def __contains__(self, modality) -> bool:
        return modality in self.processors

    def __len__(self) -> int:
        return len(self.processors)

    def __iter__(self):
        return iter(self.processors)

    def __getitem__(self, modality: str) -> TowerProcessor:
        return self.processors[modality]

    def __call__(self, given: dict, sampling_rate: int | None = None, text_options: dict | None = None) -> dict:
        """The input tensors of the modalities of ``given`` (modality -> raw inputs) that these processors cover."""
        data = {}
        for modality, inputs in given.items():
            if inputs is not None and modality in self.processors:
                data.update(self.processors[modality](inputs, sampling_rate, text_options))
        return data

    def refuse_videos(self, videos) -> None:
        """Videos go through CodeBind's clip sampler, for CodeBind's vision towers; a pretrained one takes images."""
        if videos is not None and "vision" in self.processors:
            raise ValueError(
                f"the vision tower comes from {self.processors['vision'].source} and takes images through its own "
                f"{type(self.processors['vision'].component).__name__}; videos are not supported for it"
            )

    def to_dict(self) -> dict:
        return {modality: processor.to_dict() for modality, processor in self.processors.items()}

    def __repr__(self) -> str:
        return f"TowerProcessors({list(self.processors.values())})"

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> list[str]:
        """Write each component into ``save_directory/towers/<modality>/`` (its own transformers files). Called by
        `CodeBindProcessor.save_pretrained` inside its atomic write."""
        written = []
        for modality, processor in self.processors.items():
            written += list(processor.component.save_pretrained(os.path.join(save_directory, FOLDER, modality)))
        return [str(path) for path in written]

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, described: dict | None, **hub) -> TowerProcessors:
        """The processors a saved `CodeBindProcessor` describes (``processor_config.json``'s ``tower_processors``),
        each read from its ``towers/<modality>/`` folder (locally, or from the Hub repo with ``hub`` kwargs)."""
        processors = {}
        base = hub.pop("subfolder", "") or ""
        for modality, entry in (described or {}).items():
            folder = "/".join(part for part in (base, entry["folder"]) if part)
            try:
                component = load_component(entry["kind"], str(name_or_path), modality, subfolder=folder, **hub)
            except (OSError, ValueError) as err:
                raise OSError(
                    f"{name_or_path}: the {modality} tower's {entry['kind']} ({folder}/) could not be read: {err}"
                ) from err
            processors[modality] = TowerProcessor(modality, component, entry.get("source"), entry.get("max_length"))
        return cls(processors)


__all__ = ["TowerProcessor", "TowerProcessors", "default_kind", "load_component", "KINDS"]
