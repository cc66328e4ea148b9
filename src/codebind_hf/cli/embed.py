"""`codebind-embed`: a dataset column through a CodeBind model into a `datasets` folder of ids, codes and embeddings.

Run it as is for one process, or under ``accelerate launch --num_processes N`` to split the work::

    codebind-embed --model MODEL --dataset DATA --column depth --modality depth --output_dir OUT
    accelerate launch --num_processes 2 -m codebind_hf.cli.embed --model MODEL ... --index ivf --ivf_lists 1024

The rows are cut into shards of ``--shard_size`` consecutive rows; process ``r`` of ``N`` takes shards ``r, r + N,
...``. A shard goes to ``OUT/shards/shard-<first row>/`` (a ``save_to_disk`` folder, renamed into place once
written, so it is complete or absent); a rerun skips the shards already there, so an interrupted job resumes
shard by shard. ``OUT/embed.json`` pins what is embedded (model, dataset fingerprint and size, column,
modality, path, shard size, outputs); a rerun with other settings is refused. When all shards exist, the main
process concatenates them in row order into ``OUT/dataset`` (columns ``id``, ``codes``: the shared-codebook codes,
``embedding``: the float shared embedding, or the quantised one with ``--quantized``), optionally builds a code
index from the codes into ``OUT/index`` (``--index flat`` or ``ivf``), and marks the job complete.

A shard's rows, batches and model are the same whichever process embeds it, so 1 and N processes write the same
dataset and index (bit for bit, given the same kernels and thread counts per process).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ..adapters.io import write_dir_atomically, write_file_atomically
from ..index.build import _dataset_identity, _plain, _shard_name, _to_model_inputs, process_state
from ..index.core import CodeBindIndex
from ..index.ivf import CodeBindIVFIndex

MANIFEST = "embed.json"
MANIFEST_VERSION = 1
INDEX_KINDS = ("none", "flat", "ivf")


def embed_dataset(
    model,
    dataset,
    modality: str,
    column: str,
    output_dir: str | os.PathLike,
    id_column: str | None = None,
    processor=None,
    path: str | None = None,
    batch_size: int = 32,
    shard_size: int = 4096,
    quantized: bool = False,
    index: str = "none",
    ivf_lists: int | None = None,
    model_name: str | None = None,
    progress: bool = True,
):
    """Embed ``dataset[column]`` into ``output_dir`` (see the module doc), sharded over the processes of the running
    `accelerate` state; returns the assembled `datasets.Dataset` (on every process).

    Args:
        model ([`CodeBindModel`]): the model (moved to the process' device here).
        dataset (`datasets.Dataset`): a map-style dataset (shards are row ranges).
        modality (`str`), column (`str`): what the column holds.
        id_column (`str`, *optional*): column of item ids (default: the row number).
        processor (`Callable`, *optional*): list of column values -> the model's input tensor or processor output;
            ``None`` stacks the values as tensors.
        path (`str`, *optional*): the path whose shared codebook gives the codes (default: ``modality``'s).
        batch_size (`int`), shard_size (`int`): rows per model call and per shard (a batch never crosses shards).
        quantized (`bool`): store the quantised shared embedding instead of the float one.
        index (`str`): ``"none"``, ``"flat"`` ([`CodeBindIndex`]) or ``"ivf"`` ([`CodeBindIVFIndex`] with
            ``ivf_lists`` lists, default the power of two nearest ``sqrt(rows)``) built from the codes.
        model_name (`str`, *optional*): recorded in the manifest (default: ``model.name_or_path``).
        progress (`bool`): print one line per shard written by this process.
    """
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"dataset must be a map-style datasets.Dataset (shards are row ranges), got {type(dataset).__name__}")
    missing = [name for name in [column] + ([id_column] if id_column else []) if name not in dataset.column_names]
    if missing:
        raise KeyError(f"column(s) {missing} not in the dataset; its columns are {dataset.column_names}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}")
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    state = process_state()
    output_dir = Path(output_dir)
    codec = CodeBindIndex.from_model(model, modality=modality, path=path, backend="torch")
    identity = {
        "model": model_name or getattr(model, "name_or_path", None) or None,
        "codebook_sha256": codec.fingerprint,
        "dataset": _dataset_identity(dataset),
        "modality": modality,
        "path": codec.info["path"],
        "columns": {"inputs": column, "id": id_column},
        "shard_size": shard_size,
        "batch_size": batch_size,
        "embedding": "quantized" if quantized else "float",
    }
    manifest_path = output_dir / MANIFEST
    if state.is_main_process:
        _start_or_check_manifest(manifest_path, identity)
    state.wait_for_everyone()
    if not state.is_main_process:
        _start_or_check_manifest(manifest_path, identity)  # every process refuses a mismatch, none waits forever

    model = model.to(state.device).eval()
    starts = list(range(0, len(dataset), shard_size))
    mine = [s for i, s in enumerate(starts) if i % state.num_processes == state.process_index]
    began = time.perf_counter()
    for start in mine:
        folder = output_dir / "shards" / _shard_name(start)
        if folder.is_dir():
            continue  # written by an earlier run
        rows = _embed_shard(model, codec, dataset, modality, column, id_column, processor, start,
                            min(start + shard_size, len(dataset)), batch_size, quantized)  # fmt: skip
        write_dir_atomically(folder, lambda staging: datasets.Dataset.from_dict(rows).save_to_disk(str(staging)), ())
        if progress:
            print(f"[process {state.process_index}] {folder.name}: {len(rows['id'])} rows", flush=True)
    state.wait_for_everyone()
    seconds = time.perf_counter() - began  # until the slowest process is done

    final = output_dir / "dataset"
    if state.is_main_process:
        if not final.is_dir():
            shards = [datasets.load_from_disk(str(output_dir / "shards" / _shard_name(s))) for s in starts]
            whole = datasets.concatenate_datasets(shards) if shards else datasets.Dataset.from_dict(_empty_rows())
            write_dir_atomically(final, lambda staging: whole.save_to_disk(str(staging)), ())
        if index != "none":
            _build_index(model, modality, codec, datasets.load_from_disk(str(final)), output_dir / "index", index,
                         ivf_lists)  # fmt: skip
        manifest = json.loads(manifest_path.read_text())
        manifest.update(complete=True, rows=len(dataset), index=index, embed_seconds=seconds, processes=state.num_processes)
        write_file_atomically(manifest_path, json.dumps(manifest, indent=2))
    state.wait_for_everyone()
    return datasets.load_from_disk(str(final))


def _start_or_check_manifest(manifest_path: Path, identity: dict) -> None:
    if manifest_path.exists():
        recorded = json.loads(manifest_path.read_text())
        if recorded.get("identity") != identity:
            raise ValueError(
                f"{manifest_path.parent} holds an embedding job for {recorded.get('identity')}, not {identity}; "
                "use another output_dir"
            )
        return
    write_file_atomically(manifest_path, json.dumps({"version": MANIFEST_VERSION, "identity": identity,
                                                     "complete": False}, indent=2))  # fmt: skip


def _empty_rows() -> dict:
    return {"id": [], "codes": [], "embedding": []}


@torch.no_grad()
def _embed_shard(model, codec, dataset, modality, column, id_column, processor, start, stop, batch_size, quantized):
    """Rows ``start .. stop - 1``: ids, codes (int16 when they fit) and embeddings (float32) as columns."""
    ids, codes, embeddings = [], [], []
    for row in range(start, stop, batch_size):
        batch = dataset[row : min(row + batch_size, stop)]
        inputs = _to_model_inputs(batch[column], processor, model)
        floats = model.get_features(modality, inputs, quantize=False, path=codec.info["path"]).float().cpu()
        batch_codes = codec.encode(floats)
        codes.append(batch_codes)
        embeddings.append(codec.decode(batch_codes) if quantized else floats)
        ids += [str(i) for i in (_plain(batch[id_column]) if id_column else range(row, row + len(batch[column])))]
    codes = torch.cat(codes)
    dtype = torch.int16 if codec.codebook_size <= 1 << 15 else torch.int32
    return {"id": ids, "codes": codes.to(dtype).numpy(), "embedding": torch.cat(embeddings).numpy()}


def _build_index(model, modality, codec, data, folder: Path, kind: str, ivf_lists: int | None, chunk: int = 1 << 16):
    """A code index of the embedded rows (their codes, ids in row order), saved to ``folder``."""
    import math

    columns = data.with_format("torch", columns=["codes"])
    info = codec.info
    if kind == "flat":
        built = CodeBindIndex(codec.codebook, codec.embed_dim, backend="torch", info=info)
    else:
        lists = ivf_lists or max(1, 2 ** round(math.log2(max(1.0, math.sqrt(len(data))))))
        built = CodeBindIVFIndex(codec.codebook, codec.embed_dim, num_lists=lists, backend="torch", info=info)
        sample = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: 64 * lists].sort().values
        built.train_codes(columns[sample.tolist()]["codes"])
    for start in range(0, len(data), chunk):
        stop = min(start + chunk, len(data))
        built.add_codes(columns[start:stop]["codes"], data[start:stop]["id"])
    built.save(folder)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="CodeBind model folder or Hub id")
    parser.add_argument("--dataset", required=True, help="datasets folder (save_to_disk, parquet, ...) or Hub id")
    parser.add_argument("--split", default="train")
    parser.add_argument("--dataset_config", default=None, help="Hub dataset configuration name")
    parser.add_argument("--column", required=True, help="column holding the model inputs")
    parser.add_argument("--modality", required=True)
    parser.add_argument("--id_column", default=None)
    parser.add_argument("--path", default=None, help="path whose shared codebook gives the codes")
    parser.add_argument("--processor", default=None, help="'module:callable' mapping column values to model inputs")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--shard_size", type=int, default=4096)
    parser.add_argument("--quantized", action="store_true", help="store quantised shared embeddings")
    parser.add_argument("--index", choices=INDEX_KINDS, default="none")
    parser.add_argument("--ivf_lists", type=int, default=None)
    args = parser.parse_args(argv)

    import datasets

    from ..modeling_codebind import CodeBindModel
    from ..training.batching import resolve_processor
    from ..training.config import DataArguments
    from ..training.data import load_dataset_dict

    datasets.disable_progress_bars()  # one line per shard instead
    splits = load_dataset_dict(DataArguments(dataset=args.dataset, name=args.dataset_config, train_split=args.split))
    if args.split not in splits:
        raise SystemExit(f"{args.dataset} has no split {args.split!r}; it has {sorted(splits)}")
    model = CodeBindModel.from_pretrained(args.model)
    data = embed_dataset(
        model, splits[args.split], args.modality, args.column, args.output_dir, id_column=args.id_column,
        processor=resolve_processor(args.processor) if args.processor else None, path=args.path,
        batch_size=args.batch_size, shard_size=args.shard_size, quantized=args.quantized, index=args.index,
        ivf_lists=args.ivf_lists, model_name=args.model,
    )  # fmt: skip
    if process_state().is_main_process:
        print(f"{len(data)} rows embedded into {Path(args.output_dir) / 'dataset'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
