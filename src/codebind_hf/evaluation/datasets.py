"""Dataset adapters: read a benchmark from a local folder or a Hugging Face dataset, yield normalised examples.

Every adapter yields dicts with

- ``"id"``: a string naming the item;
- ``"input"``: what the processor takes for the benchmark's input kind: an image path (or a cropped ``np.ndarray``),
  a video file path or a ``(T, H, W, 3)`` frame array, a wav path or a waveform array, a depth map in metres, a sensor array, a point
  cloud;
- ``"sampling_rate"``: for audio, the rate of an array input (``None`` for a wav path, which carries its own);
- ``"fps"``: for video, the frame rate of a frame array (``None`` for a video file, decoded by the processor);
- ``"label"``: classification: an ``int`` class index, or a ``list[int]`` when the benchmark is multi-label;
- ``"captions"``: retrieval: a ``list[str]``.

A runner does, per benchmark: ``for batch in adapter.batches(n): processor(**processor_inputs(definition, batch))``
→ ``model.get_features(definition.modality, ...)`` → scores → ``definition.compute_metrics`` (with `label_array`
or `retrieval_targets`). Adapters are sized and indexable (``adapter[i]``), and ``adapter.targets()`` gives every
label or caption list without reading the inputs, so a runner can shard the items across processes
(``codebind_hf.evaluation.cli``, console script ``codebind-bench``).

The local layout is ``<root>/<benchmark>/<split>/metadata.jsonl`` (or ``metadata.csv``) plus the files it names;
`BenchmarkDefinition.local_schema` spells it out per benchmark. A missing folder, file or field raises an error that
names it and states the expected schema. Audio in Hugging Face datasets is read from the raw bytes (wav, or any
format ``soundfile`` reads when it is installed): the ``datasets`` Audio decoder is never used.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .suite import BenchmarkDefinition, HFSource, get_benchmark

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
EXTENSIONS = {
    "image": {".png", ".jpg", ".jpeg", ".bmp", ".webp"},
    "thermal": {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"},
    "tactile": {".png", ".jpg", ".jpeg", ".bmp"},
    "video": {".mp4", ".avi", ".mkv", ".webm", ".mov", ".npy", ""},  # "" = a folder of frames
    "audio": {".wav", ".npy"},
    "depth": {".npy", ".png"},
    "imu": {".npy"},
    "eeg": {".npy"},
    "point": {".npy", ".txt", ".csv"},
}
PROCESSOR_ARGUMENT = {"image": "images", "video": "videos", "audio": "audio", "depth": "depth", "thermal": "thermal",
                      "tactile": "tactile", "imu": "imu", "eeg": "eeg", "point": "point_clouds"}


class BenchmarkDataError(ValueError):
    """A benchmark's data does not follow the expected layout (the message names the piece and the schema)."""


# ---------------------------------------------------------------------------------------------- labels
class LabelResolver:
    """Turns a label given as an index, a class name or a class id (WordNet id, AudioSet MID, ...) into an index."""

    def __init__(self, definition: BenchmarkDefinition):
        self.names = definition.class_names or []
        by_name: dict[str, list[int]] = {}
        for index, name in enumerate(self.names):
            by_name.setdefault(name, []).append(index)
        for index, class_id in enumerate(definition.class_ids or []):
            by_name.setdefault(class_id, []).append(index)
        self.lookup = by_name
        self.benchmark = definition.name

    def __call__(self, value, where: str) -> int:
        if isinstance(value, (bool, np.bool_)):
            raise BenchmarkDataError(f"{where}: label {value!r} is a boolean; expected a class index or name")
        if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            index = int(value)
            if not 0 <= index < len(self.names):
                raise BenchmarkDataError(f"{where}: label {index} is out of range for {self.benchmark} ({len(self.names)} classes)")
            return index
        if isinstance(value, str):
            hits = self.lookup.get(value.strip(), [])
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise BenchmarkDataError(f"{where}: class name {value!r} is ambiguous in {self.benchmark} (indices {hits}); give the index or the class id")
            raise BenchmarkDataError(f"{where}: unknown class {value!r} for {self.benchmark}; expected an index, one of its class names or ids")
        raise BenchmarkDataError(f"{where}: label {value!r} must be an int index or a class name")

    def many(self, values, where: str) -> list[int]:
        if isinstance(values, str):
            values = [v for v in values.split(";") if v.strip()]
        if not isinstance(values, (list, tuple, np.ndarray)) or len(values) == 0:
            raise BenchmarkDataError(f"{where}: 'labels' must be a non-empty list of class indices, names or ids")
        return sorted({self(v, where) for v in values})


