"""One-way converter: an original ImageBind ``.pth`` state dict -> a `CodeBindModel` (CodeBind-IB base).

The towers, the shared heads (ImageBind's heads) and the logit scales come from the checkpoint, so shared
embeddings before any training are ImageBind's; specific heads and codebooks are freshly initialised.
Every checkpoint key must be consumed and every tower/shared-head/logit-scale weight filled: anything
left over is an error that lists the keys.

Command line::

    codebind-convert-imagebind imagebind_huge.pth ./codebind-ib-base [--imagebind-config kwargs.json] [--push-to-hub org/name]
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import torch

from ..configuration_codebind import CodeBindConfig
from ..encoders.imagebind import IMAGEBIND_HUGE, IMAGEBIND_MODALITIES, imagebind_modality_configs
from ..modeling_codebind import CodeBindModel

# Stem modules by modality in the reference layout (PatchEmbedGeneric.proj is a Sequential only for vision).
_STEMS = {"vision": "rgbt_stem.proj.1", "audio": "rgbt_stem.proj", "depth": "depth_stem.proj", "thermal": "rgbt_stem.proj",
          "imu": "imu_stem.proj", "tactile": "rgbt_stem.proj", "eeg": "eeg_stem.proj"}
_STEM_NORMS = {m: stem.rsplit(".", 1)[0] + ".norm_layer" for m, stem in _STEMS.items() if m != "vision"}
_HEAD_NORM = {"text": "proj.0"}
_HEAD_PROJ = {"text": "proj.1", "imu": "3"}


def load_imagebind_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load an original ImageBind checkpoint (a plain state dict) without executing pickled code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a plain ImageBind state dict (expected a dict of tensors)")
    return state


def _rename(key: str) -> str | None:
    """Our parameter name for one reference key, or None if the key is not understood."""
    parts = key.split(".")
    group, modality, rest = parts[0], parts[1], ".".join(parts[2:])
    if group == "modality_preprocessors":
        if rest in ("cls_token", "pos_embed", "pos_embedding_helper.pos_embed"):
            return f"towers.{modality}.{rest.rsplit('.', 1)[-1]}"
        if modality == "text":
            return {"token_embedding.weight": "towers.text.token_embedding.weight", "mask": "towers.text.causal_mask"}.get(rest)
        for prefix, ours in ((_STEMS.get(modality), "stem"), (_STEM_NORMS.get(modality), "stem_norm")):
            if prefix and rest.startswith(prefix + ".") and rest[len(prefix) + 1 :] in ("weight", "bias"):
                return f"towers.{modality}.{ours}.{rest[len(prefix) + 1:]}"
        return None
    if group == "modality_trunks":
        if rest.startswith("pre_transformer_layer.0."):
            return f"towers.{modality}.pre_norm.{rest.rsplit('.', 1)[-1]}"
        match = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest)
        if not match:
            return None
        index, name = match.groups()
        name = {"attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias"}.get(name, name)
        return f"towers.{modality}.blocks.{index}.{name}"
    if group == "modality_heads":
        norm, proj = _HEAD_NORM.get(modality, "0"), _HEAD_PROJ.get(modality, "2")
        for prefix, ours in ((norm, "norm"), (proj, "proj")):
            if rest.startswith(prefix + "."):
                return f"shared_heads.{modality}.{ours}.{rest[len(prefix) + 1:]}"
        return None
    if group == "modality_postprocessors" and rest == "1.log_logit_scale":
        return f"logit_scales.{modality}.log_logit_scale"
    return None


def codebind_key_to_imagebind(key: str) -> str:
    """The reference key of one of our tower/head/scale weights (the inverse of the renaming)."""
    group, modality, rest = key.split(".", 2)
    if group == "logit_scales":
        return f"modality_postprocessors.{modality}.1.log_logit_scale"
    if group == "shared_heads":
        part, leaf = rest.split(".", 1)
        index = _HEAD_NORM.get(modality, "0") if part == "norm" else _HEAD_PROJ.get(modality, "2")
        return f"modality_heads.{modality}.{index}.{leaf}"
    pre = f"modality_preprocessors.{modality}"
    if rest == "cls_token":
        return f"{pre}.cls_token"
    if rest == "pos_embed":
        return f"{pre}.pos_embed" if modality in ("text", "imu", "eeg") else f"{pre}.pos_embedding_helper.pos_embed"
    if rest == "token_embedding.weight":
        return f"{pre}.token_embedding.weight"
    if rest == "causal_mask":
        return f"{pre}.mask"
    if rest.startswith(("stem.", "stem_norm.")):
        part, leaf = rest.split(".", 1)
        return f"{pre}.{(_STEMS if part == 'stem' else _STEM_NORMS)[modality]}.{leaf}"
    if rest.startswith("pre_norm."):
        return f"modality_trunks.{modality}.pre_transformer_layer.0.{rest.split('.', 1)[1]}"
    rest = rest.replace("attn.qkv.weight", "attn.in_proj_weight").replace("attn.qkv.bias", "attn.in_proj_bias")
    return f"modality_trunks.{modality}.{rest}"


def imagebind_state_dict_to_codebind(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every reference key into our layout; unknown keys are an error listing them."""
    renamed, unknown = {}, []
    for key, value in state.items():
        ours = _rename(key) if key.count(".") >= 2 else None
        if ours is None:
            unknown.append(key)
        else:
            renamed[ours] = value
    if unknown:
        raise ValueError(f"{len(unknown)} checkpoint keys are not ImageBind weights this converter knows: {sorted(unknown)}")
    return renamed


