"""The paired-data sweep: every arm trained on nested fractions of the paired training clips, per condition.

What a point of the sweep is: ``(condition, fraction, arm, seed)``.

- **Subsets** ([`paired_rows`]): the paired rows (clip, image of its digit, label) of fraction ``f`` are the first
  ``round(f * N)`` rows of one seeded order of the training split, so the 5 % rows include the 2 % rows. The order
  ranks each row by ``max(voice rank / voices, clip rank / clips per voice)``: a prefix holds about ``sqrt(f)`` of
  the voices with about ``sqrt(f)`` of their clips each (fewer voices *and* fewer clips per voice); a voice's clips
  are ordered digit by digit (one clip of every digit before a second of any), so a small subset still has every
  digit. The order, and so each subset, depends on the seed (the spread over seeds includes which clips were drawn);
  the test voices never change.
- **Budget** ([`point_budget`]): at every fraction, every arm takes the same ``path_steps`` optimiser steps with the
  same warm-up and cosine schedule over them, at batch ``min(batch_size, rows)`` (a subset smaller than a batch is
  one batch of all its rows, reshuffled every epoch): equal compute per point, so small subsets are seen for many
  more epochs — where over-fitting shows.
- **Same rows, same order**: every arm of a ``(condition, fraction, seed)`` reads its rows through the path
  trainer's sampler and collator with the same seed; a [`~codebind_hf.demo.processing.RowTrace`] records the rows the
  processor actually received, and [`row_order_digest`] of the rows of the training steps is stored per point.
- **Stage 0** (the bridge) is trained once per seed and shared by every condition, fraction and arm of that seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..adapters.integrity import tensors_sha256
from ..modeling_codebind import CodeBindModel
from .conditions import condition_data
from .data import load_demo_data
from .evaluate import aggregate, evaluate_arm
from .processing import DemoProcessor, RowTrace
from .train import ARM_SWITCHES, BRIDGES, arm_model, bridge_state, build_model, path_dataset, train_arm, train_bridge

FULL_FRACTIONS = (0.02, 0.05, 0.2, 1.0)
QUICK_FRACTIONS = (0.2,)


def fraction_key(fraction: float) -> str:
    """The JSON key of a fraction: ``0.02 -> "0.02"``, ``1.0 -> "1"``."""
    return f"{fraction:g}"


def _clip_order(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of one voice's clips, digit-stratified: round ``r`` holds the ``r``-th clip of every digit."""
    rank = np.empty(len(digits), dtype=np.int64)
    for digit in np.unique(digits):
        members = np.nonzero(digits == digit)[0]
        rank[rng.permutation(members)] = np.arange(len(members))
    return np.lexsort((rng.permutation(len(digits)), rank))  # within a round, digits in a random order


def sweep_order(meta: torch.Tensor, seed: int) -> torch.Tensor:
    """All training rows in the sweep's order for ``seed`` (subsets are its prefixes; see the module docstring).

    Args:
        meta (`torch.LongTensor` of shape `(N, 4)`): ``DemoData.audio_train_meta`` (digit, voice, speed, pitch).
        seed (`int`): the sweep seed.

    Example:

    ```python
    >>> import torch
    >>> meta = torch.tensor([[d, v, 0, 0] for v in range(4) for d in range(5)])  # 4 voices x 5 digits
    >>> order = sweep_order(meta, seed=0)
    >>> sorted(order.tolist()) == list(range(20))
    True
    >>> first = order[:5]  # a quarter of the rows: 2 of the 4 voices, 2 or 3 of their 5 clips each
    >>> sorted(torch.bincount(meta[first, 1])[torch.bincount(meta[first, 1]) > 0].tolist())
    [2, 3]
    >>> torch.equal(order[:5], sweep_order(meta, seed=0)[:5]), torch.equal(order, sweep_order(meta, seed=1))
    (True, False)

    ```
    """
    meta_np = meta.numpy()
    voices = np.unique(meta_np[:, 1])
    rng = np.random.default_rng([seed, 19])
    voice_rank = np.empty(len(meta_np))
    clip_rank = np.empty(len(meta_np))
    for rank, voice in enumerate(rng.permutation(voices)):
        rows = np.nonzero(meta_np[:, 1] == voice)[0]
        voice_rank[rows] = (rank + 1) / len(voices)
        clip_rank[rows[_clip_order(meta_np[rows, 0], rng)]] = (np.arange(len(rows)) + 1) / len(rows)
    level = np.maximum(voice_rank, clip_rank)
    # ties: by clip rank (each voice's clips stay in their digit-stratified order), then at random across voices
    return torch.from_numpy(np.lexsort((rng.permutation(len(meta_np)), clip_rank, level)))


