"""``codebind-demo``: the whole method on a laptop-sized problem, offline, in minutes.

1. builds (first run) or loads the embedded dataset (spoken digits by espeak-ng, sklearn's handwritten
   digits, MiniLM prompt embeddings);
2. per seed: stage 0 aligns a small image tower to the frozen text embeddings (the bridge); stage 1 trains
   the audio path as CodeBind and, from the same weights and batches, as a hard-alignment baseline
   (plus two ablations with ``--ablations``);
3. measures zero-shot accuracy, retrieval, voice/speed/pitch probes and codebook usage on held-out voices,
   prints a table and writes ``results.json`` and PNG plots to ``--output``.

Example:

```bash
codebind-demo                     # 3 seeds on 2 worker processes, under 10 minutes on 2 CPU cores
codebind-demo --quick             # CI: 1 seed, fewer clips and steps, under 2 minutes
codebind-demo --ablations --output runs/demo
```
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..adapters.io import write_file_atomically
from .data import DEFAULT_SPEC, QUICK_SPEC, DemoData, default_cache_dir, ensure_espeak, load_demo_data
from .evaluate import aggregate, evaluate_arm
from .plots import plot_codebook_usage, plot_losses, plot_probes, plot_tsne
from .train import ABLATIONS, DEFAULT_BUDGET, QUICK_BUDGET, arm_model, build_model, train_arm, train_bridge

REPORTED = (
    "zero_shot_acc",
    "audio_to_image_r1",
    "audio_to_image_r5",
    "audio_to_text_r1",
    "audio_to_text_r5",
    "modality_gap_audio_image",
    "modality_gap_audio_text",
    "probe_voice_shared",
    "probe_voice_specific",
    "probe_voice_concat",
    "probe_speed_shared",
    "probe_speed_specific",
    "probe_speed_concat",
    "probe_pitch_shared",
    "probe_pitch_specific",
    "probe_pitch_concat",
    "codebook_usage",
    "zero_shot_acc_prequant",
    "probe_voice_specific_prequant",
    "probe_voice_concat_prequant",
    "probe_speed_specific_prequant",
    "probe_speed_concat_prequant",
)
DEFAULT_OUTPUT = Path("outputs") / "codebind-demo"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="codebind-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI variant: 1 seed, fewer clips and steps (< 2 min)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"results folder (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--ablations", action="store_true", help="also train codebook-without-decoupling and decoupling-without-codebook")
    parser.add_argument("--cache-dir", type=Path, default=None, help="dataset cache (default: $CODEBIND_DEMO_CACHE or ~/.cache/codebind_hf/demo)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3, or 1 with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--install-system-deps", action="store_true",
                        help="install espeak-ng (apt-get or brew) if it is missing; without it the demo changes nothing "
                             "on the system and stops with the command to run")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes running the (arm, seed) pairs in parallel (default: one per CPU core)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the demo's tiny matrices run fastest on one, even on a busy machine)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    return args


def _loss_summary(history: dict[str, list[float]]) -> dict[str, float]:
    loss = history["loss"]
    n = max(1, len(loss) // 10)
    return {"first": sum(loss[:n]) / n, "last": sum(loss[-n:]) / n, "steps": len(loss)}


def format_table(results: dict, arms: list[str], metrics=REPORTED) -> str:
    """Plain-text table: one row per metric, one column per arm, ``mean ± std`` (``-`` where not applicable)."""
    cells = [["metric", *arms]]
    for metric in metrics:
        row = [metric]
        for arm in arms:
            entry = results[arm].get(metric, {"mean": None})
            row.append("-" if entry["mean"] is None else f"{entry['mean']:.3f} ± {entry['std']:.3f}")
        cells.append(row)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def configure_process(threads: int | None, progress: bool) -> None:
    """Process-wide settings of a demo process: the torch thread count (``None``: left as is) and, without
    ``progress``, no Hugging Face Hub / transformers save-and-load bars. Only `main` and the initialiser of the worker
    processes `run_demo` spawns call this: a library call leaves its caller's settings as they were."""
    if threads is not None:
        torch.set_num_threads(threads)
    if not progress:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as transformers_logging

        disable_progress_bars()
        transformers_logging.disable_progress_bar()


def run_arm(spec, budget, arm: str, seed: int, cache_dir, progress: bool, keep_details: bool,
            data: DemoData | None = None) -> dict:
    """One arm of one seed: stage 0 (deterministic for the seed, so every arm of a seed starts from the same bridge
    and initial weights), stage 1 and the evaluation. Runs in a worker process or in this one.

    Returns the arm's metrics and loss summaries, and with ``keep_details`` what the plots need (embeddings, loss
    curve, codebook statistics). ``data`` is the loaded dataset when running in this process (workers read the cache).
    """
    data = data if data is not None else load_demo_data(spec, cache_dir=cache_dir, progress=False)
    workdir = Path(tempfile.mkdtemp(prefix="codebind-demo-"))  # base model and trainer run of the arm
    try:
        reference = build_model(data, budget, seed)
        bridge = _loss_summary({"loss": train_bridge(reference, data, budget, seed, progress)})
        model, history = train_arm(arm_model(reference, data, budget, arm, seed), data, budget, arm, seed, workdir, progress)
        metrics, embeddings, codebooks = evaluate_arm(model, arm, data, seed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    line = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("zero_shot_acc", "audio_to_image_r1", "probe_voice_concat", "probe_voice_shared")
                     if metrics[k] is not None)  # fmt: skip
    print(f"[codebind-demo] seed {seed} {arm}: {line}", flush=True)
    out = {"seed": seed, "arm": arm, "metrics": metrics, "loss": _loss_summary(history), "bridge": bridge}
    if keep_details:
        out.update(embeddings=embeddings, history=history)
        out["codebooks"] = codebooks
    return out


