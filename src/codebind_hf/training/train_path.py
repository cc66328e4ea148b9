"""Train one CodeBind bridge-target path with Accelerate.

    codebind-train --config sun_d --set data.dataset=./sun-rgbd --output_dir runs/sun
    accelerate launch --multi_gpu --num_processes 8 -m codebind_hf.training.train_path --config sun_d
    python -m codebind_hf.training.train_path --config tiny --set data.dataset=./toy --max_train_steps 20

One run trains one path: the target modality against its frozen bridges (text and/or image/video, plus the
image-text term), with the CodeBind losses and weights of the method doc, the codebook life cycle (k-means init,
EMA updates, dead-code re-init, kept in sync across processes), optional adaptive loss weights, and optionally a
frozen-feature cache. At the end it saves the full model (``save_pretrained``) and the modality path artifact.
``path.mode: projector`` trains only an MLP projector on cached features (`ProjectorObjective`, saved as a projector
artifact); a config with ``stages`` runs them in order (`codebind_hf.training.stages`); ``data.columns.grade`` turns
per-row pair grades into soft InfoNCE targets. See docs/training.md for the configuration and the data schema.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..adapters.lora import merge_lora
from ..adapters.projector import save_projector
from ..losses import build_balancer
from ..losses.objective import PathObjective, ProjectorObjective
from ..modalities import canonical_modality

from .batching import BatchSpec, EpochBatchSampler, PathCollator, RowDataset, processor_fingerprint, resolve_processor
from ..validation import check_finite_losses, divergence_error
from .checkpointing import (
    atomic_save_file,
    FINISHED_MARKER,
    claim_output_dir,
    atomic_write_json,
    load_trained_state,
    read_trainer_state,
    register_hooks,
    resolve_checkpoint,
    save_checkpoint,
    trained_state_dict,
)
from .codebooks import CodebookLifecycle, NoCodebooks
from .config import TrainConfig, parse_args, resolve_num_workers
from .data import (
    class_names,
    default_eval_split,
    get_split,
    load_dataset_dict,
    prepare_columns,
    prompt_templates,
    resolve_columns,
)
from .evaluation import ZeroShotEvaluator
from .modality import add_run_modality, with_modality_processors
from .feature_cache import FeatureCache, cache_batch_spec, tower_fingerprint
from .path_setup import (
    NEW_MODULE_PREFIXES,
    build_model,
    build_optimizer,
    configure_trainable,
    enable_gradient_checkpointing,
    prepare_path,
    prepare_projector,
)
from .results import TrainResult
from .stages import train_stages

logger = logging.getLogger("codebind_hf.training")
BALANCED_LOSSES = ("vq", "ctr", "cuni", "cm", "orth", "uni")


def _step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Each micro-step reseeds the global RNG (dropout, codebook re-init anchors) from its position only, so a
    resumed run draws exactly what an uninterrupted one draws."""
    return (seed * 1_000_003 + step * 7_919 + micro * 104_729 + rank * 15_485_863) % (2**63 - 1)


def _to_device(batch: dict, device) -> dict:
    return {
        "inputs": {m: t.to(device) for m, t in batch["inputs"].items()},
        "attention_mask": None if batch["attention_mask"] is None else batch["attention_mask"].to(device),
        "cached": {m: t.to(device) for m, t in batch["cached"].items()},
        "grades": None if batch.get("grades") is None else batch["grades"].to(device),
    }


def _cache_key_components(config: TrainConfig, model, modalities, dataset, processor, spec: BatchSpec) -> dict:
    return {
        "model": str(config.model.name_or_path or "inline-config"),
        "revision": getattr(model.config, "_commit_hash", None) or config.model.revision,
        "towers": tower_fingerprint(model, modalities),
        "processor": processor_fingerprint(processor),
        "columns": vars(spec.columns),
        "templates": list(spec.templates) if "text" in modalities else None,
        "class_names": spec.class_names if "text" in modalities else None,
        "dataset": getattr(dataset, "_fingerprint", None),
        "num_rows": len(dataset),
        "vision_input": spec.vision_input,
        "sampling_rate": spec.sampling_rate,
        "mixed_precision": config.training.mixed_precision,
    }


