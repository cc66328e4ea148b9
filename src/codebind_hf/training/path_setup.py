"""Model-side set-up of a path run: load the base, create or update the path, the decoder, LoRA, what trains,
and the optimiser's parameter groups and schedule; for ``path.mode: projector``, the MLP projector instead."""

from __future__ import annotations

import math

import torch

from ..configuration_codebind import CodeBindConfig, normalize_path_config
from ..adapters.lora import add_lora, set_trainable
from ..modalities import canonical_modality
from ..modeling_codebind import CodeBindModel

from .config import ModelArguments, PathArguments, TrainingArguments

# Path settings that decide which modules a path has: a change rebuilds the path.
STRUCTURE_KEYS = ("bridges", "use_codebooks", "use_decoupling", "shared_codebook", "quantizer")
# Parameters the official code trains with ``lr_new``: the modules CodeBind adds to ImageBind.
NEW_MODULE_PREFIXES = ("specific_heads.", "decoder.")


def build_model(args: ModelArguments) -> CodeBindModel:
    """``from_pretrained(name_or_path, revision)`` or a randomly initialised model from the inline config."""
    if args.name_or_path is not None:
        return CodeBindModel.from_pretrained(args.name_or_path, revision=args.revision)
    return CodeBindModel(CodeBindConfig(**args.config))


def prepare_path(model: CodeBindModel, args: PathArguments) -> str:
    """Make the model carry the path ``args.target`` with this run's settings; returns the target.

    Loads ``init_path`` first if given; a path already in the model keeps its codebooks and heads when its
    bridges and module structure (``STRUCTURE_KEYS``: the ablation switches, codebook sizes) match (its settings are
    replaced, the quantiser variants applied to its codebooks), and is rebuilt otherwise. Builds the reconstruction
    decoder when reconstruction is on and the model has none (converted ImageBind models have none); drops it when off.
    """
    target = canonical_modality(args.target)
    if target not in model.towers:
        raise ValueError(f"path.target={args.target!r}: the model has no {target} tower (it has {sorted(model.towers)})")
    if args.init_path:
        model.load_path(args.init_path, replace=True)  # start from the artifact even if the base carries this path
    settings = normalize_path_config(target, args.path_config())
    if target in model.quantizers and any(model.config.paths[target].get(k) != settings[k] for k in STRUCTURE_KEYS):
        model.remove_path(target)
    if target not in model.quantizers:
        model.add_path(target, settings)
    else:
        paths = dict(model.config.paths)
        previous, paths[target] = paths[target], settings
        model.config.paths = paths
        try:
            model.config.validate_architecture()
        except Exception:
            paths[target] = previous
            model.config.paths = paths
            raise
        apply_quantizer_variants(model, target)
        model.sync_path_owned(target)  # variants.bridge_heads decides which base tensors the path owns
    wants_decoder = settings["use_reconstruction"] and settings["loss_weights"].get("recon", 0.0) > 0
    if wants_decoder and model.decoder is None:
        model.config.decoder = {**model.config.decoder, **args.decoder, "enabled": True}
        model.decoder = model._build_decoder()
        if model.decoder is not None:
            model.decoder.apply(model._init_weights)
    elif not wants_decoder and model.decoder is not None:
        model.drop_decoder()
    return target


def apply_quantizer_variants(model: CodeBindModel, target: str) -> None:
    """Set the quantiser switches of the path's settings (``quantizer_output``, ``dead_codes``, ``ema_init``) on its
    existing codebooks (they change how codes are emitted and updated, not what is stored)."""
    variants = model.config.paths[target]["variants"]
    for book in model.quantizers[target].codebooks().values():
        book.raw_codes = variants["quantizer_output"] == "official"
        book.reinit = variants["dead_codes"]
        book.ema_init_counts = variants["ema_init"] == "official"