# ---------------------------------------------------------------------------------------------- input loading
def _crop(path: Path, bbox, where: str) -> np.ndarray:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise BenchmarkDataError(f"{where}: 'bbox' must be [x1, y1, x2, y2], got {bbox!r}")
    x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
    with Image.open(path) as image:
        if not (0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height):
            raise BenchmarkDataError(f"{where}: bbox {bbox} is empty or outside the {image.width}x{image.height} image {path}")
        return np.asarray(image.crop((x1, y1, x2, y2)))


def _load_npy(path: Path, where: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise BenchmarkDataError(f"{where}: {path} is not a plain numeric .npy array ({err})") from err


def load_input(kind: str, path: Path, record: dict, where: str = ""):
    """The processor-ready input of one local file: ``(input, rate)``, the rate being the sampling rate of an audio
    array or the frame rate of a video frame array (``None`` otherwise)."""
    where = where or str(path)
    if kind in ("image", "thermal", "tactile"):
        return (_crop(path, record["bbox"], where) if record.get("bbox") is not None else str(path)), None
    if kind == "video":
        if path.suffix.lower() in (".mp4", ".avi", ".mkv", ".webm", ".mov"):
            return str(path), None  # decoded by the processor (PyAV), which reads the frame rate from the file
        fps = record.get("fps")
        if fps is None or float(fps) <= 0:
            raise BenchmarkDataError(f"{where}: frame array/folder {path.name} needs a positive 'fps' field (frames per second)")
        if path.is_dir():
            frames = sorted(p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS["image"])
            if not frames:
                raise BenchmarkDataError(f"{where}: frame folder {path} holds no image files")
            array = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in frames])
        else:
            array = _load_npy(path, where)
        if array.ndim != 4 or array.shape[-1] != 3:
            raise BenchmarkDataError(f"{where}: video {path} must be frames (T, H, W, 3); got shape {array.shape}")
        return array, float(fps)
    if kind == "audio":
        if path.suffix.lower() == ".wav":
            return str(path), None
        rate = record.get("sampling_rate")
        if rate is None:
            raise BenchmarkDataError(f"{where}: .npy waveform {path.name} needs a 'sampling_rate' field (Hz)")
        return _load_npy(path, where).astype(np.float32), int(rate)
    if kind == "depth":
        if path.suffix.lower() == ".png":
            with Image.open(path) as image:
                array = np.asarray(image, dtype=np.float32)
            return array / float(record.get("depth_scale", 1000.0)), None
        return _load_npy(path, where).astype(np.float32), None
    if kind == "point" and path.suffix.lower() in (".txt", ".csv"):
        return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2), None
    return _load_npy(path, where).astype(np.float32), None


def decode_audio_bytes(data: bytes, where: str) -> tuple[np.ndarray, int]:
    """Waveform `(channels, samples)` and rate from encoded bytes: wav with the standard library, other formats with
    ``soundfile`` when installed."""
    if data[:4] == b"RIFF":
        with wave.open(io.BytesIO(data)) as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
        if width not in (1, 2, 4):
            raise BenchmarkDataError(f"{where}: unsupported wav sample width {8 * width} bits (expected 8, 16 or 32)")
        dtype, scale = {1: (np.uint8, 128.0), 2: ("<i2", 32768.0), 4: ("<i4", 2147483648.0)}[width]
        array = np.frombuffer(raw, dtype=dtype).astype(np.float32)
        array = (array - 128.0) / scale if width == 1 else array / scale
        return array.reshape(-1, channels).T.copy(), rate
    try:
        import soundfile
    except ImportError as err:
        raise BenchmarkDataError(
            f"{where}: audio bytes are not wav (starts with {data[:4]!r}); install soundfile to read them, or convert the "
            "dataset to wav / the local layout"
        ) from err
    array, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return array.T.copy(), int(rate)