def imagebind_codebind_config(imagebind_config: dict | None = None, **config_overrides) -> CodeBindConfig:
    """The `CodeBindConfig` of a converted checkpoint: towers from the reference keyword arguments
    (``imagebind_huge`` when ``imagebind_config`` is None), bridges text+vision, one path per other modality."""
    kwargs = dict(IMAGEBIND_HUGE) if imagebind_config is None else dict(imagebind_config)
    modalities = imagebind_modality_configs(IMAGEBIND_MODALITIES, **kwargs)
    out_dim = kwargs.get("out_embed_dim", 768)
    settings = dict(
        modalities=modalities,
        bridges=["text", "vision"],
        paths={m: {"bridges": ["text", "vision"]} for m in modalities if m not in ("text", "vision")},
        embed_dim=out_dim,
        specific_dim=out_dim,
        decoder={"enabled": False},
    )
    settings.update(config_overrides)
    return CodeBindConfig(**settings)


def convert_imagebind_checkpoint(checkpoint_path, imagebind_config: dict | str | os.PathLike | None = None, **config_overrides) -> CodeBindModel:
    """Convert an ImageBind ``.pth`` into a `CodeBindModel` whose shared embeddings equal ImageBind's.

    Args:
        checkpoint_path: the original checkpoint (e.g. ``imagebind_huge.pth``).
        imagebind_config: the reference constructor's keyword arguments (dict, or a JSON file holding them or
            holding ``{"constructor_kwargs": {...}}``); ``None`` is imagebind_huge.

    Example:

    ```python
    >>> from codebind_hf.convert.imagebind import convert_imagebind_checkpoint  # doctest: +SKIP
    >>> model = convert_imagebind_checkpoint("imagebind_huge.pth")  # doctest: +SKIP
    >>> model.save_pretrained("codebind-ib-base")  # doctest: +SKIP
    ```
    """
    if isinstance(imagebind_config, (str, os.PathLike)):
        loaded = json.loads(Path(imagebind_config).read_text())
        imagebind_config = loaded.get("constructor_kwargs", loaded)
    config = imagebind_codebind_config(imagebind_config, **config_overrides)
    renamed = imagebind_state_dict_to_codebind(load_imagebind_checkpoint(checkpoint_path))
    model = CodeBindModel(config)
    # Vision has no logit scale in the reference (its postprocessor only normalises): ours stays at 1.
    expected = {
        k for k in model.state_dict()
        if k.startswith(("towers.", "shared_heads.", "logit_scales.")) and k != "logit_scales.vision.log_logit_scale"
    }
    missing, extra = sorted(expected - set(renamed)), sorted(set(renamed) - expected)
    if missing or extra:
        raise ValueError(
            "Checkpoint and ImageBind configuration disagree: "
            f"weights the model needs but the checkpoint lacks: {missing}; checkpoint weights the model has no place for: {extra}"
        )
    own = model.state_dict()
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in renamed.items() if v.shape != own[k].shape]
    if mismatched:
        raise ValueError(f"Shape mismatches (wrong --imagebind-config?): {mismatched}")
    model.load_state_dict(renamed, strict=False)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert an original ImageBind checkpoint into a CodeBind model.")
    parser.add_argument("checkpoint", help="ImageBind .pth state dict (e.g. imagebind_huge.pth)")
    parser.add_argument("output_dir", help="where to save_pretrained the CodeBind model")
    parser.add_argument("--imagebind-config", default=None, help="JSON with the reference constructor's keyword arguments")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="also push the converted model to this Hub repo")
    args = parser.parse_args(argv)
    model = convert_imagebind_checkpoint(args.checkpoint, args.imagebind_config)
    model.save_pretrained(args.output_dir, max_shard_size="2GB")
    print(f"saved CodeBind model ({sum(p.numel() for p in model.parameters()):,} parameters) to {args.output_dir}")
    if args.push_to_hub:
        model.push_to_hub(args.push_to_hub)
        print(f"pushed to {args.push_to_hub}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "convert_imagebind_checkpoint",
    "imagebind_state_dict_to_codebind",
    "codebind_key_to_imagebind",
    "imagebind_codebind_config",
    "load_imagebind_checkpoint",
    "main",
]
