"""The benchmark suite: one `BenchmarkDefinition` per benchmark of the CodeBind tables, and named suites.

``BENCHMARKS`` holds the 17 benchmarks of CodeBind-IB (Table 1/2 of the paper) and the CodeBind-VL extras
(ModelNet40, ImageNet-EEG with the ViT-Lens val+test protocol); ``SUITES`` groups them (``"ib17"``, ``"vl"``).
Class names and prompt templates are package data (`codebind_hf.evaluation.zero_shot`); a definition only names them.
Paper numbers are percentages, as printed; the metric functions return fractions in ``[0, 1]``.

Example:

```python
>>> from codebind_hf.evaluation.suite import BENCHMARKS, SUITES
>>> len(SUITES["ib17"]), BENCHMARKS["esc50"].num_classes, BENCHMARKS["esc50"].splits[:2]
(17, 50, ('fold1', 'fold2'))
>>> BENCHMARKS["audioset"].paper_results["CodeBind-IB"]
{'mAP': 21.1}

```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..modalities import MODALITIES
from .zero_shot import load_class_info, load_prompt_names, load_templates

from .metrics import mean_average_precision, recall_at_k, top_k_accuracy

METRICS_DIR = Path(__file__).parent.parent / "data" / "metrics"
TASKS = ("zero_shot_classification", "retrieval")
# What the files of a benchmark hold; one modality can have several (vision: images or videos).
INPUT_KINDS = ("image", "video", "audio", "depth", "thermal", "imu", "tactile", "eeg", "point")
KIND_MODALITY = {"image": "vision", "video": "vision", "audio": "audio", "depth": "depth", "thermal": "thermal",
                 "imu": "imu", "tactile": "tactile", "eeg": "eeg", "point": "point"}
# Which evaluate module computes a metric name, and with which arguments.
METRIC_MODULES = {"accuracy@1": ("zero_shot_accuracy", {"k": 1}), "accuracy@5": ("zero_shot_accuracy", {"k": 5}),
                  "mAP": ("mean_average_precision", {}), "recall@1": ("recall_at_k", {"k": [1]}),
                  "recall@5": ("recall_at_k", {"k": [5]}), "recall@10": ("recall_at_k", {"k": [10]})}
SPLIT_AGGREGATIONS = ("single", "mean", "separate")

FILE_FORMATS = {
    "image": "an RGB image file (.png, .jpg, .jpeg, .bmp, .webp)",
    "video": "a video file (.mp4, .avi, .mkv, .webm, .mov; decoded by the processor with PyAV), or a .npy uint8 "
             "frame array (T, H, W, 3) or a folder of frame images read in name order, with an 'fps' field",
    "audio": "a PCM .wav file (its own sample rate), or a .npy float waveform (samples,) or (channels, samples) "
             "with a 'sampling_rate' field",
    "depth": "a .npy float (H, W) depth map in metres, or a 16-bit .png depth map in millimetres ('depth_scale' "
             "field: units per metre, default 1000)",
    "thermal": "a grayscale image file (.png, .jpg, .jpeg, .bmp, .tif, .tiff)",
    "tactile": "an RGB tactile (GelSight) image file (.png, .jpg, .jpeg, .bmp)",
    "imu": "a .npy float array (6, T): accelerometer xyz + gyroscope xyz",
    "eeg": "a .npy float array (channels, T), 128 channels",
    "point": "a .npy float array (N, 3) or (N, 6), or a .txt/.csv file with one 'x,y,z[,nx,ny,nz]' row per point",
}


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face dataset known to hold a benchmark, and how its columns map to the normalised examples.

    ``filter_column`` / ``filter_values`` select our split inside one HF split (ESC-50's folds: ``{"fold1": 1}``).
    ``label_kind`` says what the label column holds: ``"index"`` (our class index), ``"name"`` (a class name) or
    ``"id"`` (a WordNet id, AudioSet MID, ...).
    """

    dataset_id: str
    split: str
    input_column: str
    label_column: str | None = None
    label_kind: str = "index"
    captions_column: str | None = None
    config: str | None = None
    filter_column: str | None = None
    filter_values: Mapping[str, object] = field(default_factory=dict)
    notes: str = ""

    def __hash__(self) -> int:  # the mapping field is not hashable; the id, split and config identify a source
        return hash((self.dataset_id, self.split, self.config, self.input_column))