def train(config: TrainConfig, dataset=None, processor=None) -> TrainResult:
    """Run one path training (see the module docstring). ``dataset``/``processor`` override ``config.data``'s."""
    if config.stages:
        return train_stages(config, train, dataset=dataset, processor=processor)
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    t, p, d = config.training, config.path, config.data
    if dataset is not None:
        d.dataset = dataset
    if d.dataset is None:
        raise ValueError("data.dataset is not set: give a hub id, a local folder, or a Dataset/DatasetDict/dict")
    output_dir = Path(t.output_dir)
    # `latest` with no checkpoint resumes nothing: it must not start over on top of a finished run.
    nothing_to_resume = t.resume_from_checkpoint == "latest" and resolve_checkpoint(output_dir, "latest") is None
    if nothing_to_resume and (output_dir / FINISHED_MARKER).exists() and not t.overwrite_output_dir:
        raise FileExistsError(
            f"resume_from_checkpoint=latest, but {output_dir / 'checkpoints'} holds no checkpoint of the finished run in "
            f"{output_dir} ({FINISHED_MARKER} is there): starting again from step 0 would overwrite it. Keep checkpoints "
            "(training.checkpointing_steps) to resume, pass --overwrite_output_dir to replace the run, or choose another "
            "output_dir"
        )
    claim_output_dir(output_dir, t.overwrite_output_dir, t.resume_from_checkpoint is not None and not nothing_to_resume)

    # 1. Accelerator ---------------------------------------------------------------------------------------
    if t.report_to == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise ImportError("training.report_to='tensorboard' needs tensorboard: pip install tensorboard (or report_to: none)")
    accelerator = Accelerator(
        mixed_precision=t.mixed_precision,
        log_with=None if t.report_to == "none" else t.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # Codebooks are buffers kept in sync by the life cycle's all-reduces; DDP must not overwrite them.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=t.ddp_find_unused_parameters, broadcast_buffers=False)],
        step_scheduler_with_optimizer=False,
    )
    world, rank = accelerator.num_processes, accelerator.process_index

    # 2. Model and path -------------------------------------------------------------------------------------
    set_seed(t.seed)
    model = build_model(config.model)
    add_run_modality(model, config)  # a new sensor's `modality` block (training/modality.py)
    projector = p.mode == "projector"
    if projector:  # every tower frozen, so every tower is cached; only the projector trains
        target = prepare_projector(model, p)
        modalities = [*(canonical_modality(b) for b in p.bridges), target]
        cached, live = list(modalities), []
        trainable = [n for n, q in model.named_parameters() if q.requires_grad]
    else:
        target = prepare_path(model, p)
        modalities = model.config.path_modalities(target)
        # A tower whose CLS token the path trains (variants.bridge_heads) has no fixed outputs to cache.
        cached = [m for m in modalities if config.cache.enabled and (m != target or config.cache.target)
                  and not model.path_owned_overrides(target, f"towers.{m}")]
        live = [m for m in modalities if m not in cached]
        trainable = configure_trainable(model, target, p, live)
    if p.init_trained_state:  # e.g. the previous stage's final tensors
        load_trained_state(model, target, Path(p.init_trained_state))
    if t.gradient_checkpointing and target in live and p.mode != "headtune":
        enable_gradient_checkpointing(model, target)
    model.to(accelerator.device)
    logger.info("path %s <- bridges %s, mode %s: %d trainable tensors (%.2fM values); cached towers %s",
                target, modalities[:-1], p.mode, len(trainable),
                sum(q.numel() for q in model.parameters() if q.requires_grad) / 1e6, cached or "none")

    # 3. Data ------------------------------------------------------------------------------------------------
    dataset_dict = load_dataset_dict(d)
    train_raw = get_split(dataset_dict, d.train_split)
    if d.max_train_samples is not None:
        train_raw = train_raw.select(range(min(d.max_train_samples, len(train_raw))))
    columns = resolve_columns(train_raw, modalities, d)
    text_from_labels = "text" in modalities and columns.text is None
    try:
        names = class_names(train_raw, columns, d)
    except ValueError:
        if text_from_labels:
            raise
        names = None
    templates = prompt_templates(d.prompt_templates)
    processor = resolve_processor(processor if processor is not None else d.processor)
    processor = with_modality_processors(processor, model, modalities)
    train_ds = prepare_columns(train_raw, columns)
    spec = BatchSpec(live=live, columns=columns, sample_ndims={m: model.towers[m].sample_ndim for m in modalities},
                     templates=templates, class_names=names, cached=cached, vision_input=d.vision_input, sampling_rate=d.sampling_rate,
                     input_keys={m: model.config.input_key(m) for m in modalities})

    # 4. Frozen-feature cache --------------------------------------------------------------------------------
    rows, num_bad_cache, train_view = np.arange(len(train_ds)), 0, train_ds
    if cached:
        cache = FeatureCache(config.cache.dir or output_dir / "feature_cache",
                             _cache_key_components(config, model, cached, train_ds, processor, spec), cached, config.cache.dtype)
        if not cache.complete:
            logger.info("building the feature cache of %s in %s", cached, cache.folder)
            prompts = None
            if "text" in cached and text_from_labels:
                text = [tpl.format(name) for name in names for tpl in templates]
                out = dict(processor(text=text))
                prompts = (torch.as_tensor(out["input_ids"]), out.get("attention_mask"), len(names), len(templates))
            model.eval()
            cache.build(accelerator, model, train_ds, PathCollator(cache_batch_spec(spec, cached), processor, t.seed, d.skip_bad_rows),
                        config.cache.batch_size, prompts)
        else:
            logger.info("reusing the feature cache %s", cache.folder)
        table, spec.text_table = cache.load()
        ok = np.asarray(table["__cb_ok"], dtype=bool)
        rows, num_bad_cache = np.nonzero(ok)[0], int((~ok).sum())
        keep = [c for c in train_ds.column_names if c in _live_columns(columns, live)]
        import datasets

        train_view = datasets.concatenate_datasets([train_ds.select_columns(keep), table], axis=1)
        train_view = train_view.with_format("numpy", columns=[c for c in table.column_names if c != "__cb_ok"], output_all_columns=True)
    sampler = EpochBatchSampler(rows, t.per_device_batch_size, t.seed, world, rank, d.repeat)
    collator = PathCollator(spec, processor, t.seed, d.skip_bad_rows)
    loader = torch.utils.data.DataLoader(RowDataset(train_view), batch_sampler=sampler, collate_fn=collator,
                                         num_workers=resolve_num_workers(d.num_workers),
                                         generator=torch.Generator().manual_seed(t.seed))
    updates_per_epoch = len(sampler) // t.gradient_accumulation_steps
    if updates_per_epoch == 0:
        raise ValueError(f"an epoch has {len(sampler)} batches per process, fewer than "
                         f"gradient_accumulation_steps={t.gradient_accumulation_steps}")
    max_steps = t.max_train_steps or t.num_train_epochs * updates_per_epoch
    evaluator = _build_evaluator(dataset_dict, d, columns, spec, names, templates, processor, target, t, quantize=not projector)

    # 5. Optimiser, schedule, Accelerate ---------------------------------------------------------------------
    optimizer, scheduler = build_optimizer(model, t, max_steps, (f"shared_heads.{target}.",) if projector else NEW_MODULE_PREFIXES)
    if projector:
        objective = ProjectorObjective(model, target, modalities[:-1], p.temperature, p.loss_weights.get("align", 1.0))
        lifecycle = NoCodebooks()
    else:
        objective = PathObjective(model, target)
        lifecycle = CodebookLifecycle(model, target, config.codebooks.update_ema, config.codebooks.reinit_dead_codes)
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    register_hooks(accelerator, lambda: model, target)
    balancer = None
    if not projector and model.config.paths[target]["adaptive_weights"]:
        balancer = build_balancer(model.config.paths[target]["variants"]["balancer"], list(BALANCED_LOSSES),
                                  max_steps=max_steps * t.gradient_accumulation_steps)
    if accelerator.is_main_process:
        atomic_write_json(output_dir / "train_config.json", config.to_dict())
        if t.report_to != "none":
            accelerator.init_trackers(t.tracker_project_name, config=_flat_scalars(config.to_dict()))

    # 6. Resume ----------------------------------------------------------------------------------------------
    state = {"global_step": 0, "losses": [], "log_history": [], "num_bad_rows": 0, "balancer": None}
    checkpoint = resolve_checkpoint(output_dir, t.resume_from_checkpoint)
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
        accelerator.load_state(str(checkpoint))
        state = read_trainer_state(checkpoint)
        if balancer is not None and state.get("balancer"):
            balancer.load_state_dict(state["balancer"])
    elif t.resume_from_checkpoint == "latest":
        logger.warning("resume_from_checkpoint=latest: no checkpoint in %s, so this run starts from step 0",
                       output_dir / "checkpoints")

    # 7. Codebook k-means init -------------------------------------------------------------------------------
    mode = config.codebooks.kmeans_init
    if not projector and state["global_step"] == 0 and (mode == "always" or (mode == "auto" and not lifecycle.is_initialized())):
        _kmeans_init(objective, lifecycle, loader, sampler, collator, accelerator, config,
                     official=model.config.paths[target]["variants"]["kmeans_data"] == "official")
    elif not lifecycle.is_initialized() and mode == "never":
        logger.warning("codebooks are not k-means initialised (codebooks.kmeans_init=never)")

    # 8. Training loop ---------------------------------------------------------------------------------------
    accum = t.gradient_accumulation_steps
    progress = tqdm(total=max_steps, initial=state["global_step"], disable=t.disable_tqdm or not accelerator.is_local_main_process,
                    desc=f"path {target}")
    window: dict[str, list[float]] = {}
    weights = None
    params = [q for q in objective.parameters() if q.requires_grad]
    bad_restored, bad_local = state["num_bad_rows"], [0]  # bad rows: all processes up to the checkpoint / this process since

    def bad_total() -> int:  # a collective: every process calls it at the same points
        local = torch.tensor(bad_local[0], device=accelerator.device)
        return bad_restored + int(accelerator.reduce(local, reduction="sum"))

    def checkpoint(step: int) -> None:
        if balancer is not None:
            state["balancer"] = balancer.state_dict()
        state["num_bad_rows"] = bad_total()
        save_checkpoint(accelerator, output_dir, step, state, t.checkpoints_total_limit)

    objective.train()
    loop_start, first_step = time.perf_counter(), state["global_step"]
    interrupted = False
    while state["global_step"] < max_steps and not interrupted:
        epoch, done = divmod(state["global_step"], updates_per_epoch)
        sampler.set_epoch(epoch, skip_batches=done * accum)
        collator.epoch = epoch
        micro, records, step_losses = 0, [], []
        for batch in loader:
            bad_local[0] += batch["num_bad"]
            for row, message in batch["bad"]:
                logger.warning("skipping undecodable row: %s", message)
            sync = micro == accum - 1
            # A batch left with < 2 rows by skipped bad rows contributes nothing; every process decides together.
            if not (d.skip_bad_rows and _too_small(accelerator, len(batch["rows"]))):
                torch.manual_seed(_step_seed(t.seed, state["global_step"], micro, rank))
                with contextlib.nullcontext() if sync else accelerator.no_sync(objective):
                    lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
                    try:
                        out = objective(**_to_device(batch, accelerator.device))
                    except ValueError as err:  # NaN/inf met inside the model: say when and where, not just "z"
                        if "NaN or inf" not in str(err):
                            raise
                        raise divergence_error(state["global_step"] + 1, lrs, err, model.named_parameters(), window) from err
                    loss, weights = _weighted_loss(out, balancer, accelerator)
                    check_finite_losses({"loss": loss.detach(), **out["breakdown"]}, state["global_step"] + 1, lrs)
                    accelerator.backward(loss / accum)
                records += out["records"]
                step_losses.append(loss.detach())
                for name, value in out["breakdown"].items():
                    window.setdefault(name, []).append(float(value.detach()))
            elif sync and world > 1:  # DDP did not average this window's gradients: do it here
                for q in params:
                    if q.grad is not None:
                        q.grad = accelerator.reduce(q.grad, reduction="mean")
            if not sync:
                micro += 1
                continue
            if t.max_grad_norm:
                accelerator.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            lifecycle.step_(records)
            mean_loss = torch.stack(step_losses).mean() if step_losses else torch.tensor(float("nan"), device=accelerator.device)
            step_loss = float(accelerator.reduce(mean_loss, reduction="mean"))
            state["global_step"] += 1
            state["losses"].append(step_loss)
            window.setdefault("loss", []).append(step_loss)
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}")
            step = state["global_step"]
            if step % t.logging_steps == 0 or step == max_steps:
                _log(accelerator, state, window, lifecycle, records, optimizer, weights, bad_total() + num_bad_cache)
                window = {}
            if evaluator is not None and t.eval_steps and step % t.eval_steps == 0 and step < max_steps:
                _evaluate(accelerator, evaluator, objective, model, target, state)
            scheduled = bool(t.checkpointing_steps) and step % t.checkpointing_steps == 0 and step < max_steps
            interrupted = bool(t.max_steps_this_run) and step - first_step >= t.max_steps_this_run and step < max_steps
            if scheduled or interrupted:  # an interruption leaves a checkpoint to resume from
                checkpoint(step)
            micro, records, step_losses = 0, [], []
            if interrupted or step >= max_steps or step % updates_per_epoch == 0:
                break
    progress.close()
    runtime = time.perf_counter() - loop_start

    # 9. Final evaluation and artifacts ----------------------------------------------------------------------
    accelerator.wait_for_everyone()
    done = state["global_step"] - first_step
    result = TrainResult(output_dir=output_dir, model=model, train_runtime=runtime, interrupted=interrupted,
                         steps_this_run=done, steps_per_second=done / max(runtime, 1e-9))
    if interrupted:
        logger.info("stopped at step %d of %d (training.max_steps_this_run); resume with resume_from_checkpoint=latest",
                    state["global_step"], max_steps)
        accelerator.end_training()
        result.losses, result.log_history, result.global_step = state["losses"], state["log_history"], state["global_step"]
        return result
    if evaluator is not None:
        result.metrics = _evaluate(accelerator, evaluator, objective, model, target, state)
    model.eval()
    state["num_bad_rows"] = bad_total() + num_bad_cache
    if t.dump_state_dir:
        atomic_save_file(trained_state_dict(model, target), Path(t.dump_state_dir) / f"state-rank{rank}.safetensors")
    if accelerator.is_main_process:
        _save_artifacts(model, target, config, result, projector, modalities[:-1], processor)
        summary = {k: state[k] for k in ("global_step", "losses", "num_bad_rows")}
        atomic_write_json(output_dir / "train_results.json", {**summary, **result.metrics})
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result.losses, result.log_history = state["losses"], state["log_history"]
    result.global_step, result.num_bad_rows = state["global_step"], state["num_bad_rows"]
    return result