def _run_jobs(data: DemoData, budget, arms, seed_list, cache_dir, workers: int, threads: int, progress: bool) -> list[dict]:
    """Every (seed, arm), in ``workers`` spawned processes (no save/load bars) or in this process, on ``threads``
    torch threads. The slow CodeBind jobs go first, so the pool ends together."""
    jobs = [(data.spec, budget, arm, seed, cache_dir, progress and workers == 1, seed == seed_list[0])
            for arm in arms for seed in seed_list]  # fmt: skip
    if workers == 1:
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return [run_arm(*job, data=data) for job in jobs]
        finally:
            torch.set_num_threads(caller_threads)  # a library call leaves the process as it found it
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    print(f"[codebind-demo] {len(jobs)} runs (arms x seeds) on {workers} worker processes, {threads} thread(s) each", flush=True)

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=configure_process,
                             initargs=(threads, False)) as pool:
        futures = [pool.submit(run_arm, *job) for job in jobs]
        with tqdm(total=len(futures), desc="arms x seeds", disable=not progress, dynamic_ncols=True) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        return [future.result() for future in futures]


def run_demo(
    quick: bool = False,
    output: str | os.PathLike = DEFAULT_OUTPUT,
    ablations: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seeds: int | None = None,
    progress: bool = True,
    workers: int | None = None,
    threads: int | None = None,
) -> dict:
    """Run the demo and return what ``results.json`` holds: ``{arm: {metric: {"mean", "std"}}, "meta": {...}}``.

    ``workers`` (default: one per CPU core) run the (arm, seed) pairs in parallel processes with ``threads`` torch
    threads each (default 1: the demo's tiny matrices run fastest on one). With one worker they run in this process,
    on ``threads`` threads (default: as many as it has) restored afterwards; Hub/transformers progress bars stay as
    the caller set them (``codebind-demo --no-progress`` turns them off).
    """
    start = time.perf_counter()
    output = Path(output)
    spec, budget = (QUICK_SPEC, QUICK_BUDGET) if quick else (DEFAULT_SPEC, DEFAULT_BUDGET)
    seed_list = list(range(seeds if seeds is not None else (1 if quick else 3)))
    arms = ["codebind", "baseline", *(ABLATIONS if ablations else ())]
    workers = max(1, min(workers or os.cpu_count() or 1, len(seed_list) * len(arms)))

    print(f"[codebind-demo] dataset cache: {Path(cache_dir or default_cache_dir())}", flush=True)
    data = load_demo_data(spec, cache_dir=cache_dir, progress=progress)
    print(f"[codebind-demo] {data.summary()}", flush=True)
    data_seconds = time.perf_counter() - start

    if threads is None:
        threads = 1 if workers > 1 else torch.get_num_threads()
    runs = _run_jobs(data, budget, arms, seed_list, cache_dir, workers, threads, progress)
    by_key = {(run["arm"], run["seed"]): run for run in runs}
    first = {arm: by_key[arm, seed_list[0]] for arm in arms}
    per_seed = {arm: [by_key[arm, seed]["metrics"] for seed in seed_list] for arm in arms}
    losses = {arm: [by_key[arm, seed]["loss"] for seed in seed_list] for arm in arms}
    losses["bridge"] = [by_key[arms[0], seed]["bridge"] for seed in seed_list]
    # Every arm of a seed retrains the same deterministic bridge; check they really started from one bridge.
    for seed in seed_list:
        bridges = {json.dumps(by_key[arm, seed]["bridge"]) for arm in arms}
        if len(bridges) != 1:
            raise RuntimeError(f"seed {seed}: the arms' stage-0 bridges differ ({bridges}); the comparison would be unfair")
    results: dict = {arm: aggregate(per_seed[arm]) for arm in arms}
    plots = {
        "tsne": plot_tsne({a: first[a]["embeddings"] for a in ("baseline", "codebind")}, data.audio_test_meta[:, 0],
                          data.image_test_labels, data.prompt_labels, output / "tsne_shared.png"),  # fmt: skip
        "codebook_usage": plot_codebook_usage(first["codebind"]["codebooks"], output / "codebook_usage.png"),
        "probes": plot_probes(results, arms, output / "probes.png"),
        "losses": plot_losses({arm: first[arm]["history"] for arm in arms}, output / "losses.png"),
    }
    results["meta"] = {
        "quick": quick,
        "seeds": seed_list,
        "arms": arms,
        "wall_time_s": time.perf_counter() - start,
        "data_time_s": data_seconds,
        "losses": losses,
        "per_seed": per_seed,
        "budget": budget.to_dict(),
        "data": {"summary": data.summary(), "fingerprint": spec.fingerprint(), "test_voices": list(spec.test_voices)},
        "plots": {name: path.name for name, path in plots.items()},
        "environment": {"torch": torch.__version__, "workers": workers, "threads_per_worker": threads,
                        "cpu_count": os.cpu_count(), "python": platform.python_version()},
    }
    write_file_atomically(output / "results.json", json.dumps(results, indent=2))
    print("\n" + format_table(results, arms), flush=True)
    print(f"\n[codebind-demo] wall time {results['meta']['wall_time_s']:.0f} s; results and plots in {output}/", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``codebind-demo``."""
    args = parse_args(argv)
    configure_process(None, not args.no_progress)  # threads: run_demo sets them for its runs only
    if args.install_system_deps:  # the one place the demo may change the system, and only when asked
        ensure_espeak(install=True)
    run_demo(args.quick, args.output, args.ablations, args.cache_dir, args.seeds, not args.no_progress, args.workers, args.threads)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["REPORTED", "DEFAULT_OUTPUT", "parse_args", "format_table", "configure_process", "run_demo", "main"]
