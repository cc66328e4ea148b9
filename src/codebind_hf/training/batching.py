"""Batches for path training: a deterministic sharded sampler, the processor call, and bad-row handling.

- `EpochBatchSampler`: the order of epoch ``e`` depends only on ``(seed, e)``; every process takes an equal
  share, so a resumed run sees exactly the batches an uninterrupted run would (``skip``).
- `PathCollator`: decodes the rows' columns, picks one text candidate (caption or prompt template) and one clip
  per row with a hash of ``(seed, epoch, row)``, calls the processor once per batch (once per row to find the
  culprit if the batch fails), and drops undecodable rows when asked (counted in ``num_bad``).
- Pair grades (``data.columns.grade``): one float in ``[0, 1]`` per row, returned as ``grades``; a missing or
  out-of-range grade is a bad row.
- Processors: anything with `CodeBindProcessor`'s keyword signature (``text=``, ``images=``, ``audio=`` +
  ``sampling_rate=`` ...); ``"arrays"`` passes already-tensor columns through.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..modalities import INPUT_KEYS, VIDEO_INPUT_KEY

from .data import PROCESSOR_ARGS, ColumnMap
from .decoding import BadRowError, decode_value

_MASK64 = (1 << 64) - 1
SALTS = {"text": 1, "clip": 2}


def pick(seed: int, epoch: int, row: int, count: int, salt: int) -> int:
    """A deterministic index in ``[0, count)`` for ``(seed, epoch, row, salt)`` (splitmix64), the same in every process."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + row * 0x94D049BB133111EB + salt) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return int((x ^ (x >> 31)) % count)