# ---------------------------------------------------------------------------------------------- helpers
def _save_artifacts(model, target: str, config: TrainConfig, result: TrainResult, projector: bool, bridges: list[str],
                    processor=None) -> None:
    """The path artifact (+ the full model with its processor, + the push), or in projector mode the projector
    artifact."""
    t, output_dir = config.training, Path(config.training.output_dir)
    if projector:
        result.projector_dir = save_projector(model, target, output_dir / "projector", bridges=bridges,
                                              temperature=config.path.temperature)
        if t.save_full_model:
            logger.info("projector mode writes no full model: load %s onto the base model (load_projector)", result.projector_dir)
        return
    result.path_dir = model.save_path(target, output_dir / "path")
    if t.push_to_hub and t.hub_path_repo_id:  # before any merge: the path keeps LoRA and the unmerged base's fingerprint
        model.push_path(target, t.hub_path_repo_id)
    if t.save_full_model or (t.push_to_hub and t.hub_model_id):
        if target in getattr(model, "lora_settings", {}):
            merge_lora(model, target)  # a self-contained model: LoRA folded into the tower
        model.drop_decoder()  # the inference artifact: save_pretrained saves what the model holds
        # The processor travels with the model (codebind-bench and from_pretrained-style loading look for it there).
        saved = processor if callable(getattr(processor, "save_pretrained", None)) else None
        if saved is None:
            logger.warning("the processor (%s) has no save_pretrained, so the full model is saved without one: save a "
                           "CodeBindProcessor beside it (processor.save_pretrained(<model folder>)) before codebind-bench",
                           type(processor).__name__)
        if t.save_full_model:
            model.save_pretrained(output_dir / "model")
            if saved is not None:
                saved.save_pretrained(output_dir / "model")
            result.model_dir = output_dir / "model"
        if t.push_to_hub and t.hub_model_id:
            model.push_to_hub(t.hub_model_id, processor=saved)


