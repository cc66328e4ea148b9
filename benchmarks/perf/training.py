"""Path training speed with and without the frozen-feature cache (``codebind-train``'s ``cache.enabled``).

A small model whose frozen bridges cost several times the trainable part: text (BERT) and image (ViT over
32x32 images) bridges of width ``--bridge-width`` and ``--bridge-layers`` blocks, and a small 1-channel ViT
depth target trained with LoRA. The same run (same data, seed, steps; reconstruction off so both runs compute
the same loss) is timed twice: towers live, then bridges read from the cache (built once, its build time
reported apart). Also measured: the bridge forward vs one trainable step (forward + backward of the target
tower, heads, codebooks and losses), the ratio the cache removes.
Run: ``python benchmarks/perf/training.py [--steps 30] [--threads 1]``; last line ``RESULT {json}`` with
``cache_speedup`` first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from codebind_hf.training.config import TrainConfig
from codebind_hf.training.train_path import train


def _vit(width: int, layers: int, image: int, patch: int, channels: int = 3) -> dict:
    return {"model_type": "vit", "hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": 4,
            "intermediate_size": 4 * width, "image_size": image, "patch_size": patch, "num_channels": channels}


def model_config(args) -> dict:
    bert = {"model_type": "bert", "hidden_size": args.bridge_width, "num_hidden_layers": args.bridge_layers,
            "num_attention_heads": 4, "intermediate_size": 4 * args.bridge_width, "vocab_size": 1000, "max_position_embeddings": 64}
    return {
        "modalities": {
            "text": {"family": "hf", "backbone": bert},
            "vision": {"family": "hf", "backbone": _vit(args.bridge_width, args.bridge_layers, 32, 4)},
            "depth": {"family": "hf", "backbone": _vit(32, 2, 16, 8, channels=1)},
        },
        "bridges": ["text", "vision"],
        "embed_dim": 64,
        "specific_dim": 64,
        "quantizer": {"shared_codebook_size": 128, "specific_codebook_size": 32},
        "decoder": {"enabled": False},
    }


class _Processor:
    """Token ids and arrays are already in the columns; text prompts are hashed to ids (length 24)."""

    def __call__(self, text=None, images=None, depth=None, **_):
        out = {}
        if text is not None:
            ids = [[3 + sum(map(ord, w)) % 990 for w in s.split()] for s in text]
            out["input_ids"] = torch.tensor([(x * 24)[:24] for x in ids])
        if images is not None:
            out["pixel_values"] = torch.from_numpy(np.stack([np.asarray(x, np.float32) for x in images]))
        if depth is not None:
            out["depth_values"] = torch.from_numpy(np.stack([np.asarray(x, np.float32) for x in depth]))
        return out

    def to_dict(self):
        return {"processor_class": "benchmark"}


def dataset(rows: int):
    import datasets

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, rows)
    features = datasets.Features({"image": datasets.Array3D((3, 32, 32), "float32"), "depth": datasets.Array3D((1, 16, 16), "float32"),
                                  "label": datasets.ClassLabel(names=[f"class{i}" for i in range(10)])})
    columns = {"image": rng.normal(size=(rows, 3, 32, 32)).astype(np.float32),
               "depth": rng.normal(size=(rows, 1, 16, 16)).astype(np.float32), "label": labels}
    return datasets.Dataset.from_dict(columns, features=features)


def run_config(args, output_dir: str, cache: bool) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"config": model_config(args)},
        "path": {"target": "depth", "mode": "lora", "lora_last_n_blocks": 1, "temperature": 0.1, "reconstruction": False,
                 "loss_weights": {"vq": 1.0}},
        "data": {"columns": {"vision": "image", "depth": "depth", "label": "label"}, "prompt_templates": "photo"},
        "cache": {"enabled": cache, "batch_size": 64},
        "codebooks": {"kmeans_init_batches": 1},
        "training": {"output_dir": output_dir, "seed": 0, "per_device_batch_size": args.batch, "max_train_steps": args.steps,
                     "checkpointing_steps": None, "logging_steps": 10_000, "save_full_model": False, "warmup_steps": 0,
                     "overwrite_output_dir": True},  # the cached run is repeated in its folder (its cache is reused)
    })


def _median_seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def cost_ratio(model, args) -> dict:
    """Seconds of the bridges' forward vs one trainable step (target forward + backward, heads, codebooks, losses)."""
    from codebind_hf.losses.objective import PathObjective

    torch.manual_seed(0)
    ids = torch.randint(3, 990, (args.batch, 24))
    images, depth = torch.randn(args.batch, 3, 32, 32), torch.randn(args.batch, 1, 16, 16)
    model.train()
    objective = PathObjective(model, "depth").train()
    with torch.no_grad():
        cached = {"text": model.tower_outputs("text", ids)[0], "vision": model.tower_outputs("vision", images)[0]}

    def bridges():
        with torch.no_grad():
            model.tower_outputs("text", ids)
            model.tower_outputs("vision", images)

    def trainable_step():
        objective(inputs={"depth": depth}, cached=cached)["loss"].backward()

    bridge_s, step_s = _median_seconds(bridges), _median_seconds(trainable_step)
    model.zero_grad(set_to_none=True)
    return {"bridge_forward_seconds": bridge_s, "trainable_step_seconds": step_s, "bridge_to_trainable_ratio": bridge_s / step_s}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--bridge-width", type=int, default=256)
    parser.add_argument("--bridge-layers", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared machine)")
    args = parser.parse_args(argv)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous_threads)


def _run(args) -> dict:
    data = dataset(args.rows)
    result = {"steps": args.steps, "batch": args.batch, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        live = train(run_config(args, f"{tmp}/live", cache=False), dataset=data, processor=_Processor())
        start = time.perf_counter()
        first = train(run_config(args, f"{tmp}/cached", cache=True), dataset=data, processor=_Processor())  # builds the cache
        result["cache_build_and_first_run_seconds"] = time.perf_counter() - start
        cached = train(run_config(args, f"{tmp}/cached", cache=True), dataset=data, processor=_Processor())  # reuses it
        result.update(cost_ratio(live.model, args))
    result["steps_per_second_live"] = live.steps_per_second
    result["steps_per_second_cached"] = max(first.steps_per_second, cached.steps_per_second)
    result["cache_speedup"] = result["steps_per_second_cached"] / result["steps_per_second_live"]
    result["first_loss_live"], result["first_loss_cached"] = live.losses[0], cached.losses[0]
    print(f"bridges forward {result['bridge_forward_seconds'] * 1e3:.1f} ms vs trainable step "
          f"{result['trainable_step_seconds'] * 1e3:.1f} ms ({result['bridge_to_trainable_ratio']:.1f}x)")
    print(f"live towers: {result['steps_per_second_live']:.2f} steps/s; cached bridges: {result['steps_per_second_cached']:.2f} steps/s "
          f"-> {result['cache_speedup']:.2f}x")
    print("RESULT " + json.dumps({"cache_speedup": result["cache_speedup"], **result}))
    return result


if __name__ == "__main__":
    main()