# ---------------------------------------------------------------------------------------------- processors
class ArrayProcessor:
    """Pass-through processor for columns that already hold the model's inputs.

    Arrays of each modality are stacked into float tensors under the model's input keys; text must already be
    token ids (lists of ints), padded with 0 and given an ``attention_mask``.
    """

    def __call__(self, text=None, sampling_rate=None, **modalities) -> dict[str, torch.Tensor]:
        out = {}
        by_arg = {arg: m for m, arg in PROCESSOR_ARGS.items()}
        for arg, values in modalities.items():
            if values is None:
                continue
            modality = by_arg.get(arg)
            if modality is None and arg != "videos":
                raise TypeError(f"ArrayProcessor got an unknown argument {arg!r}")
            key = VIDEO_INPUT_KEY if arg == "videos" else INPUT_KEYS[modality]
            arrays = [np.asarray(v, dtype=np.float32) for v in values]
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                raise ValueError(f"{arg}: arrays of one batch must share a shape, got {sorted(shapes)}")
            out[key] = torch.from_numpy(np.stack(arrays))
        if text is not None:
            if not all(isinstance(t, (list, tuple, np.ndarray)) for t in text):
                raise TypeError("the 'arrays' processor takes text as token-id lists; use a tokenizing processor for strings")
            length = max(len(t) for t in text)
            ids = torch.zeros(len(text), length, dtype=torch.long)
            mask = torch.zeros(len(text), length, dtype=torch.long)
            for i, t in enumerate(text):
                ids[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
                mask[i, : len(t)] = 1
            out["input_ids"], out["attention_mask"] = ids, mask
        return out

    def to_dict(self) -> dict:
        return {"processor_class": "ArrayProcessor"}


def resolve_processor(spec):
    """``"imagebind"`` | ``"arrays"`` | a saved processor folder | ``"module:attr"`` | a callable -> a callable."""
    if callable(spec) and not isinstance(spec, str):
        return spec
    if spec == "arrays":
        return ArrayProcessor()
    if spec == "imagebind":
        from ..processing_codebind import CodeBindProcessor

        return CodeBindProcessor.imagebind()
    if isinstance(spec, str) and Path(spec).is_dir():
        from ..processing_codebind import CodeBindProcessor

        return CodeBindProcessor.from_pretrained(spec)
    if isinstance(spec, str) and ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ImportError(f"data.processor {spec!r}: cannot import {attr!r} from module {module_name!r} ({err})") from err
        return obj() if isinstance(obj, type) else obj
    raise ValueError(f"data.processor must be 'imagebind', 'arrays', a processor folder, 'module:callable' or a callable; got {spec!r}")


def processor_fingerprint(processor) -> str:
    """What identifies a processor's output, for the feature cache key."""
    describe = getattr(processor, "to_dict", None)
    if callable(describe):
        return json.dumps(describe(), sort_keys=True, default=str)
    name = f"{type(processor).__module__}.{getattr(processor, '__qualname__', type(processor).__qualname__)}"
    return json.dumps({"callable": name, "fingerprint": getattr(processor, "fingerprint", None)}, default=str)


# ---------------------------------------------------------------------------------------------- rows and order
class RowDataset(torch.utils.data.Dataset):
    """A `datasets.Dataset` whose items are ``(row_index, row_dict)``, fetched a batch at a time."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return int(index), self.dataset[int(index)]

    def __getitems__(self, indices: list[int]):
        batch = self.dataset[[int(i) for i in indices]]
        columns = list(batch)
        return [(int(i), {c: batch[c][k] for c in columns}) for k, i in enumerate(indices)]


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of row indices for one process; the permutation of epoch ``e`` is seeded by ``(seed, e)``.

    Each epoch visits ``rows`` (optionally ``repeat`` times), splits the permutation evenly across processes
    (dropping the remainder so every process runs the same number of steps) and drops the last partial batch.
    """

    def __init__(self, rows, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0, repeat: int = 1):
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        self.batch_size, self.seed, self.num_replicas, self.rank, self.repeat = batch_size, seed, num_replicas, rank, repeat
        self.epoch, self.skip_batches = 0, 0
        if len(self) == 0:
            raise ValueError(
                f"{len(self.rows)} usable rows x repeat {repeat} are too few for batch size {batch_size} on "
                f"{num_replicas} process(es): not one full batch per process"
            )

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def __len__(self) -> int:
        return (len(self.rows) * self.repeat // self.num_replicas) // self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.rows) * self.repeat, generator=generator) % len(self.rows)
        per_rank = len(order) // self.num_replicas
        mine = self.rows[order[self.rank :: self.num_replicas][:per_rank]]
        for b in range(self.skip_batches, len(self)):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size].tolist()


# ---------------------------------------------------------------------------------------------- collation
@dataclass
class BatchSpec:
    """What the collator produces for a path."""

    live: list  # modalities decoded and processed here (the others come from the feature cache)
    columns: ColumnMap
    sample_ndims: dict  # modality -> tower sample ndim (to recognise a clips axis)
    templates: tuple = ()
    class_names: list | None = None
    cached: list = field(default_factory=list)  # modalities read from cache columns
    text_table: torch.Tensor | None = None  # cached prompt features (classes, templates, hidden), label prompts only
    vision_input: str = "images"
    sampling_rate: int | None = None
    input_keys: dict = field(default_factory=dict)  # modality -> input key, for modalities beyond the nine


class PathCollator:
    """Turn ``(row, dict)`` items into a batch dict (see module docstring).

    Returns ``{"rows", "labels", "grades", "inputs": {modality: tensor}, "attention_mask", "cached": {modality: tensor},
    "num_bad", "bad": [(row, message)]}``.
    """

    def __init__(self, spec: BatchSpec, processor, seed: int, skip_bad_rows: bool = False):
        self.spec, self.processor, self.seed, self.skip_bad_rows = spec, processor, seed, skip_bad_rows
        self.epoch = 0

    # -------------------------------------------------------------- text candidates
    def text_candidates(self, row: int, values: dict) -> list[str]:
        cols = self.spec.columns
        if cols.text is not None:
            return decode_value("text", values[cols.text], row, cols.text)
        label = values[cols.label]
        return [t.format(self._class_name(label, row)) for t in self.spec.templates]

    def _class_name(self, label, row: int) -> str:
        names, column = self.spec.class_names, self.spec.columns.label
        if label is None:
            raise BadRowError(row, column, "label is missing (None)")
        if isinstance(label, str):
            return label
        if names is None or not 0 <= int(label) < len(names):
            raise BadRowError(row, column, f"label {label!r} has no class name (classes: {0 if names is None else len(names)})")
        return names[int(label)]

    def label_index(self, label, row: int) -> int:
        if isinstance(label, str):
            if label not in self.spec.class_names:
                raise BadRowError(row, self.spec.columns.label, f"label {label!r} is not one of the class names")
            return self.spec.class_names.index(label)
        if label is None or int(label) < 0:
            raise BadRowError(row, self.spec.columns.label, f"invalid label {label!r}")
        return int(label)

    # -------------------------------------------------------------- decoding
    def decode_row(self, row: int, values: dict) -> dict:
        """Raw per-modality values of one row (and its chosen text)."""
        out, cols = {}, self.spec.columns
        for modality in self.spec.live:
            if modality == "text":
                candidates = self.text_candidates(row, values)
                out["text"] = candidates[pick(self.seed, self.epoch, row, len(candidates), SALTS["text"])]
                continue
            column = cols.modalities[modality]
            rate = values.get(cols.sampling_rate) if cols.sampling_rate else self.spec.sampling_rate
            out[modality] = decode_value(modality, values[column], row, column, rate)
        if cols.label is not None and self.spec.class_names is not None:
            out["label"] = self.label_index(values[cols.label], row)
        if cols.grade is not None:
            out["grade"] = _grade(values[cols.grade], row, cols.grade)
        return out

    def process(self, decoded: list[dict], rows: list[int]) -> dict[str, torch.Tensor]:
        """One processor call for the decoded rows; keys are the model's input keys."""
        kwargs = {}
        for modality in self.spec.live:
            # A new modality's processor keyword is its name (CodeBindProcessor(radar=...)).
            arg = "videos" if modality == "vision" and self.spec.vision_input == "videos" else PROCESSOR_ARGS.get(modality, modality)
            if modality == "audio":
                kwargs["audio"] = [d["audio"][0] for d in decoded]
                rates = {d["audio"][1] for d in decoded}
                if len(rates) > 1:
                    raise ValueError(f"rows {rows} mix sampling rates {sorted(rates)}; resample to one rate first")
                kwargs["sampling_rate"] = rates.pop()
            else:
                kwargs[arg] = [d[modality] for d in decoded]
        return dict(self.processor(**kwargs))

    def _process_rows(self, items: list[tuple[int, dict]]):
        """Decode + process, isolating bad rows; returns (good rows, decoded, processed, bad list)."""
        good, decoded, bad = [], [], []
        for row, values in items:
            try:
                decoded.append(self.decode_row(row, values))
                good.append(row)
            except BadRowError as err:
                bad.append((row, str(err)))
        processed = None
        if good and not self.spec.live:
            processed = {}  # every tower is cached: nothing to process
        elif good:
            try:
                processed = self.process(decoded, good)
            except Exception as batch_error:  # find the culprit(s) row by row
                keep = []
                for k, row in enumerate(good):
                    try:
                        self.process([decoded[k]], [row])
                        keep.append(k)
                    except Exception as err:  # noqa: BLE001 - the processor may raise anything
                        bad.append((row, f"row {row}, columns {self._live_columns()}: the processor failed: {err}"))
                if len(keep) in (0, len(good)):  # systematic (every row fails) or a batch-level problem
                    raise batch_error
                good, decoded = [good[k] for k in keep], [decoded[k] for k in keep]
                processed = self.process(decoded, good) if good else None
        if bad and not self.skip_bad_rows:
            raise ValueError(f"Undecodable data at {bad[0][1]}. Set data.skip_bad_rows=true to skip (and count) such rows.")
        return good, decoded, processed, bad

    def _live_columns(self) -> list[str]:
        cols = self.spec.columns
        return [cols.modalities[m] if m != "text" else (cols.text or cols.label) for m in self.spec.live]

    def _select_clip(self, modality: str, tensor: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Training uses one clip per sample (chosen per epoch); the model averages clips only at inference."""
        if tensor.ndim != self.spec.sample_ndims.get(modality, tensor.ndim - 1) + 2:
            return tensor
        index = torch.tensor([pick(self.seed, self.epoch, r, tensor.shape[1], SALTS["clip"]) for r in rows])
        return tensor[torch.arange(len(rows)), index]

    # -------------------------------------------------------------- call
    def __call__(self, items: list[tuple[int, dict]]) -> dict:
        good, decoded, processed, bad = self._process_rows(items)
        batch = {"rows": torch.tensor(good, dtype=torch.long), "inputs": {}, "cached": {}, "attention_mask": None,
                 "labels": None, "grades": None, "num_bad": len(bad), "bad": bad}
        if decoded and "label" in decoded[0]:
            batch["labels"] = torch.tensor([d["label"] for d in decoded], dtype=torch.long)
        if decoded and "grade" in decoded[0]:
            batch["grades"] = torch.tensor([d["grade"] for d in decoded], dtype=torch.float32)
        by_key = {key: m for m, key in {**INPUT_KEYS, **self.spec.input_keys}.items()}
        by_key[VIDEO_INPUT_KEY] = "vision"
        for key, value in (processed or {}).items():
            if key == "attention_mask":
                batch["attention_mask"] = value
            elif key in by_key and by_key[key] in self.spec.live:
                batch["inputs"][by_key[key]] = self._select_clip(by_key[key], torch.as_tensor(value), good)
        values = {row: v for row, v in items}
        for modality in self.spec.cached:
            batch["cached"][modality] = self._cached_features(modality, good, values, batch["labels"])
        return batch

    def _cached_features(self, modality: str, rows: list[int], values: dict, labels) -> torch.Tensor:
        """Pooled tower outputs of ``rows`` from the cache: `(batch, hidden)`; one candidate/clip per row."""
        if not rows:
            return torch.zeros(0)
        if modality == "text" and self.spec.text_table is not None:
            table = self.spec.text_table  # (classes, templates, hidden)
            choice = [pick(self.seed, self.epoch, r, table.shape[1], SALTS["text"]) for r in rows]
            return table[labels, torch.tensor(choice)]
        out = []
        for row in rows:
            feature = np.asarray(values[row][f"__cb_{modality}"], dtype=np.float32)
            if feature.ndim == 2:  # candidates (captions) or clips
                feature = feature[pick(self.seed, self.epoch, row, feature.shape[0], SALTS["text" if modality == "text" else "clip"])]
            out.append(feature)
        return torch.from_numpy(np.stack(out))


def _grade(value, row: int, column: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadRowError(row, column, f"a grade must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
        raise BadRowError(row, column, f"a grade must lie in [0, 1] (1 positive, 0.5 partial, 0 negative), got {value!r}")
    return float(value)


__all__ = [
    "pick",
    "ArrayProcessor",
    "resolve_processor",
    "processor_fingerprint",
    "RowDataset",
    "EpochBatchSampler",
    "BatchSpec",
    "PathCollator",
]