def _live_columns(columns, live: list[str]) -> list[str]:
    keep = [columns.modalities[m] for m in live if m != "text"]
    if "text" in live and columns.text:
        keep.append(columns.text)
    return keep + [c for c in (columns.label, columns.sampling_rate, columns.grade) if c]


def _too_small(accelerator, rows: int) -> bool:
    """Whether any process has fewer than 2 usable rows in this batch (contrastive terms need 2)."""
    counts = accelerator.gather(torch.tensor([rows], device=accelerator.device))
    return int(counts.min()) < 2


def _weighted_loss(out: dict, balancer, accelerator):
    """The path config's weighted loss, or the adaptive balancer's weights on process-averaged loss magnitudes."""
    if balancer is None:
        return out["loss"], None
    names = sorted(out["breakdown"])
    values = torch.stack([out["breakdown"][n].detach().float() for n in names])
    averaged = accelerator.reduce(values, reduction="mean")  # identical weights on every process
    weights = balancer.step(dict(zip(names, averaged.cpu())))
    return sum(weights.get(n, 0.0) * out["breakdown"][n] for n in names), weights


def _log(accelerator, state, window, lifecycle, records, optimizer, weights, bad_rows: int) -> None:
    logs = {f"loss/{k}" if k != "loss" else "loss": float(np.mean(v)) for k, v in window.items()}
    logs.update(lifecycle.stats(records))
    logs.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)})
    if weights:
        logs.update({f"weight/{k}": v for k, v in weights.items()})
    logs["bad_rows"] = bad_rows
    state["log_history"].append({"step": state["global_step"], **logs})
    accelerator.log(logs, step=state["global_step"])
    logger.info("step %d: %s", state["global_step"], {k: round(v, 4) for k, v in logs.items() if k.startswith("loss")})