# ---------------------------------------------------------------------------------------------- adapters
class BenchmarkAdapter:
    """Base class: a sized iterable of normalised examples for one benchmark split."""

    definition: BenchmarkDefinition
    split: str

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        """The normalised example at ``index`` (its input is read now); random access lets a runner shard the items."""
        raise NotImplementedError

    def targets(self) -> list:
        """Every item's label (classification) or caption list (retrieval), in item order, without reading inputs."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        for index in range(len(self)):
            yield self[index]

    def batches(self, batch_size: int) -> Iterator[list[dict]]:
        """Lists of at most ``batch_size`` consecutive examples."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch = []
        for example in self:
            batch.append(example)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def _read_metadata(folder: Path, schema: str) -> tuple[Path, list[tuple[int, dict]]]:
    for name in METADATA_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        raise BenchmarkDataError(f"no {' or '.join(METADATA_FILES)} in {folder}. Expected schema: {schema}")
    records = []
    with open(path, encoding="utf-8", newline="") as handle:
        if path.suffix == ".jsonl":
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise BenchmarkDataError(f"{path}:{line_no}: not valid JSON ({err}). Expected schema: {schema}") from err
                if not isinstance(record, dict):
                    raise BenchmarkDataError(f"{path}:{line_no}: each line must be a JSON object. Expected schema: {schema}")
                records.append((line_no, record))
        else:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise BenchmarkDataError(f"{path}: the CSV header must have a 'file' column, got {reader.fieldnames}. Expected schema: {schema}")
            for line_no, row in enumerate(reader, 2):
                record = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
                for key in ("bbox", "captions"):
                    if key in record:
                        try:
                            record[key] = json.loads(record[key])
                        except json.JSONDecodeError as err:
                            raise BenchmarkDataError(f"{path}:{line_no}: column {key!r} must hold a JSON list ({err})") from err
                records.append((line_no, record))
    if not records:
        raise BenchmarkDataError(f"{path} lists no items. Expected schema: {schema}")
    return path, records


class LocalBenchmark(BenchmarkAdapter):
    """A benchmark split stored as ``<root>/<benchmark>/<split>/metadata.jsonl|csv`` plus files.

    The whole metadata is checked on construction (fields present, files present with a supported extension,
    labels resolvable); inputs are read lazily while iterating.

    Args:
        benchmark (`str` or `BenchmarkDefinition`): e.g. ``"esc50"``.
        root (`str` or `os.PathLike`): the folder holding one sub-folder per benchmark.
        split (`str`, *optional*): defaults to the benchmark's first split.
    """

    def __init__(self, benchmark, root: str | os.PathLike, split: str | None = None):
        self.definition = definition = get_benchmark(benchmark)
        self.split = split or definition.splits[0]
        self.folder = Path(root) / definition.name / self.split
        schema = definition.local_schema
        if not self.folder.is_dir():
            raise BenchmarkDataError(f"split folder {self.folder} not found. Expected schema: {schema}")
        self.metadata_path, records = _read_metadata(self.folder, schema)
        resolver = LabelResolver(definition)
        items: dict[str, dict] = {}
        for line_no, record in records:
            where = f"{self.metadata_path}:{line_no}"
            path = self._check_file(record, where, schema)
            key = str(record["file"])
            target = self._target(record, where, schema, resolver)
            if key in items and "captions" in target:  # CSV: one row per caption
                items[key]["captions"].extend(target["captions"])
                continue
            if key in items:
                raise BenchmarkDataError(f"{where}: file {key!r} is listed twice")
            items[key] = {"id": str(record.get("id", key)), "path": path, "record": record, "where": where, **target}
        self._items = list(items.values())

    def _check_file(self, record: dict, where: str, schema: str) -> Path:
        kind = self.definition.input_kind
        if "file" not in record:
            raise BenchmarkDataError(f"{where}: missing field 'file'. Expected schema: {schema}")
        path = self.folder / str(record["file"])
        if not path.exists():
            raise BenchmarkDataError(f"{where}: file {path} not found. Expected schema: {schema}")
        suffix = "" if path.is_dir() else path.suffix.lower()
        if suffix not in EXTENSIONS[kind]:
            raise BenchmarkDataError(f"{where}: {path.name} is not {kind} data of a supported format: expected {schema}")
        if kind == "audio" and suffix == ".npy" and record.get("sampling_rate") is None:
            raise BenchmarkDataError(f"{where}: .npy waveform {path.name} needs a 'sampling_rate' field (Hz)")
        if kind == "video" and suffix in ("", ".npy") and record.get("fps") is None:
            raise BenchmarkDataError(f"{where}: frame array/folder {path.name} needs an 'fps' field (frames per second)")
        return path

    def _target(self, record: dict, where: str, schema: str, resolver: LabelResolver) -> dict:
        """``{"captions": [...]}`` or ``{"label": ...}`` of one metadata record."""
        definition = self.definition
        if definition.task == "retrieval":
            captions = record.get("captions", record.get("caption"))
            captions = [captions] if isinstance(captions, str) else captions
            if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
                raise BenchmarkDataError(f"{where}: missing field 'captions' (a non-empty list of strings). Expected schema: {schema}")
            return {"captions": list(captions)}
        field_name = "labels" if definition.multi_label else "label"
        if field_name not in record:
            raise BenchmarkDataError(f"{where}: missing field {field_name!r}. Expected schema: {schema}")
        value = record[field_name]
        return {"label": resolver.many(value, where) if definition.multi_label else resolver(value, where)}

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        kind = self.definition.input_kind
        item = self._items[index]
        value, rate = load_input(kind, item["path"], item["record"], item["where"])
        example = {"id": item["id"], "input": value}
        if kind == "audio":
            example["sampling_rate"] = rate
        elif kind == "video":
            example["fps"] = rate
        if "label" in item:
            example["label"] = list(item["label"]) if isinstance(item["label"], list) else item["label"]
        else:
            example["captions"] = list(item["captions"])
        return example

    def targets(self) -> list:
        key = "captions" if self.definition.task == "retrieval" else "label"
        return [list(item[key]) if isinstance(item[key], list) else item[key] for item in self._items]


