"""Multi-process embedding: ``codebind-embed`` on 1 and on 2 `accelerate` processes, same data, same output.

The model is a CodeBind model whose depth tower is a ViT (``--width`` hidden, ``--layers`` blocks, 32 x 32 inputs in
8 x 8 patches) with random weights; the dataset is ``--rows`` random depth maps (a ``save_to_disk`` folder). The
embedding job (``python -m codebind_hf.cli.embed``, shards of ``--shard-size`` rows, batches of ``--batch-size``)
runs as one process, as two CPU processes under ``accelerate launch --multi_gpu --num_processes 2`` (with
``ACCELERATE_USE_CPU=1``: gloo), each with ``--threads`` torch threads, and as one process with twice the threads
(the same cores used by intra-op threads instead). Times: the embedding phase (``embed_seconds`` in the job's
``embed.json``: from the first shard to the last process done, so start-up is left out) and the whole command.
Checks that every run wrote the same dataset.

Run: ``python benchmarks/perf/embed.py [--rows 2048]``; the last line is ``RESULT {json}`` with
``speedup_2_processes`` (embedding phase, 1 process over 2 processes at the same threads per process),
``speedup_2_processes_vs_threads`` (1 process with 2x threads over 2 processes), ``speedup_2_processes_command``
(whole commands) and ``identical_outputs``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from codebind_hf import CodeBindConfig, CodeBindModel


def make_inputs(folder: Path, rows: int, width: int, layers: int) -> None:
    import datasets

    vit = {"model_type": "vit", "hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": 4,
           "intermediate_size": 4 * width, "image_size": 32, "patch_size": 8, "num_channels": 1}  # fmt: skip
    config = CodeBindConfig(
        modalities={"vision": {"family": "hf", "backbone": {**vit, "num_channels": 3}},
                    "depth": {"family": "hf", "backbone": vit}},  # fmt: skip
        paths={"depth": {"bridges": ["vision"]}},
        embed_dim=256,
        specific_dim=256,
        quantizer={"shared_codebook_size": 1024, "specific_codebook_size": 64},
        decoder={"enabled": False},
    )
    torch.manual_seed(0)
    CodeBindModel(config).eval().save_pretrained(folder / "model")
    values = torch.randn(rows, 1, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
    datasets.Dataset.from_dict({"depth": list(values)}).save_to_disk(str(folder / "data"))


def run_job(folder: Path, name: str, processes: int, threads: int, args) -> dict:
    """One embedding job; returns its timings."""
    out = folder / name
    job = ["-m", "codebind_hf.cli.embed", "--model", str(folder / "model"), "--dataset", str(folder / "data"),
           "--column", "depth", "--modality", "depth", "--output_dir", str(out), "--batch_size", str(args.batch_size),
           "--shard_size", str(args.shard_size)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes > 1:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--main_process_port", str(29700 + os.getpid() % 1000), *job]  # fmt: skip
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        command = [sys.executable, *job]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "embed.json").read_text())
    result = {"processes": processes, "threads_per_process": threads, "command_s": seconds,
              "embed_s": manifest["embed_seconds"]}  # fmt: skip
    print(f"{name}: {processes} process(es) x {threads} thread(s): embedding {result['embed_s']:.1f} s, "
          f"command {seconds:.1f} s")  # fmt: skip
    return result


def same_dataset(a: Path, b: Path) -> bool:
    import datasets

    left, right = datasets.load_from_disk(str(a)), datasets.load_from_disk(str(b))
    return left.data.table.equals(right.data.table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_inputs(folder, args.rows, args.width, args.layers)
        one = run_job(folder, "one", 1, args.threads, args)
        two = run_job(folder, "two", 2, args.threads, args)
        threaded = run_job(folder, "threads", 1, 2 * args.threads, args)
        identical = all(same_dataset(folder / "one" / "dataset", folder / name / "dataset") for name in ("two", "threads"))
    result = {
        "rows": args.rows,
        "runs": {"one": one, "two": two, "one_more_threads": threaded},
        "speedup_2_processes": one["embed_s"] / two["embed_s"],
        "speedup_2_processes_vs_threads": threaded["embed_s"] / two["embed_s"],
        "speedup_2_processes_command": one["command_s"] / two["command_s"],
        "identical_outputs": identical,
        "cpus": os.cpu_count(),
    }
    print(
        f"2 processes: {result['speedup_2_processes']:.2f}x one process ({result['speedup_2_processes_command']:.2f}x "
        f"with start-up), {result['speedup_2_processes_vs_threads']:.2f}x one process with twice the threads; "
        f"outputs identical: {identical}"
    )
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
