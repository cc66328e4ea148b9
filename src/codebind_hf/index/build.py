"""Streaming, resumable construction of a [`~codebind_hf.index.core.CodeBindIndex`] over a `datasets` dataset.

This module sits below the index class: `build_index` takes it as ``index_type``, and the entry points are
``CodeBindIndex.build_from_dataset`` and `codebind_hf.index.core.build_index_from_dataset`.

Rows are embedded in batches and encoded into codes. Every ``shard_size`` rows the shard's packed codes
(``shards/shard-<first row>.safetensors``) and its ids and metadata (``.json``) are written, each to a temporary
file renamed into place once on disk (`codebind_hf.adapters.io.write_file_atomically`), and only then is
``manifest.json`` replaced (likewise) to record the shard: the manifest is the commit point. An interrupted
build resumes after the last shard the manifest names — a shard written but not yet recorded is simply written
again — so nothing is lost or duplicated. The manifest pins the codebook fingerprint, the modality, path and
columns, and the dataset (its fingerprint and length; a streamed `IterableDataset` has neither, so resuming one
trusts that the same stream in the same order is given). When the dataset is exhausted the index is saved to
``output_dir/index``.

Under ``accelerate launch --num_processes N`` (any `accelerate` state with several processes) the shards are split
as in ``codebind-embed``: process ``r`` embeds shards ``r, r + N, ...`` and writes each one (codes, then ids: the
ids file is the shard's commit); the main process then records them all in the manifest in row order, builds and
saves the index, and every process returns the same index. A shard a killed run left complete is verified
(checksums) and kept; one without its ids file is written again. Shards and batches do not depend on the number
of processes, so 1 and N processes build the same index, bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adapters.integrity import load_checked_safetensors, read_sealed_json, save_checked_safetensors, write_sealed_json
from ..adapters.io import remove_dir_atomically
from ..validation import check_dataset_not_empty
from ._encode import inference

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def process_state():
    """Accelerate's process state (one process without a launcher); ``ACCELERATE_USE_CPU=1`` gives CPU (gloo)
    processes, as it does for an ``Accelerator``."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def _launched_processes() -> int:
    """Processes of a running launcher (``accelerate launch`` and ``torchrun`` set ``WORLD_SIZE``); 1 for a plain
    script, which then needs no `accelerate` state."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _write_json_atomic(path: Path, payload: dict) -> None:  # a name of its own: tests fail it to simulate a crash
    write_sealed_json(path, payload, fsync=True)  # sealed: a corrupted manifest or shard list is an error naming it


def _is_streamed(dataset) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency of every caller of this module
        return False
    return isinstance(dataset, datasets.IterableDataset)


def _dataset_identity(dataset) -> dict:
    if _is_streamed(dataset):
        return {"fingerprint": None, "num_rows": None}
    return {"fingerprint": getattr(dataset, "_fingerprint", None), "num_rows": len(dataset)}


def _row_batches(dataset, start: int, batch_size: int, shard_size: int) -> Iterator[tuple[int, dict]]:
    """``(first_row, columns)`` batches from row ``start`` on; a batch never crosses a shard boundary."""
    if _is_streamed(dataset):
        rows = iter(dataset.skip(start) if start else dataset)
        row = start
        while True:
            size = min(batch_size, shard_size - (row - start) % shard_size)
            chunk = list(islice(rows, size))
            if not chunk:
                return
            yield row, {name: [r[name] for r in chunk] for name in chunk[0]}
            row += len(chunk)
    else:
        for shard_start in range(start, len(dataset), shard_size):
            yield from _shard_batches(dataset, shard_start, min(shard_start + shard_size, len(dataset)), batch_size)


def _shard_batches(dataset, start: int, stop: int, batch_size: int) -> Iterator[tuple[int, dict]]:
    """``(first_row, columns)`` batches of rows ``start .. stop - 1`` of a map-style dataset."""
    for row in range(start, stop, batch_size):
        yield row, dataset[row : min(row + batch_size, stop)]


def _plain(values) -> list:
    """A column as plain Python values (a dataset formatted as torch/numpy gives tensors or arrays)."""
    return values.tolist() if hasattr(values, "tolist") else [v.tolist() if hasattr(v, "tolist") else v for v in values]


def _to_model_inputs(values, processor: Callable | None, model):
    """Column values -> the model's input tensor (or processor output), on the model's device and float dtype."""
    inputs = processor(values) if processor is not None else values
    if not (isinstance(inputs, torch.Tensor) or hasattr(inputs, "keys")):
        inputs = torch.stack([torch.as_tensor(value) for value in inputs])
    if isinstance(inputs, torch.Tensor):
        return inputs.to(model.device, model.dtype) if inputs.is_floating_point() else inputs.to(model.device)
    return {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}


def build_index(
    index_type: type,
    model,
    dataset,
    modality: str,
    column: str,
    output_dir: str | os.PathLike | None = None,
    processor: Callable | None = None,
    id_column: str | None = None,
    metadata_columns: list[str] | None = None,
    batch_size: int = 32,
    shard_size: int = 1024,
    path: str | None = None,
    resume: bool = True,
    progress: bool = True,
    backend: str = "auto",
    overwrite: bool = False,
):
    """Embed ``dataset[column]`` with ``model`` into an ``index_type`` (a [`CodeBindIndex`]) over the model's
    codebook, committing shards under ``output_dir``.

    Args:
        index_type (`type`): the index class; its ``from_model`` gives the empty index.
        model ([`CodeBindModel`]): gives the shared embeddings (quantised, so codes are the model's codes).
        dataset (`datasets.Dataset` or `datasets.IterableDataset`): the rows to index.
        modality (`str`): the modality of ``column``.
        column (`str`): the column holding the model's inputs (or raw values for ``processor``).
        output_dir (`str` or `os.PathLike`, *optional*): where shards, ``manifest.json`` and the final ``index/`` go;
            ``None`` builds in memory only (no resume).
        processor (`Callable`, *optional*): maps a list of column values to the model's input tensor or to a
            processor output (e.g. ``lambda xs: processor(audio=xs, sampling_rate=16000)``); ``None`` stacks the
            values as tensors.
        id_column (`str`, *optional*): column of item ids (default: the row number).
        metadata_columns (`list[str]`, *optional*): columns stored as each item's metadata (JSON values).
        batch_size (`int`, *optional*, defaults to 32): rows per model call.
        shard_size (`int`, *optional*, defaults to 1024): rows per committed shard.
        path (`str`, *optional*): the path whose shared codebook is used (default: ``modality``'s path).
        resume (`bool`, *optional*, defaults to `True`): continue an interrupted build in ``output_dir`` (a finished
            one is loaded, not rebuilt); ``False`` refuses to touch an existing one unless ``overwrite``.
        progress (`bool`, *optional*, defaults to `True`): show a tqdm progress bar.
        backend (`str`, *optional*, defaults to `"auto"`): search backend of the returned index.
        overwrite (`bool`, *optional*, defaults to `False`): discard a build already in ``output_dir`` (finished or
            not) and start afresh (`--overwrite_output_dir`).

    Shards, ids and the manifest carry checksums; resuming from a corrupted or truncated one is an error naming it.

    Returns:
        The complete index (also saved to ``output_dir/index``).
    """
    if not hasattr(dataset, "column_names"):
        raise TypeError(f"dataset must be a datasets.Dataset or datasets.IterableDataset, got {type(dataset).__name__}")
    wanted = [column] + ([id_column] if id_column else []) + list(metadata_columns or [])
    names = dataset.column_names  # None for a stream whose features are unknown: checked on the first batch
    if names is not None:
        missing = [name for name in wanted if name not in names]
        if missing:
            raise KeyError(f"column(s) {missing} not in the dataset; its columns are {names}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}")
    index = index_type.from_model(model, modality=modality, path=path, backend=backend)
    spec = _Rows(model, index, modality, column, processor, id_column, list(metadata_columns or []), wanted)
    processes = _launched_processes()
    if processes > 1:
        if output_dir is None or _is_streamed(dataset):
            raise ValueError(
                f"a build over {processes} processes needs a map-style dataset (shards are row ranges) and an "
                "output_dir (where the processes leave their shards); got "
                f"{type(dataset).__name__} and output_dir={output_dir!r}"
            )
        return _build_sharded(spec, dataset, Path(output_dir), batch_size, shard_size, resume, progress, overwrite)
    start, manifest = 0, None
    if output_dir is not None:
        output_dir = Path(output_dir)
        identity = spec.identity(dataset)
        manifest = _check_manifest(output_dir, identity, resume, overwrite)
        if manifest is not None and overwrite:
            _discard_build(output_dir)
            manifest = None
        if manifest is not None:
            for shard in manifest["shards"]:
                _load_shard(index, output_dir / "shards" / shard)
            if len(index) != manifest["rows_done"]:
                raise ValueError(
                    f"{output_dir}: the committed shards hold {len(index)} rows but the manifest says {manifest['rows_done']}"
                )
            start = manifest["rows_done"]
        else:
            manifest = _new_manifest(output_dir, identity)

    total = None if _is_streamed(dataset) else len(dataset)
    check_dataset_not_empty(total, f"the {modality} column {column!r} to index")
    bar = tqdm(total=total, initial=start, desc=f"indexing {modality}", unit="rows", disable=not progress)
    pending: list[tuple[torch.Tensor, list[str], list[dict]]] = []
    shard_start = start
    try:
        with inference(model):
            for row, columns in _row_batches(dataset, start, batch_size, shard_size):
                pending.append(spec.encode(row, columns))
                bar.update(len(pending[-1][1]))
                if row + len(pending[-1][1]) - shard_start == shard_size:
                    manifest = _commit(index, pending, shard_start, output_dir, manifest)
                    shard_start, pending = row + len(pending[-1][1]), []
            if pending:
                manifest = _commit(index, pending, shard_start, output_dir, manifest)
    finally:
        bar.close()
    check_dataset_not_empty(len(index), f"the streamed {modality} column {column!r} to index")
    if output_dir is not None:
        index.save(output_dir / "index")
        _write_json_atomic(output_dir / MANIFEST, {**manifest, "complete": True})
    return index


class _Rows:
    """What one build embeds: the model, the index's codebook, the columns; turns a batch of rows into codes."""

    def __init__(self, model, index, modality, column, processor, id_column, metadata_columns, wanted):
        self.model, self.index, self.modality, self.column, self.processor = model, index, modality, column, processor
        self.id_column, self.metadata_columns, self.wanted = id_column, metadata_columns, wanted

    def identity(self, dataset) -> dict:
        return {
            "codebook_sha256": self.index.fingerprint,
            "dataset": _dataset_identity(dataset),
            "modality": self.modality,
            "path": self.index.info["path"],
            "columns": {"inputs": self.column, "id": self.id_column, "metadata": self.metadata_columns},
        }

    def encode(self, row: int, columns: dict) -> tuple[torch.Tensor, list[str], list[dict]]:
        """Codes, ids and metadata of the batch starting at ``row``."""
        missing = [name for name in self.wanted if name not in columns]
        if missing:
            raise KeyError(f"column(s) {missing} not in the dataset; its rows have {sorted(columns)}")
        values = columns[self.column]
        inputs = _to_model_inputs(values, self.processor, self.model)
        embeddings = self.model.get_features(self.modality, inputs, quantize=True, path=self.index.info["path"])
        rows_ids = _plain(columns[self.id_column]) if self.id_column else range(row, row + len(values))
        extra = {name: _plain(columns[name]) for name in self.metadata_columns}
        metadata = [{name: column_values[i] for name, column_values in extra.items()} for i in range(len(values))]
        return self.index.encode(embeddings), [str(i) for i in rows_ids], metadata


def _check_manifest(output_dir: Path, identity: dict, resume: bool, overwrite: bool) -> dict | None:
    """The build already in ``output_dir`` (``None``: none), refused unless it is this build and resuming is allowed;
    with ``overwrite`` it is not read (it will be discarded, even if corrupted)."""
    manifest_path = output_dir / MANIFEST
    if not manifest_path.exists():
        return None
    if overwrite:
        return {}
    manifest = read_sealed_json(manifest_path, "index build manifest")
    if not resume:
        state = "a finished" if manifest.get("complete") else "an unfinished"
        raise FileExistsError(
            f"{output_dir} holds {state} index build ({MANIFEST}); pass resume=True to continue (or load) it, "
            "overwrite=True to replace it (--resume_from_checkpoint / --overwrite_output_dir), or use another output_dir"
        )
    if manifest.get("identity") != identity:
        raise ValueError(f"{output_dir} was built for {manifest.get('identity')}, not {identity}; use another output_dir")
    return manifest


def _discard_build(output_dir: Path) -> None:
    """``overwrite``: the manifest (the commit point) goes first, then the rest."""
    (output_dir / MANIFEST).unlink()
    remove_dir_atomically(output_dir / "index")
    remove_dir_atomically(output_dir / "shards")


def _new_manifest(output_dir: Path, identity: dict) -> dict:
    (output_dir / "shards").mkdir(parents=True, exist_ok=True)
    manifest = {"version": MANIFEST_VERSION, "identity": identity, "rows_done": 0, "shards": [], "complete": False}
    _write_json_atomic(output_dir / MANIFEST, manifest)
    return manifest


def _build_sharded(spec: _Rows, dataset, output_dir: Path, batch_size: int, shard_size: int, resume: bool,
                   progress: bool, overwrite: bool):
    """The multi-process build (see the module doc): each process writes its shards, the main one assembles."""
    state = process_state()
    check_dataset_not_empty(len(dataset), f"the {spec.modality} column {spec.column!r} to index")
    identity = spec.identity(dataset)
    # Every process reads and refuses alike before anything is written, so a refusal never leaves one waiting.
    manifest = _check_manifest(output_dir, identity, resume, overwrite)
    state.wait_for_everyone()
    if state.is_main_process:
        if manifest is not None and overwrite:
            _discard_build(output_dir)
            manifest = None
        if manifest is None:
            _new_manifest(output_dir, identity)
    state.wait_for_everyone()
    starts = list(range(0, len(dataset), shard_size))
    mine = starts[state.process_index :: state.num_processes]
    bar = tqdm(total=len(dataset), desc=f"indexing {spec.modality}", unit="rows",
               disable=not (progress and state.is_main_process))  # fmt: skip
    with inference(spec.model):
        for start in mine:
            stem = output_dir / "shards" / _shard_name(start)
            stop = min(start + shard_size, len(dataset))
            if not _shard_done(spec.index, stem):
                pending = [spec.encode(row, columns) for row, columns in _shard_batches(dataset, start, stop, batch_size)]
                _write_shard(spec.index, pending, stem)
            bar.update((stop - start) * state.num_processes)
    bar.close()
    state.wait_for_everyone()
    index = spec.index
    names = [_shard_name(start) for start in starts]
    for name in names:
        _load_shard(index, output_dir / "shards" / name)
    if state.is_main_process:
        manifest = read_sealed_json(output_dir / MANIFEST, "index build manifest")
        index.save(output_dir / "index")
        _write_json_atomic(output_dir / MANIFEST, {**manifest, "rows_done": len(index), "shards": names, "complete": True})
    state.wait_for_everyone()
    return index


def _shard_name(start: int) -> str:
    return f"shard-{start:012d}"


def _shard_done(index, stem: Path) -> bool:
    """A shard an earlier run left complete (its ids file, written last, exists); its checksums are verified."""
    if not stem.with_name(stem.name + ".json").exists():
        return False
    _load_shard(type(index)(index.codebook, index.embed_dim, backend="torch"), stem)  # raises naming a corrupt file
    return True


def _commit(index, pending: list, shard_start: int, output_dir: Path | None, manifest: dict | None) -> dict | None:
    """Write one shard (codes, then ids/metadata), record it in the manifest (the commit point), add it to the index."""
    if output_dir is None:
        codes, ids, metadata = _joined(pending)
        index.add_codes(codes, ids, metadata)
        return manifest
    name = _shard_name(shard_start)
    packed, ids, metadata = _write_shard(index, pending, output_dir / "shards" / name)
    index.add_packed_codes(packed, ids, metadata)
    manifest = {**manifest, "rows_done": manifest["rows_done"] + len(ids), "shards": [*manifest["shards"], name]}
    _write_json_atomic(output_dir / MANIFEST, manifest)
    return manifest


def _joined(pending: list) -> tuple[torch.Tensor, list[str], list[dict]]:
    codes = torch.cat([codes for codes, _, _ in pending])
    ids = [item for _, batch_ids, _ in pending for item in batch_ids]
    metadata = [entry for _, _, batch_meta in pending for entry in batch_meta]
    return codes, ids, metadata


def _write_shard(index, pending: list, stem: Path) -> tuple[torch.Tensor, list[str], list[dict]]:
    """Write a shard's packed codes, then its ids and metadata (the file that makes it complete)."""
    codes, ids, metadata = _joined(pending)
    # Validate (unique ids, JSON metadata) on a scratch index before anything is written.
    scratch = type(index)(index.codebook, index.embed_dim, backend="torch")
    scratch.add_codes(codes, ids, metadata)
    save_checked_safetensors({"codes": scratch.packed_codes}, stem.with_name(stem.name + ".safetensors"))
    _write_json_atomic(stem.with_name(stem.name + ".json"), {"ids": ids, "metadata": metadata})
    return scratch.packed_codes, ids, metadata


def _load_shard(index, stem: Path) -> None:
    packed = load_checked_safetensors(stem.with_name(stem.name + ".safetensors"), "index build shard")["codes"]
    entries = read_sealed_json(stem.with_name(stem.name + ".json"), "index build shard's ids")
    if packed.shape[0] != len(entries["ids"]):
        raise ValueError(
            f"shard {stem}: {packed.shape[0]} coded rows but {len(entries['ids'])} ids; the build folder is corrupted"
        )
    index.add_packed_codes(packed, entries["ids"], entries["metadata"])


__all__ = ["build_index", "process_state"]
