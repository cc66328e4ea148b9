"""Tiny generated datasets in the exact local layout of every benchmark, so the suite runs end to end in CI.

Each split gets a few items with random inputs of the right kind (32x32 PNGs, short waveforms as wav and as
``.npy`` + ``sampling_rate``, depth maps as ``.npy`` metres and 16-bit PNG millimetres, frame arrays and frame
folders with an ``fps`` field, EEG ``(128, 512)``, point clouds as ``.npy`` and ``.txt``), labels drawn from the real class lists and
written as indices, names and ids in turn, and captions for retrieval. Some benchmarks get ``metadata.csv``, the
others ``metadata.jsonl``, so both readers are exercised. Files are written atomically (temp file, then rename).

Example:

```python
>>> import tempfile
>>> from codebind_hf.evaluation.fixtures import write_fixture
>>> from codebind_hf.evaluation.datasets import LocalBenchmark
>>> root = tempfile.mkdtemp()
>>> _ = write_fixture("esc50", root, num_items=2)
>>> [len(LocalBenchmark("esc50", root, split)) for split in ("fold1", "fold5")]
[2, 2]

```
"""

from __future__ import annotations

import csv
import io
import json
import os
import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..adapters.io import write_file_atomically

from .suite import SUITES, get_benchmark

CSV_BENCHMARKS = ("k400", "sun_d", "clotho", "tag_hard_soft")
IMAGE_SIZE = 32


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def _write_input(kind: str, folder: Path, index: int, rng: np.random.Generator) -> dict:
    """Write one input file; return its metadata fields (``file`` and extras)."""
    stem = f"item{index:03d}"
    if kind in ("image", "tactile"):
        write_file_atomically(folder / f"{stem}.png", _png(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)))
        return {"file": f"{stem}.png"}
    if kind == "thermal":
        # Every other thermal item is a larger frame with a box to crop (LLVIP / FLIR store boxes).
        if index % 2:
            write_file_atomically(folder / f"{stem}.png", _png(rng.integers(0, 256, (40, 48), dtype=np.uint8)))
            return {"file": f"{stem}.png", "bbox": [4, 6, 36, 38]}
        write_file_atomically(folder / f"{stem}.png", _png(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)))
        return {"file": f"{stem}.png"}
    if kind == "video":
        frames = rng.integers(0, 256, (4, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        if index % 2:
            for t, frame in enumerate(frames[:3]):
                write_file_atomically(folder / stem / f"frame{t:04d}.png", _png(frame))
            return {"file": stem, "fps": 2}
        write_file_atomically(folder / f"{stem}.npy", _npy(frames))
        return {"file": f"{stem}.npy", "fps": 2}
    if kind == "audio":
        if index % 2:
            rate = 22050
            write_file_atomically(folder / f"{stem}.npy", _npy((0.1 * rng.standard_normal(rate // 2)).astype(np.float32)))
            return {"file": f"{stem}.npy", "sampling_rate": rate}
        write_file_atomically(folder / f"{stem}.wav", _wav(0.1 * rng.standard_normal(8000), 16000))
        return {"file": f"{stem}.wav"}
    if kind == "depth":
        depth = rng.uniform(0.5, 5.0, (IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
        if index % 2:
            write_file_atomically(folder / f"{stem}.png", _png((depth * 1000).astype(np.uint16)))
            return {"file": f"{stem}.png"}
        write_file_atomically(folder / f"{stem}.npy", _npy(depth))
        return {"file": f"{stem}.npy"}
    if kind == "imu":
        write_file_atomically(folder / f"{stem}.npy", _npy(rng.standard_normal((6, 2000)).astype(np.float32)))
        return {"file": f"{stem}.npy"}
    if kind == "eeg":
        write_file_atomically(folder / f"{stem}.npy", _npy(rng.standard_normal((128, 512)).astype(np.float32)))
        return {"file": f"{stem}.npy"}
    if kind == "point":
        if index % 2:
            cloud = rng.standard_normal((512, 3)).astype(np.float32)  # xyz only, as ViT-Lens evaluates (no normals)
            text = "\n".join(",".join(f"{v:.6f}" for v in row) for row in cloud) + "\n"
            write_file_atomically(folder / f"{stem}.txt", text.encode())
            return {"file": f"{stem}.txt"}
        write_file_atomically(folder / f"{stem}.npy", _npy(rng.standard_normal((1024, 3)).astype(np.float32)))
        return {"file": f"{stem}.npy"}
    raise ValueError(f"unknown input kind {kind!r}")


def _label_value(index: int, names: list[str], ids: list[str] | None, turn: int):
    """The label written to the metadata: an index, a (unique) class name or a class id, in turn."""
    if turn % 3 == 1 and names.count(names[index]) == 1:
        return names[index]
    if turn % 3 == 2 and ids:
        return ids[index]
    return index


def fixture_labels(benchmark, num_items: int, split_number: int = 0) -> list:
    """The class indices (or index lists) `write_fixture` uses: spread over the class list, shifted per split."""
    definition = get_benchmark(benchmark)
    count = definition.num_classes
    step = max(1, count // max(num_items, 1))
    first = [(split_number + i * step) % count for i in range(num_items)]
    if definition.multi_label:
        return [sorted({c, (c + count // 2 + 1) % count}) for c in first]
    return first


def write_fixture(benchmark, root: str | os.PathLike, num_items: int = 4, seed: int = 0) -> Path:
    """Write a tiny dataset for one benchmark under ``<root>/<benchmark>/<split>/`` (every split); returns the
    benchmark folder."""
    definition = get_benchmark(benchmark)
    if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    rng = np.random.default_rng(seed)
    base = Path(root) / definition.name
    for split_number, split in enumerate(definition.splits):
        folder = base / split
        records = []
        labels = fixture_labels(definition, num_items, split_number) if definition.task != "retrieval" else None
        for i in range(num_items):
            record = _write_input(definition.input_kind, folder, i, rng)
            record["id"] = f"{definition.name}-{split}-{i}"
            if labels is None:
                record["captions"] = [f"caption {j} of {split} item {i}: {' '.join(rng.choice(list('abcdefgh'), 3))}" for j in range(2 + i % 2)]
            elif definition.multi_label:
                record["labels"] = [_label_value(c, definition.class_names, definition.class_ids, i + j) for j, c in enumerate(labels[i])]
            else:
                record["label"] = _label_value(labels[i], definition.class_names, definition.class_ids, i)
            records.append(record)
        _write_metadata(folder, records, csv_format=definition.name in CSV_BENCHMARKS)
    return base


def _write_metadata(folder: Path, records: list[dict], csv_format: bool) -> None:
    if not csv_format:
        text = "".join(json.dumps(r) + "\n" for r in records)
        write_file_atomically(folder / "metadata.jsonl", text.encode())
        return
    rows = []
    for record in records:
        row = {k: (";".join(map(str, v)) if k == "labels" else json.dumps(v) if isinstance(v, list) else v)
               for k, v in record.items() if k != "captions"}
        if "captions" in record:  # one row per caption, as Clotho's CSV-style listings
            rows.extend({**row, "caption": caption} for caption in record["captions"])
        else:
            rows.append(row)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_file_atomically(folder / "metadata.csv", buffer.getvalue().encode())


def write_fixtures(root: str | os.PathLike, benchmarks: Iterable[str] | str = ("ib17", "vl"), num_items: int = 4,
                   seed: int = 0) -> dict[str, Path]:
    """`write_fixture` for several benchmarks; suite names (``"ib17"``, ``"vl"``) expand to their members."""
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    expanded = [n for name in names for n in (SUITES[name] if name in SUITES else [name])]
    return {name: write_fixture(name, root, num_items=num_items, seed=seed + i) for i, name in enumerate(dict.fromkeys(expanded))}


def write_analysis_fixture(name: str, root: str | os.PathLike, num_items: int = 12, seed: int = 0) -> Path:
    """A tiny dataset for an analysis task (``probe:<kind>:<folder>``, ``finegrained:...``, ``fusion:<a>+<b>:<folder>``,
    `codebind_hf.evaluation.analysis`) under ``<root>/<folder>/test/``: random inputs of the task's kinds (the paired
    input of a fusion item under ``paired/``), labels cycling over 3 classes, probe attributes ``voice`` (3 values)
    and ``speed`` (2 values). Returns the split folder."""
    from .analysis import parse_analysis

    task = parse_analysis(name)
    if task is None:
        raise ValueError(f"{name!r} is not an analysis task name (probe:..., finegrained:..., fusion:...)")
    rng = np.random.default_rng(seed)
    folder = Path(root) / task.folder / task.split
    records = []
    for i in range(num_items):
        record = {**_write_input(task.input_kinds[0], folder, i, rng), "id": f"{task.folder}-{i}"}
        if task.kind == "fusion":
            paired = _write_input(task.input_kinds[1], folder / "paired", i, rng)
            record.update({f"paired_{k}" if k != "file" else "paired_file": v for k, v in paired.items()})
            record["paired_file"] = f"paired/{paired['file']}"
        if task.kind == "probe":
            record.update(voice=["alto", "bass", "tenor"][i % 3], speed=i % 2)
        else:
            record["label"] = ["oak", "pine", "elm"][i % 3]
        records.append(record)
    _write_metadata(folder, records, csv_format=False)
    return folder


__all__ = ["write_fixture", "write_fixtures", "write_analysis_fixture", "fixture_labels", "CSV_BENCHMARKS"]
