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
            shard_end = min(shard_start + shard_size, len(dataset))
            for row in range(shard_start, shard_end, batch_size):
                yield row, dataset[row : min(row + batch_size, shard_end)]


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
    start, manifest = 0, None
    if output_dir is not None:
        output_dir = Path(output_dir)
        shards_dir = output_dir / "shards"
        identity = {
            "codebook_sha256": index.fingerprint,
            "dataset": _dataset_identity(dataset),
            "modality": modality,
            "path": index.info["path"],
            "columns": {"inputs": column, "id": id_column, "metadata": list(metadata_columns or [])},
        }
        manifest_path = output_dir / MANIFEST
        if manifest_path.exists() and overwrite:  # the manifest (the commit point) goes first, then the rest
            manifest_path.unlink()
            remove_dir_atomically(output_dir / "index")
            remove_dir_atomically(shards_dir)
        if manifest_path.exists():
            manifest = read_sealed_json(manifest_path, "index build manifest")
            if not resume:
                state = "a finished" if manifest.get("complete") else "an unfinished"
                raise FileExistsError(
                    f"{output_dir} holds {state} index build ({MANIFEST}); pass resume=True to continue (or load) it, "
                    "overwrite=True to replace it (--resume_from_checkpoint / --overwrite_output_dir), or use another "
                    "output_dir"
                )
            if manifest.get("identity") != identity:
                raise ValueError(
                    f"{output_dir} was built for {manifest.get('identity')}, not {identity}; use another output_dir"
                )
            for shard in manifest["shards"]:
                _load_shard(index, shards_dir / shard)
            if len(index) != manifest["rows_done"]:
                raise ValueError(
                    f"{output_dir}: the committed shards hold {len(index)} rows but the manifest says {manifest['rows_done']}"
                )
            start = manifest["rows_done"]
        else:
            shards_dir.mkdir(parents=True, exist_ok=True)
            manifest = {"version": MANIFEST_VERSION, "identity": identity, "rows_done": 0, "shards": [], "complete": False}
            _write_json_atomic(manifest_path, manifest)

    total = None if _is_streamed(dataset) else len(dataset)
    check_dataset_not_empty(total, f"the {modality} column {column!r} to index")
    bar = tqdm(total=total, initial=start, desc=f"indexing {modality}", unit="rows", disable=not progress)
    pending: list[tuple[torch.Tensor, list[str], list[dict]]] = []
    shard_start = start
    try:
        with inference(model):
            for row, columns in _row_batches(dataset, start, batch_size, shard_size):
                missing = [name for name in wanted if name not in columns]
                if missing:
                    raise KeyError(f"column(s) {missing} not in the dataset; its rows have {sorted(columns)}")
                values = columns[column]
                inputs = _to_model_inputs(values, processor, model)
                embeddings = model.get_features(modality, inputs, quantize=True, path=index.info["path"])
                rows_ids = _plain(columns[id_column]) if id_column else range(row, row + len(values))
                ids = [str(i) for i in rows_ids]
                extra = {name: _plain(columns[name]) for name in metadata_columns or []}
                metadata = [{name: column_values[i] for name, column_values in extra.items()} for i in range(len(values))]
                pending.append((index.encode(embeddings), ids, metadata))
                bar.update(len(values))
                if row + len(values) - shard_start == shard_size:
                    manifest = _commit(index, pending, shard_start, output_dir, manifest)
                    shard_start, pending = row + len(values), []
            if pending:
                manifest = _commit(index, pending, shard_start, output_dir, manifest)
    finally:
        bar.close()
    check_dataset_not_empty(len(index), f"the streamed {modality} column {column!r} to index")
    if output_dir is not None:
        index.save(output_dir / "index")
        _write_json_atomic(output_dir / MANIFEST, {**manifest, "complete": True})
    return index


def _commit(index, pending: list, shard_start: int, output_dir: Path | None, manifest: dict | None) -> dict | None:
    """Write one shard (codes, then ids/metadata), record it in the manifest (the commit point), add it to the index."""
    codes = torch.cat([codes for codes, _, _ in pending])
    ids = [item for _, batch_ids, _ in pending for item in batch_ids]
    metadata = [entry for _, _, batch_meta in pending for entry in batch_meta]
    if output_dir is None:
        index.add_codes(codes, ids, metadata)
        return manifest
    name = f"shard-{shard_start:012d}"
    shards_dir = output_dir / "shards"
    # Validate (unique ids, JSON metadata) on a scratch index before anything is written.
    scratch = type(index)(index.codebook, index.embed_dim, backend="torch")
    scratch.add_codes(codes, ids, metadata)
    save_checked_safetensors({"codes": scratch.packed_codes}, shards_dir / f"{name}.safetensors")
    _write_json_atomic(shards_dir / f"{name}.json", {"ids": ids, "metadata": metadata})
    index.add_packed_codes(scratch.packed_codes, ids, metadata)
    manifest = {**manifest, "rows_done": manifest["rows_done"] + len(ids), "shards": [*manifest["shards"], name]}
    _write_json_atomic(output_dir / MANIFEST, manifest)
    return manifest


def _load_shard(index, stem: Path) -> None:
    packed = load_checked_safetensors(stem.with_name(stem.name + ".safetensors"), "index build shard")["codes"]
    entries = read_sealed_json(stem.with_name(stem.name + ".json"), "index build shard's ids")
    if packed.shape[0] != len(entries["ids"]):
        raise ValueError(
            f"shard {stem}: {packed.shape[0]} coded rows but {len(entries['ids'])} ids; the build folder is corrupted"
        )
    index.add_packed_codes(packed, entries["ids"], entries["metadata"])


__all__ = ["build_index"]
