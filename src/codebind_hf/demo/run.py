"""``codebind-demo``: the whole method on a laptop-sized problem, offline, in minutes.

1. builds (first run) or loads the embedded dataset (spoken digits by espeak-ng, sklearn's handwritten
   digits, MiniLM prompt embeddings);
2. per seed: stage 0 aligns a small image tower to the frozen text embeddings (the bridge); stage 1 trains
   the audio path, on each paired fraction of each condition (speech; a vibration-sensor view), as CodeBind and,
   from the same weights and batches, as a hard-alignment baseline (plus the ablations with ``--ablations``);
3. measures zero-shot accuracy, retrieval, voice/speed/pitch probes and codebook usage on held-out voices,
   prints the sweep's table and writes ``results.json`` and PNG plots to ``--output``.

Example:

```bash
codebind-demo                     # reduced sweep: 2 %, 20 %, 100 % of the paired clips, 1 seed, 2 worker processes
codebind-demo --full              # the full sweep: 2 %, 5 %, 20 %, 100 %, 3 seeds
codebind-demo --quick             # CI: one fraction, 1 seed, fewer clips and steps
codebind-demo --ablations --output runs/demo
```
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..adapters.io import write_file_atomically
from .conditions import CONDITIONS
from .data import DEFAULT_SPEC, QUICK_SPEC, default_cache_dir, ensure_espeak, load_demo_data
from .plots import plot_codebook_usage, plot_losses, plot_probes, plot_sweep, plot_tsne
from .sweep import (
    FULL_FRACTIONS,
    QUICK_FRACTIONS,
    SweepPoint,
    configure_process,
    fraction_key,
    nest_results,
    paired_rows,
    run_points,
    sweep_entry,
)
from .train import ABLATIONS, DEFAULT_BUDGET, QUICK_BUDGET, DemoBudget

# The reduced sweep of the default run (the 10-minute budget on 2 cores); --full adds 5 % and two more seeds.
DEFAULT_FRACTIONS = (0.02, 0.2, 1.0)
DEFAULT_SEEDS = 1
FULL_SEEDS = 3

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
    parser.add_argument("--quick", action="store_true", help="CI variant: one fraction, 1 seed, fewer clips and steps")
    parser.add_argument("--full", action="store_true",
                        help=f"the full sweep: fractions {', '.join(map(fraction_key, FULL_FRACTIONS))}, {FULL_SEEDS} seeds (the default "
                             f"runs {', '.join(map(fraction_key, DEFAULT_FRACTIONS))} with {DEFAULT_SEEDS} seed)")
    parser.add_argument("--fractions", type=float, nargs="+", default=None, help="paired fractions in (0, 1] (overrides the sweep's)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=None, help=f"conditions (default: all of {CONDITIONS})")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps of every arm at every point (default: DemoBudget.path_steps)")
    parser.add_argument("--width", type=int, default=None,
                        help="width of the shared and specific spaces (default 64: 8 sub-vectors of 8); a multiple of 8")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"results folder (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--ablations", action="store_true", help="also train codebook-without-decoupling and decoupling-without-codebook")
    parser.add_argument("--cache-dir", type=Path, default=None, help="dataset cache (default: $CODEBIND_DEMO_CACHE or ~/.cache/codebind_hf/demo)")
    parser.add_argument("--seeds", type=int, default=None, help=f"number of seeds (default: {DEFAULT_SEEDS}; {FULL_SEEDS} with --full, 1 with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--install-system-deps", action="store_true",
                        help="install espeak-ng (apt-get or brew) if it is missing; without it the demo changes nothing "
                             "on the system and stops with the command to run")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes running the sweep's points in parallel (default: one per CPU core)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the demo's tiny matrices run fastest on one, even on a busy machine)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.quick and args.full:
        parser.error("--quick and --full exclude each other")
    bad = [f for f in args.fractions or () if not 0.0 < f <= 1.0]
    if bad:
        parser.error(f"--fractions must lie in (0, 1], got {bad}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if args.width is not None and (args.width < 8 or args.width % 8):
        parser.error(f"--width must be a positive multiple of 8 (the codevector size), got {args.width}")
    return args


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


SWEEP_METRICS = {
    "zero_shot_acc": "zero-shot digit accuracy (audio -> prompts)",
    "probe_voice_specific": "voice probe: specific part (baseline: its one embedding)",
    "probe_speed_specific": "speed probe: specific part (baseline: its one embedding)",
    "probe_voice_specific_prequant": "voice probe: specific part before the codebook",
}


def format_sweep_table(sweep: dict, arms: list[str], rows: dict[str, int], metrics: dict = SWEEP_METRICS) -> str:
    """One block per metric: a line per (condition, paired fraction), a column per arm, ``mean ± std`` over seeds."""
    blocks = []
    for metric, title in metrics.items():
        cells = [["condition", "paired", "rows", *arms]]
        for condition, by_fraction in sweep.items():
            for fraction in sorted(by_fraction, key=float):
                row = [condition, f"{float(fraction):.0%}", str(rows.get(fraction, "?"))]
                for arm in arms:
                    entry = sweep_entry(by_fraction[fraction].get(arm, {}), metric)
                    row.append("-" if entry.get("mean") is None else f"{entry['mean']:.3f} ± {entry['std']:.3f}")
                cells.append(row)
        if all(c == "-" for row in cells[1:] for c in row[3:]):
            continue
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        blocks.append(f"{title}\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def _settings(quick: bool, full: bool, seeds, fractions, conditions, width, budget=None, steps=None):
    """What a run covers: spec, budget, seeds, fractions, conditions (the reduced default, --full or --quick)."""
    if quick and full:
        raise ValueError("--quick and --full exclude each other")
    spec, default_budget = (QUICK_SPEC, QUICK_BUDGET) if quick else (DEFAULT_SPEC, DEFAULT_BUDGET)
    budget = budget or default_budget
    if width is not None:
        budget = dataclasses.replace(budget, embed_dim=width, specific_dim=width)
    if steps is not None:
        budget = dataclasses.replace(budget, path_steps=steps)
    default_fractions, default_seeds = (QUICK_FRACTIONS, 1) if quick else (FULL_FRACTIONS, FULL_SEEDS) if full else (DEFAULT_FRACTIONS, DEFAULT_SEEDS)
    fractions = sorted(set(fractions or default_fractions))
    conditions = list(dict.fromkeys(conditions or CONDITIONS))
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"Unknown condition(s) {unknown}; expected some of {CONDITIONS}")
    return spec, budget, list(range(seeds if seeds is not None else default_seeds)), fractions, conditions


def run_demo(
    quick: bool = False,
    output: str | os.PathLike = DEFAULT_OUTPUT,
    ablations: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seeds: int | None = None,
    progress: bool = True,
    workers: int | None = None,
    threads: int | None = None,
    full: bool = False,
    fractions: list[float] | None = None,
    conditions: list[str] | None = None,
    width: int | None = None,
    budget: DemoBudget | None = None,
    steps: int | None = None,
) -> dict:
    """Run the sweep and return what ``results.json`` holds: ``{"sweep": {condition: {fraction: {arm: {metric:
    {"mean", "std", "per_seed"}}}}}, "meta": {...}}`` (fractions as strings, ``"0.02"`` ... ``"1"``).

    The default is the reduced sweep (`DEFAULT_FRACTIONS`, `DEFAULT_SEEDS`); ``full`` runs `FULL_FRACTIONS` with `FULL_SEEDS`,
    ``quick`` one fraction and one seed on the small spec. ``fractions`` / ``conditions`` / ``seeds`` / ``width``
    (shared and specific width), ``budget`` (a [`DemoBudget`]) and ``steps`` (its ``path_steps``) override them.

    ``workers`` (default: one per CPU core) run the points in parallel processes with ``threads`` torch threads each
    (default 1: the demo's tiny matrices run fastest on one). With one worker they run in this process, on
    ``threads`` threads (default: as many as it has) restored afterwards; Hub/transformers progress bars stay as the
    caller set them (``codebind-demo --no-progress`` turns them off).
    """
    start = time.perf_counter()
    output = Path(output)
    spec, budget, seed_list, fractions, conditions = _settings(quick, full, seeds, fractions, conditions, width, budget, steps)
    arms = ["codebind", "baseline", *(ABLATIONS if ablations else ())]
    points = [SweepPoint(c, f, a, s) for c in conditions for f in fractions for a in arms for s in seed_list]
    workers = max(1, min(workers or os.cpu_count() or 1, len(points)))
    scarce, reference = fractions[0], (conditions[0], fractions[-1])
    detailed = {p for p in points if p.seed == seed_list[0] and (p.fraction == scarce or (p.condition, p.fraction) == reference)}

    print(f"[codebind-demo] dataset cache: {Path(cache_dir or default_cache_dir())}", flush=True)
    data = load_demo_data(spec, cache_dir=cache_dir, progress=progress)
    print(f"[codebind-demo] {data.summary()}", flush=True)
    data_seconds = time.perf_counter() - start
    if threads is None:
        threads = 1 if workers > 1 else torch.get_num_threads()
    folder = Path(tempfile.mkdtemp(prefix="codebind-demo-references-"))  # stage-0 models, one per seed
    try:
        bridges, runs = run_points(data, budget, points, detailed, cache_dir, folder, workers, threads, progress)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    by_key = {SweepPoint(r["condition"], r["fraction"], r["arm"], r["seed"]): r for r in runs}
    sweep = nest_results(runs)
    fkeys = [fraction_key(f) for f in fractions]
    subsets = {fraction_key(f): {str(s): paired_rows(data.audio_train_meta, f, s).tolist() for s in seed_list} for f in fractions}
    point_meta: dict = {}
    for p in points:
        run = by_key[p]
        entry = {k: run[k] for k in ("seed", "loss", "batch_size", "subset", "row_order", "bridge_sha256", "cpu_s")}
        point_meta.setdefault(p.condition, {}).setdefault(fraction_key(p.fraction), {}).setdefault(p.arm, []).append(entry)

    first = {p.arm: by_key[p] for p in detailed if (p.condition, p.fraction) == reference}
    plots = {"sweep": plot_sweep(sweep, arms, output / "sweep.png")}
    for condition in conditions:
        scarce_runs = {a: by_key[SweepPoint(condition, scarce, a, seed_list[0])] for a in ("baseline", "codebind")}
        plots[f"tsne_{condition}"] = plot_tsne(
            {a: r["embeddings"] for a, r in scarce_runs.items()}, data.audio_test_meta[:, 0], data.image_test_labels,
            data.prompt_labels, output / f"tsne_{condition}_{fraction_key(scarce)}.png",
            title=f"Shared embeddings (t-SNE), {condition}, {scarce:.0%} of the paired clips: held-out voices, "
                  "held-out images, class prompts")  # fmt: skip
    reference_results = sweep[reference[0]][fraction_key(reference[1])]
    plots["codebook_usage"] = plot_codebook_usage(first["codebind"]["codebooks"], output / "codebook_usage.png")
    plots["probes"] = plot_probes(reference_results, arms, output / "probes.png")
    plots["losses"] = plot_losses({arm: first[arm]["history"] for arm in arms}, output / "losses.png")
    results = {"sweep": sweep}
    results["meta"] = {
        "quick": quick,
        "full": full,
        "conditions": conditions,
        "fractions": fkeys,
        "arms": arms,
        "seeds": seed_list,
        "step_rule": f"every arm at every fraction: {budget.path_steps} optimiser steps, warm-up {budget.warmup_steps} "
                     f"then cosine over them, batch min({budget.batch_size}, rows); same sampler seed per seed",
        "reference_point": {"condition": reference[0], "fraction": fraction_key(reference[1])},
        "subsets": subsets,
        "points": point_meta,
        "bridges": {str(s): b["bridge"] for s, b in sorted(bridges.items())},
        "cpu_s": {"bridges": sum(b["cpu_s"] for b in bridges.values()), "points": sum(r["cpu_s"] for r in runs)},
        "wall_time_s": time.perf_counter() - start,
        "data_time_s": data_seconds,
        "budget": budget.to_dict(),
        "data": {"summary": data.summary(), "fingerprint": spec.fingerprint(), "test_voices": list(spec.test_voices)},
        "plots": {name: path.name for name, path in plots.items()},
        "environment": {"torch": torch.__version__, "workers": workers, "threads_per_worker": threads,
                        "cpu_count": os.cpu_count(), "python": platform.python_version()},
    }  # fmt: skip
    write_file_atomically(output / "results.json", json.dumps(results, indent=2))
    rows = {k: len(v[str(seed_list[0])]) for k, v in subsets.items()}
    print(f"\n[codebind-demo] the sweep, mean ± std over {len(seed_list)} seed(s)\n", flush=True)
    print(format_sweep_table(sweep, arms, rows), flush=True)
    print(f"\n[codebind-demo] every metric at {reference[0]}, {reference[1]:.0%} of the paired clips\n", flush=True)
    print(format_table(reference_results, arms), flush=True)
    print(f"\n[codebind-demo] wall time {results['meta']['wall_time_s']:.0f} s; results and plots in {output}/", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``codebind-demo``."""
    args = parse_args(argv)
    configure_process(None, not args.no_progress)  # threads: run_demo sets them for its runs only
    if args.install_system_deps:  # the one place the demo may change the system, and only when asked
        ensure_espeak(install=True)
    run_demo(args.quick, args.output, args.ablations, args.cache_dir, args.seeds, not args.no_progress, args.workers,
             args.threads, full=args.full, fractions=args.fractions, conditions=args.conditions, width=args.width,
             steps=args.steps)  # fmt: skip
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["REPORTED", "DEFAULT_OUTPUT", "DEFAULT_FRACTIONS", "SWEEP_METRICS", "parse_args", "format_table", "configure_process",
           "format_sweep_table", "run_demo", "main"]