def _evaluate(accelerator, evaluator, objective, model, target, state) -> dict:
    metrics = evaluator.evaluate(accelerator, model, target, target)
    objective.train()
    state["log_history"].append({"step": state["global_step"], **metrics})
    accelerator.log(metrics, step=state["global_step"])
    logger.info("step %d: zero-shot acc@1 %.4f on %d rows", state["global_step"], metrics["zero_shot/acc1"],
                metrics["zero_shot/num_samples"])
    return metrics


def _build_evaluator(dataset_dict, d, columns, spec, names, templates, processor, target, t, quantize: bool = True):
    split = default_eval_split(dataset_dict, d)
    if split is None or names is None:
        logger.info("no zero-shot evaluation (needs an evaluation split and class labels)")
        return None
    eval_raw = get_split(dataset_dict, split, "evaluation")
    if columns.label is None or columns.label not in eval_raw.column_names or columns.modalities[target] not in eval_raw.column_names:
        logger.info("no zero-shot evaluation: split %r lacks the label or %s column", split, target)
        return None
    from .data import ColumnMap

    eval_columns = ColumnMap(modalities={target: columns.modalities[target]}, label=columns.label, sampling_rate=columns.sampling_rate)
    eval_spec = BatchSpec(live=[target], columns=eval_columns, sample_ndims=spec.sample_ndims, templates=templates,
                          class_names=names, vision_input=spec.vision_input, sampling_rate=spec.sampling_rate,
                          input_keys=spec.input_keys)
    eval_ds = prepare_columns(eval_raw, eval_columns)
    return ZeroShotEvaluator(eval_ds, eval_spec, processor, names, templates, t.per_device_batch_size, d.max_eval_samples,
                             d.skip_bad_rows, quantize)