class HFBenchmark(BenchmarkAdapter):
    """A benchmark split read with ``datasets.load_dataset`` (a Hub id or a local data folder).

    Args:
        benchmark (`str` or `BenchmarkDefinition`): e.g. ``"esc50"``.
        source (`HFSource` or `str`, *optional*): the dataset and its column mapping; a string is a dataset id or
            path used with the column arguments below. Defaults to the benchmark's first known source.
        split (`str`, *optional*): our split name (defaults to the benchmark's first split); with
            ``source.filter_column`` it selects the rows, otherwise the HF split is ``source.split``.
        input_column, label_column, captions_column, label_kind, hf_split, config: override the source's fields.
        load_kwargs: passed to ``datasets.load_dataset`` (``revision``, ``cache_dir``, ``token``, ...).
    """

    def __init__(self, benchmark, source: HFSource | str | None = None, split: str | None = None, *,
                 input_column: str | None = None, label_column: str | None = None, captions_column: str | None = None,
                 label_kind: str | None = None, hf_split: str | None = None, config: str | None = None, **load_kwargs):
        import datasets

        self.definition = definition = get_benchmark(benchmark)
        self.split = split or definition.splits[0]
        if source is None:
            if not definition.hf_sources:
                raise BenchmarkDataError(f"no known Hugging Face dataset for {definition.name} ({definition.hf_notes}); pass source= and the columns")
            source = definition.hf_sources[0]
        if isinstance(source, (str, os.PathLike)):
            source = HFSource(str(source), "test", "")
        overrides = {k: v for k, v in dict(split=hf_split, input_column=input_column, label_column=label_column,
                                           captions_column=captions_column, label_kind=label_kind, config=config).items() if v is not None}
        self.source = source = dataclasses.replace(source, **overrides)
        expected = f"expected an input column {source.input_column!r} and " + (
            f"a captions column {source.captions_column!r}" if definition.task == "retrieval" else f"a label column {source.label_column!r}")
        if source.label_kind not in ("index", "name", "id"):
            raise ValueError(f"label_kind must be 'index', 'name' or 'id', got {source.label_kind!r}")
        dataset = datasets.load_dataset(source.dataset_id, source.config, split=source.split, **load_kwargs)
        needed = [source.input_column, source.captions_column if definition.task == "retrieval" else source.label_column]
        needed += [source.filter_column] if source.filter_column else []
        missing = [c for c in needed if not c or c not in dataset.column_names]
        if missing:
            raise BenchmarkDataError(f"{source.dataset_id} ({source.split}) lacks column(s) {missing}; it has {dataset.column_names}; {expected}")
        if isinstance(dataset.features[source.input_column], datasets.Audio):
            dataset = dataset.cast_column(source.input_column, datasets.Audio(decode=False))
        if source.filter_column:
            if self.split not in source.filter_values:
                raise BenchmarkDataError(f"split {self.split!r} has no {source.filter_column!r} value; known: {sorted(source.filter_values)}")
            value = source.filter_values[self.split]
            dataset = dataset.filter(lambda v: v == value, input_columns=source.filter_column)
        self.dataset = dataset
        self._resolver = LabelResolver(definition)

    def __len__(self) -> int:
        return len(self.dataset)

    def _input(self, value, where: str):
        kind = self.definition.input_kind
        if kind == "audio":
            if isinstance(value, dict) and value.get("bytes"):
                return decode_audio_bytes(value["bytes"], where)
            if isinstance(value, dict) and "array" in value:
                return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
            if isinstance(value, dict) and value.get("path") and Path(value["path"]).is_file():
                return decode_audio_bytes(Path(value["path"]).read_bytes(), where)
            raise BenchmarkDataError(f"{where}: cannot read the audio value (expected encoded bytes, a wav path or an array)")
        if isinstance(value, (str, Image.Image)) or kind in ("image", "thermal", "tactile"):
            return value, None
        return np.asarray(value, dtype=np.uint8 if kind == "video" else np.float32), None

    def _target(self, value, where: str):
        """The normalised label (index or index list) or caption list of one row's target column."""
        source, definition = self.source, self.definition
        if definition.task == "retrieval":
            return [value] if isinstance(value, str) else list(value)
        if source.label_kind == "index" and not definition.multi_label:
            value = int(value)
        return self._resolver.many(value, where) if definition.multi_label else self._resolver(value, where)

    def __getitem__(self, index: int) -> dict:
        source, definition = self.source, self.definition
        row = self.dataset[int(index)]
        where = f"{source.dataset_id}[{source.split}][{index}]"
        value, rate = self._input(row[source.input_column], where)
        example = {"id": str(index), "input": value}
        if definition.input_kind == "audio":
            example["sampling_rate"] = rate
        elif definition.input_kind == "video":
            example["fps"] = row.get("fps")
        key = "captions" if definition.task == "retrieval" else "label"
        example[key] = self._target(row[source.captions_column if definition.task == "retrieval" else source.label_column], where)
        return example

    def targets(self) -> list:
        source = self.source
        column = source.captions_column if self.definition.task == "retrieval" else source.label_column
        values = self.dataset.select_columns([column])[column]  # reads one column, not the media
        return [self._target(v, f"{source.dataset_id}[{source.split}][{i}]") for i, v in enumerate(values)]


