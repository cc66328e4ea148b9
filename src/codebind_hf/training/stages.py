"""Staged training: the ``stages`` of a config run in order, each a path run of its own (EBind's data tiers).

A stage overrides ``data`` keys (its dataset; ``columns`` entries are merged into the section's), its length
(``max_train_steps`` or ``num_train_epochs``) and ``loss_weights`` (on top of ``path.loss_weights``); everything
else comes from the config. Stage ``k`` runs `train` in ``<output_dir>/stages/<kk>-<name>/`` and starts from stage
``k - 1``'s trained tensors (``final_state.safetensors``: trainable parameters, codebooks and their EMA state, the
decoder) with a fresh optimiser and learning-rate schedule (codebooks are not k-means initialised again, even with
``kmeans_init: always``). A finished stage writes ``stage_state.json`` last, atomically.

Resuming (``training.resume_from_checkpoint: latest``) skips finished stages, then resumes the first unfinished one
from its newest checkpoint (mid-stage) or starts it from the previous stage's tensors (at a boundary). Each stage's
run is exactly resumable (see docs/training.md), so an interrupted staged run ends with the weights of an
uninterrupted one. ``training.max_steps_this_run`` counts steps over all stages of one invocation.

Every stage writes its path (or projector) artifact; the full model and the hub push come from the last stage,
whose artifact is the run's. `TrainResult.stages` holds one result per stage and ``<output_dir>/train_results.json``
the per-stage losses.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from ..adapters.integrity import read_sealed_json
from .checkpointing import atomic_save_file, atomic_write_json, claim_output_dir, trained_state_dict
from .config import TrainConfig
from .results import TrainResult

logger = logging.getLogger("codebind_hf.training")
STAGE_STATE = "stage_state.json"
FINAL_STATE = "final_state.safetensors"


def stage_dir(config: TrainConfig, index: int) -> Path:
    """``<output_dir>/stages/<kk>-<name>``."""
    return Path(config.training.output_dir) / "stages" / f"{index:02d}-{config.stages[index].name}"


def stage_config(config: TrainConfig, index: int, init_state: Path | None = None, budget: int | None = None,
                 dataset=None) -> TrainConfig:
    """The plain (stage-less) config of stage ``index``: its data, length and loss weights, its own output folder,
    artifacts and hub push only for the last stage, and the shared feature-cache root ``<output_dir>/feature_cache``.

    Args:
        init_state (`Path`, *optional*): the previous stage's ``final_state.safetensors``.
        budget (`int`, *optional*): steps left for this invocation (``max_steps_this_run``).
        dataset (*optional*): the dataset given to `train` from Python, for stages that name none.
    """
    stage, t = config.stages[index], config.training
    last = index == len(config.stages) - 1
    data = replace(config.data, **({"dataset": dataset} if dataset is not None else {}))
    data = replace(data, **{k: {**getattr(data, k), **v} if k == "columns" else v for k, v in stage.data.items()})
    if stage.max_train_steps is not None:
        length = {"max_train_steps": stage.max_train_steps}
    elif stage.num_train_epochs is not None:
        length = {"max_train_steps": None, "num_train_epochs": stage.num_train_epochs}
    else:
        length = {}
    training = replace(
        t, **length, output_dir=str(stage_dir(config, index)), max_steps_this_run=budget,
        save_full_model=t.save_full_model and last, push_to_hub=t.push_to_hub and last,
    )
    path = replace(config.path, loss_weights={**config.path.loss_weights, **stage.loss_weights},
                   init_trained_state=str(init_state) if init_state is not None else config.path.init_trained_state)
    cache = replace(config.cache, dir=config.cache.dir or str(Path(t.output_dir) / "feature_cache"))
    codebooks = config.codebooks
    if init_state is not None and codebooks.kmeans_init == "always":  # a later stage continues the codebooks
        codebooks = replace(codebooks, kmeans_init="auto")
    plain = TrainConfig(model=config.model, modality=config.modality, path=path, data=data, cache=cache, codebooks=codebooks,
                        training=training)
    plain.validate()
    return plain


def train_stages(config: TrainConfig, train_one, dataset=None, processor=None):
    """Run ``config.stages`` in order (see the module docstring) with ``train_one`` (`codebind_hf.training.train`, passed
    in so this module does not import the trainer that calls it); returns a `TrainResult` whose ``losses`` are all
    stages' losses in order, ``stages`` the per-stage results and ``interrupted`` whether the run stopped early."""
    from accelerate import PartialState

    from ..modalities import canonical_modality

    if not config.stages:
        raise ValueError("train_stages needs a config with stages")
    target = canonical_modality(config.path.target)
    claim_output_dir(config.training.output_dir, config.training.overwrite_output_dir,
                     config.training.resume_from_checkpoint is not None, "staged training run")
    if PartialState().is_main_process:
        atomic_write_json(Path(config.training.output_dir) / "train_config.json", config.to_dict())
    resume = config.training.resume_from_checkpoint == "latest"
    budget = config.training.max_steps_this_run
    results, previous = [], None
    interrupted = False
    for index, stage in enumerate(config.stages):
        folder = stage_dir(config, index)
        if resume and (folder / STAGE_STATE).is_file():
            info = read_sealed_json(folder / STAGE_STATE, "stage state")
            logger.info("stage %d (%s) finished earlier: skipped", index, stage.name)
            results.append(TrainResult(losses=info["losses"], global_step=info["global_step"], output_dir=folder))
            previous = folder / FINAL_STATE if info.get("final_state") else None
            continue
        if budget is not None and budget <= 0:
            interrupted = True  # stopped at a stage boundary
            break
        logger.info("stage %d/%d (%s)", index + 1, len(config.stages), stage.name)
        result = train_one(stage_config(config, index, previous, budget, dataset), processor=processor)
        results.append(result)
        if budget is not None:
            budget -= result.steps_this_run
        if result.interrupted:
            interrupted = True
            break
        state = PartialState()
        has_next = index < len(config.stages) - 1
        if state.is_main_process:
            if has_next:  # the next stage starts from these tensors
                atomic_save_file(trained_state_dict(result.model, target), folder / FINAL_STATE)
            atomic_write_json(folder / STAGE_STATE, {"name": stage.name, "index": index, "global_step": result.global_step,
                                                     "losses": result.losses, "final_state": FINAL_STATE if has_next else None})
        state.wait_for_everyone()
        previous = folder / FINAL_STATE if has_next else None
    return _combined(config, results, interrupted)


def _combined(config: TrainConfig, results: list, interrupted: bool):
    from accelerate import PartialState

    last = results[-1] if results else TrainResult()
    combined = TrainResult(output_dir=Path(config.training.output_dir), interrupted=interrupted, stages=results,
                           model=last.model, metrics=last.metrics, path_dir=last.path_dir, model_dir=last.model_dir,
                           projector_dir=last.projector_dir)
    for index, result in enumerate(results):
        combined.losses += result.losses
        combined.log_history += [{**entry, "stage": config.stages[index].name} for entry in result.log_history]
        combined.global_step += result.global_step
        combined.num_bad_rows += result.num_bad_rows
        combined.steps_this_run += result.steps_this_run
    if not interrupted and last.model is not None and PartialState().is_main_process:  # the last stage ran in this call
        summary = [{"name": config.stages[k].name, "global_step": r.global_step, "losses": r.losses} for k, r in enumerate(results)]
        atomic_write_json(combined.output_dir / "train_results.json",
                          {"global_step": combined.global_step, "stages": summary, **combined.metrics})
    return combined


__all__ = ["train_stages", "stage_config", "stage_dir", "STAGE_STATE", "FINAL_STATE"]
