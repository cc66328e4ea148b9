"""`TrainResult`: what a training run returns (its own module so the single-run loop and staged runs share it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainResult:
    """What `train` returns: per-step losses, the last metrics, where things were saved, and the model."""

    losses: list = field(default_factory=list)
    log_history: list = field(default_factory=list)
    global_step: int = 0
    num_bad_rows: int = 0
    metrics: dict = field(default_factory=dict)
    output_dir: Path | None = None
    path_dir: Path | None = None
    model_dir: Path | None = None
    projector_dir: Path | None = None  # path.mode: projector
    interrupted: bool = False  # stopped by training.max_steps_this_run; resume with resume_from_checkpoint=latest
    steps_this_run: int = 0  # optimiser steps taken by this call (not restored from a checkpoint)
    stages: list = field(default_factory=list)  # staged runs: one TrainResult per stage run in this call
    model: object = None
    train_runtime: float = 0.0  # seconds in the training loop (no set-up, cache build, k-means or saving)
    steps_per_second: float = 0.0


__all__ = ["TrainResult"]
