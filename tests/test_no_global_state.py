"""The library leaves process-wide settings alone: logging handlers and levels, warnings filters and the torch
thread count are the console scripts' to set (in their ``main()``), never a library call's."""

from __future__ import annotations

import logging
import warnings

import torch

from codebind_hf.training.config import TrainConfig
from codebind_hf.training.train_path import train
from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir


def _global_state() -> dict:
    root = logging.getLogger()
    return {
        "root_handlers": list(root.handlers),
        "root_level": root.level,
        "trainer_level": logging.getLogger("codebind_hf.training").level,
        "warnings_filters": list(warnings.filters),
        "torch_threads": torch.get_num_threads(),
    }


def test_train_leaves_logging_warnings_and_threads_alone(tmp_path):
    workdir = tiny_training_workdir(tmp_path)
    values = tiny_run_values(workdir, tmp_path / "run", str(workdir / "data"), max_train_steps=2, save_full_model=False,
                             checkpointing_steps=None, disable_tqdm=True)
    root, captured = logging.getLogger(), logging.getLogger().handlers[:]
    root.handlers = []  # pytest's capture handlers would turn a stray logging.basicConfig() into a no-op
    try:
        before = _global_state()
        result = train(TrainConfig.from_dict(values), processor=ToyProcessor())
        after = _global_state()
    finally:
        root.handlers = captured
    assert result.global_step == 2
    assert after == before
