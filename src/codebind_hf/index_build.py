"""Streaming, resumable construction of a `CodeBindIndex` over a `datasets.Dataset`.

Rows are embedded in batches and encoded into codes; every ``shard_size`` rows the codes and ids are written
as a shard (temp file, then rename) and only then is ``manifest.json`` replaced (also atomically) to record
the shard. An interrupted build therefore resumes after the last shard the manifest names: nothing lost,
nothing duplicated. The manifest pins the codebook fingerprint and the dataset (fingerprint and length),
and a resume with a different one is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .index import CodeBindIndex

MANIFEST = "manifest.json"


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _dataset_identity(dataset) -> dict:
    return {"fingerprint": getattr(dataset, "_fingerprint", None), "num_rows": len(dataset)}


def build_index_from_dataset(
    model,
    dataset,
    modality: str,
    column: str,
    output_dir: str | os.PathLike,
    processor: Callable | None = None,
    id_column: str | None = None,
    batch_size: int = 32,
    shard_size: int = 1024,
    path: str | None = None,
    resume: bool = True,
    progress: bool = True,
) -> CodeBindIndex:
    """Embed ``dataset[column]`` with ``model`` (modality ``modality``) into an index saved under ``output_dir/index``.

    Args:
        processor: maps a list of raw column values to the model's input tensor (e.g.
            ``lambda xs: CodeBindProcessor.imagebind()(audio=xs)["audio_values"]``); ``None`` stacks the values as tensors.
        id_column: column with item ids (default: the row number).
        shard_size: rows per committed shard (a multiple of ``batch_size`` is best).
        resume: continue an interrupted build in ``output_dir``; ``False`` refuses to touch an existing one.
    """
    if column not in dataset.column_names:
        raise KeyError(f"column {column!r} not in the dataset; columns are {dataset.column_names}")
    if id_column is not None and id_column not in dataset.column_names:
        raise KeyError(f"id_column {id_column!r} not in the dataset; columns are {dataset.column_names}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError("batch_size and shard_size must be positive")
    output_dir = Path(output_dir)
    shards_dir = output_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    index = CodeBindIndex.from_model(model, modality=modality, path=path, backend="torch")
    identity = {"codebook_sha256": index.fingerprint, "dataset": _dataset_identity(dataset), "modality": modality, "column": column}
    manifest_path = output_dir / MANIFEST
    if manifest_path.exists():
        if not resume:
            raise FileExistsError(f"{output_dir} holds a build already; pass resume=True to continue it")
        manifest = json.loads(manifest_path.read_text())
        if manifest["identity"] != identity:
            raise ValueError(f"{output_dir} was built for {manifest['identity']}, not {identity}; use another output_dir")
    else:
        manifest = {"identity": identity, "rows_done": 0, "shards": []}
        _write_json_atomic(manifest_path, manifest)
    for shard in manifest["shards"]:
        _load_shard(index, shards_dir / shard)
    model_was_training = model.training
    model.eval()
    start = manifest["rows_done"]
    bar = tqdm(total=len(dataset), initial=start, desc=f"indexing {modality}", disable=not progress)
    try:
        for shard_start in range(start, len(dataset), shard_size):
            shard_end = min(shard_start + shard_size, len(dataset))
            codes, ids = [], []
            for batch_start in range(shard_start, shard_end, batch_size):
                rows = dataset[batch_start : min(batch_start + batch_size, shard_end)]
                values = rows[column]
                inputs = processor(values) if processor is not None else torch.stack([torch.as_tensor(v) for v in values])
                with torch.no_grad():
                    embeddings = model.get_features(modality, inputs, quantize=False, path=path)
                codes.append(index.encode(embeddings))
                ids.extend(str(i) for i in (rows[id_column] if id_column else range(batch_start, batch_start + len(values))))
                bar.update(len(values))
            name = f"shard-{shard_start:09d}"
            shard_codes = torch.cat(codes)
            save_file({"codes": shard_codes}, shards_dir / f".{name}.tmp")
            os.replace(shards_dir / f".{name}.tmp", shards_dir / f"{name}.safetensors")
            _write_json_atomic(shards_dir / f"{name}.json", {"ids": ids})
            manifest = {**manifest, "rows_done": shard_end, "shards": [*manifest["shards"], name]}
            _write_json_atomic(manifest_path, manifest)  # the commit point of this shard
            index.add_codes(shard_codes, ids)
    finally:
        bar.close()
        model.train(model_was_training)
    index.save(output_dir / "index")
    return index


def _load_shard(index: CodeBindIndex, stem: Path) -> None:
    codes = load_file(stem.with_suffix(".safetensors"))["codes"]
    ids = json.loads(stem.with_suffix(".json").read_text())["ids"]
    index.add_codes(codes, ids)


__all__ = ["build_index_from_dataset"]