@dataclass(frozen=True)
class BenchmarkDefinition:
    """One benchmark: what is embedded, how it is scored, where the data comes from, what the paper reports.

    Attributes:
        name (`str`): identifier, also the folder name of the local layout (``"in1k"``).
        display_name (`str`): the column name of the paper's table (``"IN1K"``).
        modality (`str`): canonical modality of the inputs (``"vision"``, ``"audio"``, ...).
        input_kind (`str`): what the files hold (``"image"`` or ``"video"`` for vision, else the modality).
        task (`str`): ``"zero_shot_classification"`` or ``"retrieval"`` (text queries against the inputs).
        metrics (`tuple[str]`): metric names, keys of ``METRIC_MODULES`` (``"accuracy@1"``, ``"mAP"``, ``"recall@10"``).
        splits (`tuple[str]`): evaluation splits (local sub-folders); ``split_aggregation`` says how their results
            combine: ``"single"``, ``"mean"`` (ESC-50's 5 folds) or ``"separate"`` (reported one by one).
        templates (`str`, *optional*): name of the default prompt-template list (classification only).
        alt_templates (`tuple[str]`): other shipped template lists used by related code.
        multi_label (`bool`): references are lists of labels (AudioSet).
        class_file (`str`, *optional*): which shipped class list to use (defaults to ``name``).
        protocol (`str`): evaluation protocol notes.
        paper_results (`dict`): model -> metric -> value in percent, from the CodeBind paper.
        hf_sources (`tuple[HFSource]`): known Hugging Face datasets; ``hf_notes`` says what is known or not.
        local_notes (`str`): benchmark-specific additions to the local layout (see `local_schema`).
    """

    name: str
    display_name: str
    modality: str
    input_kind: str
    task: str
    metrics: tuple[str, ...]
    splits: tuple[str, ...] = ("test",)
    split_aggregation: str = "single"
    templates: str | None = None
    alt_templates: tuple[str, ...] = ()
    multi_label: bool = False
    class_file: str | None = None
    protocol: str = ""
    paper_results: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    hf_sources: tuple[HFSource, ...] = ()
    hf_notes: str = "none known"
    local_notes: str = ""

    def __hash__(self) -> int:  # mapping fields are not hashable; the name identifies a benchmark
        return hash(self.name)

    def __post_init__(self):
        problems = []
        if self.modality not in MODALITIES:
            problems.append(f"modality {self.modality!r} is not one of {MODALITIES}")
        if self.input_kind not in INPUT_KINDS or KIND_MODALITY[self.input_kind] != self.modality:
            problems.append(f"input_kind {self.input_kind!r} does not belong to modality {self.modality!r}")
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not one of {TASKS}")
        unknown = [m for m in self.metrics if m not in METRIC_MODULES]
        if unknown or not self.metrics:
            problems.append(f"metrics {unknown or '()'} not in {sorted(METRIC_MODULES)}")
        if not self.splits or self.split_aggregation not in SPLIT_AGGREGATIONS:
            problems.append(f"need splits and split_aggregation in {SPLIT_AGGREGATIONS}")
        if (self.split_aggregation == "single") != (len(self.splits) == 1):
            problems.append("split_aggregation 'single' goes with exactly one split")
        classification = self.task == "zero_shot_classification"
        if classification != (self.templates is not None):
            problems.append("zero-shot classification needs a templates name; retrieval has none")
        if problems:
            raise ValueError(f"benchmark {self.name!r}: " + "; ".join(problems))

    # ------------------------------------------------------------------ classes and prompts
    @property
    def class_names(self) -> list[str] | None:
        """Class names in label-index order (package data), or ``None`` for retrieval."""
        if self.task != "zero_shot_classification":
            return None
        return load_class_info(self.class_file or self.name)["class_names"]

    @property
    def num_classes(self) -> int | None:
        names = self.class_names
        return None if names is None else len(names)

    @property
    def class_ids(self) -> list[str] | None:
        """Dataset ids of the classes (WordNet ids, AudioSet MIDs, Places365 paths) when the class file has them."""
        if self.task != "zero_shot_classification":
            return None
        return load_class_info(self.class_file or self.name).get("ids")

    def prompt_names(self, use_prompt_names: bool = True) -> list[list[str]] | None:
        """The names embedded per class (several for NYU-D's "other" or LLVIP); ``[[name], ...]`` otherwise."""
        if self.task != "zero_shot_classification":
            return None
        if not use_prompt_names:
            return [[name] for name in self.class_names]
        return load_prompt_names(self.class_file or self.name)

    def prompt_templates(self) -> list[str] | None:
        return None if self.templates is None else load_templates(self.templates)

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, predictions, references) -> dict[str, float]:
        """All of the benchmark's metrics, as fractions.

        Args:
            predictions (`np.ndarray`): classification: scores `(num_samples, num_classes)`; retrieval: similarity
                `(num_captions, num_items)` of the text queries to the items.
            references: classification: labels `(num_samples,)`, or multi-hot `(num_samples, num_classes)` when
                ``multi_label``; retrieval: for each caption, the list of its relevant item indices.
        """
        out: dict[str, float] = {}
        recall_ks = [int(m.split("@")[1]) for m in self.metrics if m.startswith("recall@")]
        if recall_ks:
            out.update(recall_at_k(predictions, references, k=recall_ks))
        for metric in self.metrics:
            if metric.startswith("accuracy@"):
                out[metric] = top_k_accuracy(predictions, references, k=int(metric.split("@")[1]))
            elif metric == "mAP":
                out[metric] = mean_average_precision(predictions, np.asarray(references))
        return {m: out[m] for m in self.metrics}

    def metric_modules(self) -> list[tuple[str, dict]]:
        """``(path of the evaluate module, compute kwargs)`` for each metric, for ``evaluate.load(path)``."""
        return [(metric_path(METRIC_MODULES[m][0]), dict(METRIC_MODULES[m][1])) for m in self.metrics]

    # ------------------------------------------------------------------ data layout
    @property
    def local_schema(self) -> str:
        """The local directory layout this benchmark's adapter reads."""
        if self.task == "retrieval":
            target = ("'captions': a non-empty list of strings (CSV: a 'captions' column holding a JSON list, or a "
                      "'caption' column with one row per caption, rows of the same file grouped)")
        elif self.multi_label:
            target = ("'labels': a list of class indices, class names or class ids (CSV: a 'labels' column, "
                      "entries separated by ';')")
        else:
            target = "'label': a class index, a class name or a class id"
        crop = (" Optional 'bbox': [x1, y1, x2, y2] in pixels; the crop is the input."
                if self.input_kind in ("image", "thermal", "tactile") else "")
        splits = ", ".join(self.splits)
        return (f"<root>/{self.name}/<split>/metadata.jsonl (or metadata.csv) with one record per item, split in "
                f"({splits}): 'file' = path relative to the split folder of {FILE_FORMATS[self.input_kind]}; "
                f"{target}; optional 'id'.{crop}" + (f" {self.local_notes}" if self.local_notes else ""))