def open_benchmark(benchmark, source, split: str | None = None, **kwargs) -> BenchmarkAdapter:
    """A local folder root (an existing directory) gives a `LocalBenchmark`; anything else (a Hub id, an `HFSource`)
    an `HFBenchmark`."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir() and (Path(source) / get_benchmark(benchmark).name).is_dir():
        return LocalBenchmark(benchmark, source, split)
    return HFBenchmark(benchmark, source, split, **kwargs)


# ---------------------------------------------------------------------------------------------- batch helpers
def processor_inputs(definition, examples: Sequence[dict]) -> dict:
    """Keyword arguments for ``CodeBindProcessor(...)`` from a batch of examples (``images=``, ``audio=`` +
    ``sampling_rate=``, ``videos=`` + ``video_fps=``, ``depth=``, ...)."""
    definition = get_benchmark(definition)
    if not examples:
        raise ValueError("empty batch")
    kwargs = {PROCESSOR_ARGUMENT[definition.input_kind]: [e["input"] for e in examples]}
    if definition.input_kind == "audio":
        kwargs["sampling_rate"] = [e.get("sampling_rate") for e in examples]
    elif definition.input_kind == "video":
        kwargs["video_fps"] = [e.get("fps") for e in examples]
    return kwargs


def label_array(definition, examples: Sequence[dict]) -> np.ndarray:
    """Classification references: `(N,)` indices, or `(N, num_classes)` multi-hot for a multi-label benchmark."""
    definition = get_benchmark(definition)
    labels = [e["label"] for e in examples]
    if not definition.multi_label:
        return np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(labels), definition.num_classes), dtype=np.int64)
    for row, items in enumerate(labels):
        out[row, items] = 1
    return out


@dataclass
class RetrievalTargets:
    """Captions in query order and the relevance lists of both directions."""

    captions: list[str]
    text_to_item: list[list[int]]
    item_to_text: list[list[int]]


def retrieval_targets(examples: Sequence[dict]) -> RetrievalTargets:
    """Flatten the captions of retrieval examples: caption ``i`` is relevant to its own item only."""
    captions, text_to_item, item_to_text = [], [], []
    for item, example in enumerate(examples):
        start = len(captions)
        captions.extend(example["captions"])
        text_to_item.extend([[item]] * len(example["captions"]))
        item_to_text.append(list(range(start, len(captions))))
    return RetrievalTargets(captions, text_to_item, item_to_text)


__all__ = [
    "BenchmarkAdapter",
    "BenchmarkDataError",
    "LocalBenchmark",
    "HFBenchmark",
    "LabelResolver",
    "open_benchmark",
    "load_input",
    "decode_audio_bytes",
    "processor_inputs",
    "label_array",
    "RetrievalTargets",
    "retrieval_targets",
    "METADATA_FILES",
    "EXTENSIONS",
]