def prepare_projector(model: CodeBindModel, args: PathArguments) -> str:
    """Projector mode: drop any path of the target (a projector has no codebooks, so quantised features would
    mix the projector with unrelated codebooks), put a fresh MLP projector in place of the target's shared head and
    freeze everything else. Returns the target."""
    from .projector import attach_projector

    target = canonical_modality(args.target)
    if target not in model.towers:
        raise ValueError(f"path.target={args.target!r}: the model has no {target} tower (it has {sorted(model.towers)})")
    missing = [b for b in args.bridges if canonical_modality(b) not in model.towers]
    if missing:
        raise ValueError(f"path.bridges {args.bridges}: the model has no towers for {missing} (it has {sorted(model.towers)})")
    if target in model.quantizers:
        model.remove_path(target)
    model.drop_decoder()  # the config says so too, so a saved model loads back without one
    for param in model.parameters():
        param.requires_grad_(False)
    head = attach_projector(model, target, args.projector_hidden_dim)
    for param in head.parameters():
        param.requires_grad_(True)
    return target


def configure_trainable(model: CodeBindModel, target: str, args: PathArguments, live: list[str]) -> list[str]:
    """LoRA (``lora`` mode), then `set_trainable`; also freezes what the path loss never uses (logit scales,
    decoder parts of modalities that are not reconstructed), so DDP sees no unused parameters. Returns the
    trainable names."""
    if args.mode == "lora" and target not in getattr(model, "lora_settings", {}):
        blocks = min(args.lora_last_n_blocks, model.towers[target].num_blocks)
        add_lora(model, target, r=args.lora_rank, lora_alpha=args.lora_alpha, last_n_blocks=blocks, dropout=args.lora_dropout)
    set_trainable(model, target, args.mode)
    decoded = set()
    if model.decoder is not None:
        decoded = {m for m in live if model.config.path_has_specific(target, m) and m in model.decoder.heads}
    for name, param in model.named_parameters():
        if name.startswith("logit_scales.") or (name.startswith("path_owned.") and ".logit_scales." in name):
            param.requires_grad_(False)
        elif name.startswith("decoder."):
            parts = name.split(".")
            per_modality = parts[1] in ("heads", "position_embeddings")
            param.requires_grad_(bool(decoded) and (not per_modality or parts[2] in decoded))
    return [n for n, p in model.named_parameters() if p.requires_grad]


def enable_gradient_checkpointing(model: CodeBindModel, target: str) -> None:
    tower = model.towers[target]
    if not hasattr(tower, "set_gradient_checkpointing"):
        raise ValueError(f"the {target} tower ({type(tower).__name__}) does not support gradient checkpointing")
    tower.set_gradient_checkpointing(True)


def parameter_groups(model: CodeBindModel, args: TrainingArguments, new_prefixes: tuple[str, ...] = NEW_MODULE_PREFIXES) -> list[dict]:
    """Two AdamW groups: new modules (specific heads, decoder; a projector) at ``learning_rate_new``; the rest (LoRA
    or the tower, the target's original shared head) at ``learning_rate`` — the official ``lr_new`` / ``lr`` split."""
    new, base = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (new if name.startswith(new_prefixes) else base).append(param)
    groups = [
        {"params": base, "lr": args.learning_rate, "name": "base"},
        {"params": new, "lr": args.learning_rate_new, "name": "new"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to train: no parameter requires grad (check path.mode)")
    return groups


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    """Linear warm-up, then a cosine from 1 to ``min_ratio`` at ``total_steps`` (paper: lr -> lr / 50)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(model: CodeBindModel, args: TrainingArguments, total_steps: int, new_prefixes=NEW_MODULE_PREFIXES):
    groups = parameter_groups(model, args, new_prefixes)
    optimizer = torch.optim.AdamW(
        groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.warmup_steps, total_steps, args.min_lr_ratio))
    return optimizer, scheduler


__all__ = [
    "NEW_MODULE_PREFIXES",
    "STRUCTURE_KEYS",
    "apply_quantizer_variants",
    "build_model",
    "prepare_path",
    "prepare_projector",
    "configure_trainable",
    "enable_gradient_checkpointing",
    "parameter_groups",
    "lr_lambda",
    "build_optimizer",
]