def metric_path(name: str) -> str:
    """Path of one of our `evaluate` metric modules (``evaluate.load(metric_path("recall_at_k"))``)."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise KeyError(f"no metric module {name!r} in {METRICS_DIR}")
    return str(path)


def load_metric(name: str):
    """``evaluate.load`` of one of our metric modules, by path (no Hub access)."""
    import evaluate

    return evaluate.load(metric_path(name))


def _classification(name, display, modality, kind, templates, results, metrics=("accuracy@1",), **kwargs):
    return BenchmarkDefinition(name=name, display_name=display, modality=modality, input_kind=kind,
                               task="zero_shot_classification", metrics=metrics, templates=templates,
                               paper_results=results, **kwargs)


def _retrieval(name, display, modality, kind, metrics, results, **kwargs):
    return BenchmarkDefinition(name=name, display_name=display, modality=modality, input_kind=kind, task="retrieval",
                               metrics=metrics, paper_results=results, **kwargs)


def _ib(imagebind: float | tuple, codebind: float | tuple, metrics=("accuracy@1",)) -> dict:
    imagebind, codebind = np.atleast_1d(imagebind), np.atleast_1d(codebind)
    return {"ImageBind": dict(zip(metrics, map(float, imagebind))), "CodeBind-IB": dict(zip(metrics, map(float, codebind)))}


_CB = "CodeBind's evaluation embeds CLIP's 80 ImageNet templates for every zero-shot benchmark."
_ESC_FOLDS = tuple(f"fold{i}" for i in range(1, 6))
_DEFINITIONS = [
    _classification(
        "in1k", "IN1K", "vision", "image", "openai_imagenet", _ib(77.7, 79.3), splits=("val",),
        alt_templates=("openai_imagenet_simple",),
        protocol="ImageNet-1k validation set (50,000 images), Acc@1; image-text is the frozen bridge. " + _CB,
        hf_sources=(HFSource("ILSVRC/imagenet-1k", "validation", "image", "label",
                             notes="Gated: accept the terms and log in. 'label' is a ClassLabel in the standard "
                                   "sorted-WordNet-id order, the order of our class list."),)),
    _classification(
        "p365", "P365", "vision", "image", "openai_imagenet", _ib(45.4, 55.5), splits=("val",),
        alt_templates=("scene",),
        protocol="Places365-Standard validation set (36,500 images), Acc@1. " + _CB),
    _classification(
        "k400", "K400", "vision", "video", "openai_imagenet", _ib(50.5, 54.4), splits=("val",),
        alt_templates=("kinetics",),
        protocol="Kinetics-400 validation set, Acc@1; clips of 2 frames (ImageBind: 5 clips x 3 spatial crops, our "
                 "processor takes the centre crop), clip embeddings averaged. " + _CB + " CLIP's Kinetics prompts "
                 "are shipped as 'kinetics'."),
    _retrieval(
        "msrvtt", "MSR-VTT", "vision", "video", ("recall@1",), _ib(36.1, 37.8, ("recall@1",)),
        protocol="MSR-VTT 1k-A test split (1,000 videos, one caption each), text-to-video Recall@1.",
        hf_notes="none known matching the 1k-A protocol (mteb/MSR-VTT holds an 879-row test subset with video, audio "
                 "and caption columns; its video feature needs a video decoder)."),
    _classification(
        "nyu_d", "NYU-D", "depth", "depth", "openai_imagenet", _ib(54.0, 59.3), alt_templates=("scene",),
        protocol="NYU Depth v2 test set (654 images), depth only (converted to disparity), Acc@1 over 10 classes: 9 "
                 "benchmark scenes + 'other'. 27 names are embedded (the 9 scenes and 18 non-benchmark NYU scene "
                 "names that all count as 'other'); a class scores the max over its names. " + _CB,
        local_notes="Labels use the 10 benchmark classes (any non-benchmark scene is 'other')."),
    _classification(
        "sun_d", "SUN-D", "depth", "depth", "openai_imagenet", _ib(35.1, 45.7), alt_templates=("scene",),
        protocol="SUN RGB-D validation set (4,659 images in ViT-Lens's SUN-RGBD_val split), depth only (disparity), "
                 "Acc@1 over 19 scene classes. " + _CB),
    _classification(
        "audioset", "AudioSet", "audio", "audio", "openai_imagenet", _ib(17.6, 21.1, ("mAP",)), metrics=("mAP",),
        multi_label=True, alt_templates=("sound_as_image", "sound"),
        protocol="AudioSet evaluation set (eval_segments, 20,371 segments when released; fewer are downloadable), "
                 "audio only, multi-label, 527 classes; mAP macro over the classes with a positive. " + _CB,
        hf_sources=(HFSource("agkphysics/AudioSet", "test", "audio", "labels", label_kind="id", config="balanced",
                             notes="'test' is the eval set (17,142 clips downloaded in 2023); 'labels' holds MIDs. "
                                   "It is a loading-script dataset (not loadable with datasets>=4) with FLAC audio "
                                   "(needs the soundfile package here)."),)),
    _classification(
        "vggsound", "VGGS", "audio", "audio", "openai_imagenet", _ib(27.8, 30.5), alt_templates=("sound_as_image",),
        protocol="VGGSound test set, audio only, Acc@1 over 309 classes. " + _CB),
    _classification(
        "esc50", "ESC", "audio", "audio", "openai_imagenet", _ib(66.9, 71.0), splits=_ESC_FOLDS,
        split_aggregation="mean", alt_templates=("sound_as_image", "identity"),
        protocol="ESC-50 (2,000 clips of 5 s), the 5 official folds evaluated one by one and averaged (zero-shot: "
                 "nothing is trained on the folds), Acc@1. " + _CB,
        hf_sources=(HFSource("ashraq/esc50", "train", "audio", "target", filter_column="fold",
                             filter_values={f"fold{i}": i for i in range(1, 6)},
                             notes="Columns filename, fold, target, category, esc10, src_file, take, audio "
                                   "(44.1 kHz wav). One 'train' split of 2,000 clips; 'fold' selects our split."),)),
    _retrieval(
        "clotho", "Clotho", "audio", "audio", ("recall@1", "recall@10"), _ib((6.0, 28.4), (6.9, 28.6), ("recall@1", "recall@10")),
        protocol="Clotho v1 evaluation split (1,045 clips x 5 captions), text-to-audio Recall@1/@10; a caption is a "
                 "hit when its own clip is in the top k.",
        hf_sources=(HFSource("mteb/Clotho", "test", "audio", captions_column="raw_text",
                             notes="1,045 rows; 'raw_text' holds the captions list, 'text' one caption. The audio "
                                   "must be wav for our decoder (or install soundfile)."),)),
    _retrieval(
        "audiocaps", "AudioCaps", "audio", "audio", ("recall@1", "recall@10"),
        _ib((9.3, 42.3), (13.3, 53.8), ("recall@1", "recall@10")),
        protocol="AudioCaps test split as evaluated for ImageBind (813 clips x 5 captions, ViT-Lens's "
                 "audiocaps_test_ib list), text-to-audio Recall@1/@10."),
    _classification(
        "llvip", "LLVIP", "thermal", "thermal", "openai_imagenet", _ib(63.4, 95.5),
        protocol="LLVIP test set, thermal crops: pedestrian boxes (> 10 px a side) vs background crops; 2 classes, "
                 "'person' embedded as person/man/woman/people and 'background' as street/road/car/light/tree, a "
                 "class scoring the max over its names (prompt_names; the active official code embeds the two "
                 "names only). " + _CB),
    _classification(
        "flir_v2", "FLIR v2", "thermal", "thermal", "openai_imagenet", _ib(46.6, 97.2),
        protocol="FLIR ADAS v2 thermal video test set, object crops (boxes > 10 px a side) of 10 categories, Acc@1. "
                 + _CB),
    _classification(
        "tag_material", "TAG-M", "tactile", "tactile", "openai_imagenet", _ib(24.2, 42.6),
        alt_templates=("tactile_material",),
        protocol="Touch-and-Go test split (material labels), GelSight frames, Acc@1 over 20 materials. " + _CB),
    _classification(
        "tag_hard_soft", "TAG-H/S", "tactile", "tactile", "openai_imagenet", _ib(65.7, 83.9),
        alt_templates=("tactile_property",),
        protocol="Touch-and-Go test split, hard vs soft, Acc@1. " + _CB),
    _classification(
        "tag_rough_smooth", "TAG-R/S", "tactile", "tactile", "openai_imagenet", _ib(69.8, 78.2),
        alt_templates=("tactile_property",),
        protocol="Touch-and-Go rough/smooth test split, Acc@1. " + _CB),
    _classification(
        "in_eeg", "IN-EEG", "eeg", "eeg", "openai_imagenet", _ib(18.4, 33.1), alt_templates=("eeg",),
        protocol="ImageNet-EEG (Spampinato et al. 2017; eeg_5_95_std), test part of split 0 of "
                 "block_splits_by_image_all, samples with 450-600 time steps; time steps 20-460 resampled to 512, "
                 "128 channels; Acc@1 over 40 ImageNet classes. " + _CB,
        local_notes="Store the EEG already cut and resampled to (128, 512), as the official preprocessing does."),
    # CodeBind-VL extras (ViT-Lens protocols).
    _classification(
        "modelnet40", "ModelNet40", "point", "point", "modelnet40_64",
        {"ViT-Lens": {"accuracy@1": 70.6, "accuracy@5": 94.4}, "CodeBind-VL": {"accuracy@1": 78.3, "accuracy@5": 96.5}},
        metrics=("accuracy@1", "accuracy@5"),
        protocol="ModelNet40 test set (2,468 shapes, ULIP's modelnet40_normal_resampled, 8,192 points), Acc@1/@5, "
                 "ULIP's 64 point-cloud templates."),
    _classification(
        "in_eeg_vl", "IN-EEG (val/test)", "eeg", "eeg", "eeg", {}, splits=("val", "test"),
        split_aggregation="separate", class_file="in_eeg", alt_templates=("openai_imagenet",),
        protocol="ImageNet-EEG with ViT-Lens's protocol: the val and test parts of split 0 reported separately, "
                 "3 EEG templates; preprocessing as in_eeg. The method notes give no numbers for it.",
        local_notes="Store the EEG already cut and resampled to (128, 512)."),
]

BENCHMARKS: dict[str, BenchmarkDefinition] = {d.name: d for d in _DEFINITIONS}
SUITES: dict[str, list[str]] = {
    "ib17": ["in1k", "p365", "k400", "msrvtt", "nyu_d", "sun_d", "audioset", "vggsound", "esc50", "clotho",
             "audiocaps", "llvip", "flir_v2", "tag_material", "tag_hard_soft", "tag_rough_smooth", "in_eeg"],
    "vl": ["modelnet40", "in_eeg_vl"],
}


def get_benchmark(name) -> BenchmarkDefinition:
    """A definition by name (case-insensitive), or the definition itself."""
    if isinstance(name, BenchmarkDefinition):
        return name
    key = str(name).lower()
    if key not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[key]


def get_suite(name: str) -> list[BenchmarkDefinition]:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {sorted(SUITES)}")
    return [BENCHMARKS[n] for n in SUITES[name]]


__all__ = [
    "BENCHMARKS",
    "SUITES",
    "BenchmarkDefinition",
    "HFSource",
    "METRIC_MODULES",
    "INPUT_KINDS",
    "FILE_FORMATS",
    "get_benchmark",
    "get_suite",
    "metric_path",
    "load_metric",
]