def _kmeans_init(objective, lifecycle, loader, sampler, collator, accelerator, config, official: bool = False) -> None:
    """Record head outputs of the first batches of epoch 0 and run k-means on them (all processes). ``official``
    (``variants.kmeans_data``): the first batch only and its CLS / EOS outputs only, as the authors' first forward."""
    t = config.training
    batches = 1 if official else config.codebooks.kmeans_init_batches
    sampler.set_epoch(0)
    collator.epoch = 0
    records = []
    objective.eval()
    torch.manual_seed(_step_seed(t.seed, -1, 0, accelerator.process_index))
    with torch.no_grad():
        for k, batch in enumerate(loader):
            if k >= batches:
                break
            if len(batch["rows"]) >= 2:
                with accelerator.autocast():
                    records += objective(**_to_device(batch, accelerator.device))["records"]
    lifecycle.kmeans_init_(records, iters=config.codebooks.kmeans_iters, pooled_only=official)
    objective.train()


def _flat_scalars(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_scalars(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``codebind-train``: the process is ours, so this (not `train`) sets up logging."""
    from accelerate.utils import get_int_from_env

    config = parse_args(argv)
    # As `python -m` does: a `data.processor: my_module:MyProcessor` of the working folder is importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # Under `accelerate launch` every process runs this; only the main one (global rank 0, read as Accelerate reads
    # it, before any Accelerator exists) reports progress lines.
    rank = get_int_from_env(["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"], 0)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    # torch>=2.13 DDP deprecates broadcast_buffers, which the trainer must pass (see the Accelerator set-up).
    warnings.filterwarnings("ignore", message=".*broadcast_buffers.*deprecated", category=FutureWarning)
    train(config)
    return 0


__all__ = ["TrainResult", "train", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