def paired_rows(meta: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Training rows of the paired subset of ``fraction`` for ``seed``: a prefix of [`sweep_order`], at least 2
    rows (a contrastive batch needs two)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a paired fraction must lie in (0, 1], got {fraction}")
    count = min(len(meta), max(2, round(fraction * len(meta))))
    return sweep_order(meta, seed)[:count]


def point_budget(budget, num_rows: int):
    """The budget of a point with ``num_rows`` paired rows: the same steps and schedule, batch
    ``min(batch_size, num_rows)``."""
    return dataclasses.replace(budget, batch_size=min(budget.batch_size, num_rows))


def row_order_digest(batches: list[list[int]]) -> str:
    """SHA-256 of a sequence of row batches (rows and order, batch boundaries included)."""
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(np.asarray(batch, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def aggregate_with_seeds(per_seed: list[dict]) -> dict[str, dict]:
    """[`~codebind_hf.demo.evaluate.aggregate`] plus ``per_seed``: ``{metric: {"mean", "std", "per_seed"}}``."""
    out = aggregate(per_seed)
    for name, entry in out.items():
        entry["per_seed"] = [run[name] for run in per_seed]
    return out


def sweep_entry(arm_results: dict, metric: str) -> dict:
    """``arm_results[metric]``; for a specific-part probe of an arm without a specific part, its one embedding's
    probe (what hard alignment has to offer for the same question)."""
    entry = arm_results.get(metric, {"mean": None})
    if entry["mean"] is None and metric.startswith("probe_") and metric.endswith("_specific"):
        return arm_results.get(metric.replace("_specific", "_shared"), entry)
    return entry


def nest_results(runs: list[dict]) -> dict:
    """``{condition: {fraction: {arm: {metric: {"mean", "std", "per_seed"}}}}}`` from point runs (each with
    ``condition``, ``fraction``, ``arm``, ``seed``, ``metrics``), seeds in increasing order."""
    grouped: dict = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        key = (run["condition"], fraction_key(run["fraction"]), run["arm"])
        grouped.setdefault(key, []).append(run["metrics"])
    out: dict = {}
    for (condition, fraction, arm), per_seed in grouped.items():
        out.setdefault(condition, {}).setdefault(fraction, {})[arm] = aggregate_with_seeds(per_seed)
    return out


def subset_shape(meta: torch.Tensor, rows: torch.Tensor) -> dict[str, int]:
    """How a subset is made: rows, voices, and the most / fewest clips any of its voices has."""
    counts = torch.bincount(meta[rows, 1])
    counts = counts[counts > 0]
    return {"rows": len(rows), "voices": len(counts), "max_clips_per_voice": int(counts.max()),
            "min_clips_per_voice": int(counts.min()), "digits": len(meta[rows, 0].unique())}  # fmt: skip



# ---------------------------------------------------------------------------------------------- running points
@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: ``arm`` trained on the paired ``fraction`` of ``condition`` with ``seed``."""

    condition: str
    fraction: float
    arm: str
    seed: int


def loss_summary(history: dict[str, list[float]]) -> dict[str, float]:
    """Mean loss of the first and last tenth of the steps, and the number of steps."""
    loss = history["loss"]
    n = max(1, len(loss) // 10)
    return {"first": sum(loss[:n]) / n, "last": sum(loss[-n:]) / n, "steps": len(loss)}


_WORKER_DATA: dict = {}  # worker processes only: the dataset and its views, loaded once per process


def _views(spec, cache_dir, conditions) -> dict:
    key = (spec.fingerprint(), str(cache_dir))
    if _WORKER_DATA.get("key") != key:
        _WORKER_DATA.clear()
        _WORKER_DATA.update(key=key, views={"speech": load_demo_data(spec, cache_dir=cache_dir, progress=False)})
    views = _WORKER_DATA["views"]
    for condition in conditions:
        if condition not in views:
            views[condition] = condition_data(views["speech"], condition)
    return views


def single_thread_blas():
    """A context that runs numpy's and scipy's BLAS on one thread (torch's threads are left alone): the probes'
    L-BFGS steps and the log-mels' products are tiny, and on two OpenBLAS threads of a busy machine they run up to
    10x slower. Scoped: the caller's settings return."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def reference_dir(folder, seed: int):
    return Path(folder) / f"reference-seed{seed}"


def train_reference(spec, budget, seed: int, cache_dir, folder, progress: bool = False, data=None) -> dict:
    """Stage 0 of ``seed`` (the bridge), saved under ``folder`` for every point of that seed; returns the bridge's
    loss summary. ``data``: the loaded dataset when running in this process (workers read the cache)."""
    clock = time.process_time()
    data = data if data is not None else _views(spec, cache_dir, ())["speech"]
    reference = build_model(data, budget, seed)
    with single_thread_blas():
        losses = train_bridge(reference, data, budget, seed, progress)
    reference.save_pretrained(reference_dir(folder, seed), include_decoder=True)
    return {"seed": seed, "bridge": loss_summary({"loss": losses}), "cpu_s": time.process_time() - clock}


def run_point(spec, budget, point: SweepPoint, cache_dir, folder, progress: bool = False, keep_details: bool = False,
              views: dict | None = None) -> dict:
    """Stage 1 and the evaluation of one point, from its seed's saved stage-0 reference.

    Returns ``{condition, fraction, arm, seed, metrics, loss, subset, batch_size, row_order, bridge_sha256, cpu_s}``
    (``row_order``: the [`row_order_digest`] of the rows of the training steps and how many steps it covers;
    ``bridge_sha256``: the trained model's bridge weights, the seed's stage-0 ones; ``cpu_s``: CPU seconds
    of this process, what the run-time estimate of a quiet machine adds up) and, with
    ``keep_details``, what the plots need (embeddings, loss curve, codebook statistics). Raises if the arm was given
    a row outside its subset or fewer batches than steps, or changed the bridge.
    """
    clock = time.process_time()
    views = views if views is not None else _views(spec, cache_dir, (point.condition,))
    data = views[point.condition]
    rows = paired_rows(data.audio_train_meta, point.fraction, point.seed)
    budget = point_budget(budget, len(rows))
    trace = RowTrace(data.waves_train)
    processor = DemoProcessor.from_data(data, trace, memoize=True)  # each clip comes ~10-500 times
    reference = CodeBindModel.from_pretrained(reference_dir(folder, point.seed))
    workdir = Path(tempfile.mkdtemp(prefix="codebind-demo-"))  # the arm's base model and trainer run
    try:
        with single_thread_blas():
            model = arm_model(reference, data, budget, point.arm, point.seed)
            model, history = train_arm(model, data, budget, point.arm, point.seed, workdir, progress,
                                       path_dataset(data, point.seed, rows), processor)  # fmt: skip
            metrics, embeddings, codebooks = evaluate_arm(model, point.arm, data, point.seed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    steps = trace.batches[-budget.path_steps :]  # the trainer's k-means initialisation reads batches first
    outside = {row for batch in steps for row in batch} - set(rows.tolist())
    if len(steps) < budget.path_steps or outside:
        raise RuntimeError(f"{point}: the arm trained on {len(steps)} batches for {budget.path_steps} steps, "
                           f"{len(outside)} rows outside its subset; the comparison would be unfair")  # fmt: skip
    bridge = tensors_sha256(bridge_state(model))
    if bridge != tensors_sha256(bridge_state(reference)):
        raise RuntimeError(f"{point}: the arm changed the frozen stage-0 bridge of seed {point.seed} (towers or shared "
                           f"heads of {BRIDGES}); the comparison would be unfair")  # fmt: skip
    out = {**dataclasses.asdict(point), "metrics": metrics, "loss": loss_summary(history), "batch_size": budget.batch_size,
           "subset": subset_shape(data.audio_train_meta, rows),
           "row_order": {"digest": row_order_digest(steps), "steps": len(steps)}, "bridge_sha256": bridge,
           "cpu_s": time.process_time() - clock}  # fmt: skip
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("zero_shot_acc", "probe_voice_specific", "probe_voice_shared")
                      if metrics[k] is not None)  # fmt: skip
    print(f"[codebind-demo] {point.condition} {fraction_key(point.fraction)} seed {point.seed} {point.arm}: {shown}", flush=True)
    if keep_details:
        out.update(embeddings=embeddings, history=history, codebooks=codebooks)
    return out


def configure_process(threads: int | None, progress: bool) -> None:
    """Process-wide settings of a demo process: the torch thread count (``None``: left as is) and, without
    ``progress``, no Hugging Face Hub / transformers save-and-load bars. Only ``codebind-demo``'s `main` and the
    initialiser of the worker processes [`run_points`] spawns call this: a library call leaves its caller's settings
    as they were."""
    if threads is not None:
        torch.set_num_threads(threads)
    if not progress:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as transformers_logging

        disable_progress_bars()
        transformers_logging.disable_progress_bar()


def run_points(data, budget, points: list[SweepPoint], detailed: set, cache_dir, folder, workers: int, threads: int,
               progress: bool) -> tuple[dict[int, dict], list[dict]]:
    """Stage 0 of every seed, then every point (``detailed``: the points whose details are kept), in ``workers``
    spawned processes (no save/load bars) or, with one worker, in this process, on ``threads`` torch threads (the
    caller's count is restored afterwards). Returns the bridges' summaries by seed and the point runs.

    A seed's points are queued as soon as its bridge is saved; the path-trainer arms go first (the slowest), so the
    pool ends together.
    """
    seeds = sorted({p.seed for p in points})
    slow_first = sorted(points, key=lambda p: (p.seed, p.arm not in ARM_SWITCHES, p.condition, -p.fraction))
    if workers == 1:
        views = {"speech": data}
        for condition in sorted({p.condition for p in points}):
            views[condition] = condition_data(data, condition)
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            bridges = {s: train_reference(data.spec, budget, s, cache_dir, folder, progress, data) for s in seeds}
            runs = [run_point(data.spec, budget, p, cache_dir, folder, progress, p in detailed, views) for p in slow_first]
        finally:
            torch.set_num_threads(caller_threads)  # a library call leaves the process as it found it
        return bridges, runs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    print(f"[codebind-demo] {len(seeds)} bridges, then {len(points)} points on {workers} worker processes, "
          f"{threads} thread(s) each", flush=True)  # fmt: skip
    bridges, futures = {}, []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=configure_process,
                             initargs=(threads, False)) as pool:  # fmt: skip
        with tqdm(total=len(seeds) + len(points), desc="bridges + points", disable=not progress, dynamic_ncols=True) as bar:
            pending = {pool.submit(train_reference, data.spec, budget, s, cache_dir, folder): s for s in seeds}
            for future in as_completed(pending):
                seed = pending[future]
                bridges[seed] = future.result()
                bar.update(1)
                futures += [pool.submit(run_point, data.spec, budget, p, cache_dir, folder, False, p in detailed)
                            for p in slow_first if p.seed == seed]  # fmt: skip
            for _ in as_completed(futures):
                bar.update(1)
        return bridges, [future.result() for future in futures]


__all__ = [
    "FULL_FRACTIONS",
    "QUICK_FRACTIONS",
    "fraction_key",
    "sweep_order",
    "paired_rows",
    "point_budget",
    "row_order_digest",
    "aggregate_with_seeds",
    "sweep_entry",
    "nest_results",
    "subset_shape",
    "SweepPoint",
    "loss_summary",
    "reference_dir",
    "train_reference",
    "run_point",
    "configure_process",
    "run_points",
]
