"""Paired training data for a path: load a `datasets` dataset from anywhere, map its columns to modalities.

Sources (``data.dataset``): a `datasets.Dataset`/`DatasetDict` or a dict of columns (Python API); a local folder
written by ``save_to_disk``; a folder of parquet / arrow / csv / json(l) files; an ``imagefolder`` layout
(``split/class/*.png``); an audio-folder layout (``split/class/*.wav`` or ``*.npy``, read without `datasets`'
``Audio`` feature, which needs torchcodec); or a hub id (``load_dataset``).

Columns are mapped by modality (docs/training.md): the target and every bridge need a column (default: the
modality's name, ``image`` for vision); text comes from a caption column (a string or a list of strings) or,
when there is none, from a ``label`` column turned into prompts with templates. An optional ``grade`` column
(``data.columns.grade``) holds each pair's graded label in ``[0, 1]``, used as soft contrastive targets.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import DataArguments

# Processor keyword of each modality (CodeBindProcessor's signature).
PROCESSOR_ARGS = {
    "text": "text",
    "vision": "images",
    "audio": "audio",
    "depth": "depth",
    "thermal": "thermal",
    "imu": "imu",
    "tactile": "tactile",
    "eeg": "eeg",
    "point": "point_clouds",
}
# Column names tried, in order, when ``data.columns`` does not name one.
DEFAULT_COLUMNS = {
    "text": ("text", "caption", "captions"),
    "vision": ("image", "vision", "video", "pixel_values"),
    "label": ("label", "labels"),
    "sampling_rate": ("sampling_rate",),
}
# Prompt templates for class labels ("{}" is the class name); the collator draws one per row and epoch. Any
# template list of the benchmark data (codebind_hf/data/benchmarks/templates.json) is also a valid name:
# "openai_imagenet" is CLIP's 80 prompts, which the authors' datasets draw from at random for every class-label path.
TEMPLATE_SETS = {
    "plain": ("{}",),
    "an_image_of": ("an image of {}.",),  # the authors' EEG and Touch-and-Go training text (datasets/eeg.py, tag.py)
    "photo": (
        "a photo of a {}.",
        "a photo of the {}.",
        "a blurry photo of a {}.",
        "a close-up photo of a {}.",
        "a bright photo of a {}.",
        "a cropped photo of a {}.",
        "a photo of a small {}.",
        "a photo of a large {}.",
    ),
    "scene": ("a photo of a {}.", "a photo of the {}.", "a photo of a {} scene.", "a view of a {}."),
    "sound": ("the sound of {}.", "a recording of {}.", "audio of {}.", "the noise of {}."),
    "touch": ("the touch of {}.", "a surface made of {}.", "the feeling of {}."),
}
AUDIO_SUFFIXES = (".wav", ".npy")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}


@dataclass
class ColumnMap:
    """Which column feeds which modality, and where labels / sampling rates / captions come from."""

    modalities: dict  # non-text modality -> column
    text: str | None = None  # caption column (str or list of str per row)
    label: str | None = None
    sampling_rate: str | None = None
    grade: str | None = None  # per-row pair grade in [0, 1] (soft contrastive targets)

    def used(self) -> list[str]:
        cols = list(self.modalities.values()) + [c for c in (self.text, self.label, self.sampling_rate, self.grade) if c]
        return list(dict.fromkeys(cols))


def prompt_templates(spec) -> tuple[str, ...]:
    """A named template set (``TEMPLATE_SETS`` or a benchmark template list) or a list of ``"{}"`` templates."""
    if isinstance(spec, str):
        from ..evaluation.zero_shot import list_templates, load_templates

        if spec in TEMPLATE_SETS:
            return TEMPLATE_SETS[spec]
        if spec in list_templates():
            return tuple(load_templates(spec))
        known = sorted(set(TEMPLATE_SETS) | set(list_templates()))
        raise ValueError(f"Unknown prompt template set {spec!r}; expected one of {known} or a list")
    templates = tuple(spec or ())
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError(f"data.prompt_templates must be a set name or a list of strings containing '{{}}', got {spec!r}")
    return templates


# ---------------------------------------------------------------------------------------------- loading
def load_dataset_dict(args: DataArguments):
    """Load ``args.dataset`` as a `datasets.DatasetDict`; a single `Dataset` becomes the ``train`` split."""
    import datasets

    source = args.dataset
    if source is None:
        raise ValueError("data.dataset is not set: give a hub id, a local folder, or a Dataset/DatasetDict/dict")
    if isinstance(source, datasets.DatasetDict):
        result = source
    elif isinstance(source, datasets.Dataset):
        result = datasets.DatasetDict({args.train_split: source})
    elif isinstance(source, dict):
        result = datasets.DatasetDict({args.train_split: datasets.Dataset.from_dict(source)})
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        result = _empty_is_clear(source, lambda: _load_local(Path(source), args))
    elif isinstance(source, str):
        result = _empty_is_clear(source, lambda: datasets.load_dataset(source, name=args.name, revision=args.revision))
    else:
        raise TypeError(f"data.dataset must be a hub id, a folder, a Dataset, a DatasetDict or a dict; got {type(source).__name__}")
    if isinstance(result, datasets.Dataset):
        result = datasets.DatasetDict({args.train_split: result})
    return result


def _empty_is_clear(source, load):
    """``load()``, with the raw errors `datasets` raises on a source without rows (an IndexError for an empty
    ``save_to_disk`` folder, a StopIteration for an empty JSON file, "corresponds to no data") made clear."""
    try:
        return load()
    except (IndexError, StopIteration) as err:
        raise ValueError(f"the dataset at {source} has no rows (an empty dataset or data file); expected at least one") from err
    except ValueError as err:
        if "corresponds to no data" in str(err):
            raise ValueError(f"the dataset at {source} has no rows (its data files are empty); expected at least one") from err
        raise


def _load_local(root: Path, args: DataArguments):
    import datasets

    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return datasets.load_from_disk(str(root))
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    if not files:
        raise ValueError(f"{root} holds no data files (an empty folder); expected a save_to_disk folder, data files "
                         "or class folders of images or audio")
    suffixes = {p.suffix.lower() for p in files}
    for suffix, builder in FILE_BUILDERS.items():
        if suffix in suffixes and not suffixes & set(IMAGE_SUFFIXES + AUDIO_SUFFIXES):
            return datasets.load_dataset(builder, data_dir=str(root))
    if suffixes & set(AUDIO_SUFFIXES):
        return load_audio_folder(root)
    if suffixes & set(IMAGE_SUFFIXES):
        return datasets.load_dataset("imagefolder", data_dir=str(root))
    raise ValueError(
        f"Cannot tell the layout of {root}: expected a save_to_disk folder, parquet/arrow/csv/json files, "
        f"class folders of images ({', '.join(IMAGE_SUFFIXES)}) or of audio ({', '.join(AUDIO_SUFFIXES)}); "
        f"found suffixes {sorted(suffixes)}"
    )


def load_audio_folder(root: str | os.PathLike):
    """An audiofolder-like layout as a `DatasetDict`: ``[split/]class/file.wav|.npy`` -> ``audio`` (absolute file
    path, decoded per row at batch time) and ``label`` (`ClassLabel` from the folder names; only when every file
    sits in a class folder); a ``metadata.csv``/``metadata.jsonl`` with a ``file_name`` column (relative to the
    split folder) adds its other columns, e.g. captions."""
    import datasets

    root = Path(root)
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name in ("train", "validation", "test", "val")]
    splits = {("validation" if d.name == "val" else d.name): d for d in split_dirs} or {"train": root}
    result = {}
    for split, folder in splits.items():
        paths = sorted(p.resolve() for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not paths:
            raise ValueError(f"audio folder split {split!r} ({folder}) has no {AUDIO_SUFFIXES} files")
        columns = {"audio": [str(p) for p in paths]}
        metadata = {str((folder / row["file_name"]).resolve()): row for row in _read_metadata(folder)}
        for key in sorted({k for row in metadata.values() for k in row} - {"file_name"}):
            columns[key] = [metadata.get(str(p), {}).get(key) for p in paths]
        ds = datasets.Dataset.from_dict(columns)
        folder = folder.resolve()
        if "label" not in columns and all(p.parent != folder for p in paths):
            classes = sorted({p.parent.name for p in paths})
            ds = ds.add_column("label", [classes.index(p.parent.name) for p in paths])
            ds = ds.cast_column("label", datasets.ClassLabel(names=classes))
        result[split] = ds
    return datasets.DatasetDict(result)


def _read_metadata(folder: Path) -> list[dict]:
    import csv

    if (folder / "metadata.jsonl").is_file():
        return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    if (folder / "metadata.csv").is_file():
        with open(folder / "metadata.csv", newline="") as handle:
            return list(csv.DictReader(handle))
    return []


def get_split(dataset_dict, split: str, what: str = "training"):
    """The named split, refusing a missing or empty one with the available splits in the message."""
    if split not in dataset_dict:
        raise ValueError(f"The dataset has no {what} split {split!r}; its splits are {sorted(dataset_dict)}")
    ds = dataset_dict[split]
    if len(ds) == 0:
        files = [entry.get("filename") for entry in getattr(ds, "cache_files", None) or [] if entry.get("filename")]
        where = f" (read from {files[0]}{' and others' if len(files) > 1 else ''})" if files else " (built in memory)"
        raise ValueError(f"The {what} split {split!r} is empty (0 rows){where}; check the dataset path and any filters")
    return ds


def default_eval_split(dataset_dict, args: DataArguments) -> str | None:
    if args.eval_split is not None:
        return args.eval_split
    for name in ("validation", "valid", "val", "test"):
        if name in dataset_dict and name != args.train_split:
            return name
    return None


# ---------------------------------------------------------------------------------------------- columns
def _find_column(available: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in available), None)


def _missing(what: str, name: str, available: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{what}: column {name!r} not found{hint}. Available columns: {available}")


def resolve_columns(dataset, modalities: list[str], args: DataArguments) -> ColumnMap:
    """Map every modality of the path to a column of ``dataset``, with errors that name the missing column."""
    from ..modalities import canonical_modality

    available = list(dataset.column_names)
    given = {}
    for key, column in (args.columns or {}).items():
        name = key if key in ("label", "sampling_rate", "grade") else canonical_modality(key)
        if column is not None and column not in available:
            raise _missing(f"data.columns.{key}", column, available)
        given[name] = column
    mapping = ColumnMap(modalities={})
    for modality in modalities:
        if modality == "text":
            continue
        column = given.get(modality) or _find_column(available, DEFAULT_COLUMNS.get(modality, (modality,)))
        if column is None:
            tried = DEFAULT_COLUMNS.get(modality, (modality,))
            raise ValueError(
                f"No column for modality {modality!r} (tried {list(tried)}); set data.columns.{modality}=<column>. "
                f"Available columns: {available}"
            )
        mapping.modalities[modality] = column
    mapping.label = given.get("label") or _find_column(available, DEFAULT_COLUMNS["label"])
    if "text" in modalities:
        mapping.text = given.get("text") if "text" in given else _find_column(available, DEFAULT_COLUMNS["text"])
        if mapping.text is None and mapping.label is None:
            raise ValueError(
                "Text is a bridge but the dataset has neither a caption column (tried 'text', 'caption', 'captions'; "
                f"set data.columns.text) nor a label column to build prompts from (set data.columns.label). Available: {available}"
            )
    mapping.grade = given.get("grade")  # never guessed: grades change the loss
    if "audio" in mapping.modalities:
        mapping.sampling_rate = given.get("sampling_rate") or _find_column(available, DEFAULT_COLUMNS["sampling_rate"])
    return mapping


def class_names(dataset, columns: ColumnMap, args: DataArguments) -> list[str] | None:
    """Label names: ``data.class_names``, the `ClassLabel` names, or the sorted distinct string labels."""
    import datasets

    if columns.label is None:
        return None
    if args.class_names:
        return [str(name) for name in args.class_names]
    feature = dataset.features[columns.label]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    values = dataset[columns.label]
    if all(isinstance(v, str) for v in values if v is not None):
        return sorted({v for v in values if v is not None})
    raise ValueError(
        f"Label column {columns.label!r} holds {feature} values without names; set data.class_names "
        "(index i is the name of label i) or use a ClassLabel / string column"
    )


def prepare_columns(dataset, columns: ColumnMap):
    """Keep only the used columns; images and audio are decoded per row by the collator (bad files are then
    caught per row), so `datasets`' own decoding is switched off where it would otherwise run."""
    import datasets

    dataset = dataset.select_columns(columns.used())
    for column in columns.modalities.values():
        feature = dataset.features[column]
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        elif isinstance(feature, datasets.Audio) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    return dataset


__all__ = [
    "PROCESSOR_ARGS",
    "TEMPLATE_SETS",
    "ColumnMap",
    "prompt_templates",
    "load_dataset_dict",
    "load_audio_folder",
    "get_split",
    "default_eval_split",
    "resolve_columns",
    "class_names",
    "prepare_columns",
]
