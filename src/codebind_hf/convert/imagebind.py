"""One-way converter: an original ImageBind ``.pth`` state dict -> our towers, shared heads and logit scales.

The conversion is a renaming (our modules keep the reference parameter layouts), with strict accounting: every
checkpoint key must be consumed and every target weight filled, with matching shapes; anything else is an error
that lists the keys. [`imagebind_state_dict_to_towers`] is the pure step; [`convert_imagebind_checkpoint`] builds a
`CodeBindModel` (CodeBind-IB base: towers, shared heads and logit scales, whose shared embeddings are ImageBind's;
no paths, hence no untrained codebooks: load trained paths with ``load_path``).

Command line::

    codebind-convert-imagebind imagebind_huge.pth ./codebind-ib-base [--imagebind-config kwargs.json] [--push-to-hub org/name]
        [--add-towers tactile,eeg]

writes the model and its ImageBind processor (``CodeBindProcessor.imagebind()``) into one folder.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..encoders.imagebind import (
    CODEBIND_EXTRA_MODALITIES,
    IMAGEBIND_CONSTRUCTOR_DEFAULTS,
    IMAGEBIND_HUGE,
    IMAGEBIND_MODALITIES,
    build_imagebind_tower,
    imagebind_modality_configs,
)
from ..modules.heads import LogitScale, ProjectionHead
from ._common import account_weights, load_converted_weights, read_json_argument, save_pretrained_atomically

# Reference stem modules per modality (PatchEmbedGeneric.proj is a Sequential, hence ".1", only for vision).
_STEMS = {"vision": "rgbt_stem.proj.1", "audio": "rgbt_stem.proj", "depth": "depth_stem.proj", "thermal": "rgbt_stem.proj",
          "imu": "imu_stem.proj", "tactile": "rgbt_stem.proj", "eeg": "eeg_stem.proj"}
_STEM_NORMS = {m: stem.rsplit(".", 1)[0] + ".norm_layer" for m, stem in _STEMS.items() if m != "vision"}
# Head Sequential indices: LayerNorm, [SelectElement], [Dropout], Linear; text wraps LayerNorm+Linear in `proj`.
_HEAD_NORM = {"text": "proj.0"}
_HEAD_PROJ = {"text": "proj.1", "imu": "3"}
# Modalities whose positional embedding sits directly on the preprocessor (no SpatioTemporalPosEmbeddingHelper).
_DIRECT_POS_EMBED = ("text", "imu", "eeg")
# The reference vision postprocessor only normalises: our scale is a constant 1 that the checkpoint lacks.
_UNSCALED = ("vision",)
_PREFIXES = ("towers.", "shared_heads.", "logit_scales.")


def load_imagebind_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load an original ImageBind checkpoint (a plain state dict) without executing pickled code.

    A ``{"model": state_dict}`` wrapper is unwrapped.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"ImageBind checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a plain ImageBind state dict (expected a dict of tensors)")
    return state


def imagebind_key_to_codebind(key: str) -> str | None:
    """Our name (``towers.<m>.*``, ``shared_heads.<m>.*``, ``logit_scales.<m>.*``) of one reference key, or None."""
    parts = key.split(".")
    if len(parts) < 3:
        return None
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
        if rest in ("pre_transformer_layer.0.weight", "pre_transformer_layer.0.bias"):
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
            if rest.startswith(prefix + ".") and "." not in rest[len(prefix) + 1 :]:
                return f"shared_heads.{modality}.{ours}.{rest[len(prefix) + 1:]}"
        return None
    if group == "modality_postprocessors" and rest == "1.log_logit_scale":
        return f"logit_scales.{modality}.log_logit_scale"
    return None


def codebind_key_to_imagebind(key: str) -> str:
    """The reference key of one of our tower/head/scale weights (the inverse of [`imagebind_key_to_codebind`])."""
    parts = key.split(".", 2)
    if len(parts) < 3 or parts[0] not in ("towers", "shared_heads", "logit_scales"):
        raise ValueError(f"{key!r} is not a tower, shared-head or logit-scale weight; it has no ImageBind counterpart")
    group, modality, rest = parts
    if group == "logit_scales" and modality in _UNSCALED:
        raise ValueError(f"{key!r} has no ImageBind counterpart: the reference does not scale {modality} embeddings")
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
        return f"{pre}.pos_embed" if modality in _DIRECT_POS_EMBED else f"{pre}.pos_embedding_helper.pos_embed"
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


def imagebind_state_dict_to_codebind(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every reference key into our layout (no completeness check); unknown keys are an error listing them."""
    renamed, unknown = {}, []
    for key, value in state.items():
        ours = imagebind_key_to_codebind(key) if isinstance(key, str) else None
        if ours is None:
            unknown.append(key)
        else:
            renamed[ours] = value
    if unknown:
        raise ValueError(
            f"{len(unknown)} checkpoint keys are not ImageBind weights this converter knows: {sorted(map(str, unknown))}"
        )
    return renamed


def _constructor_kwargs(imagebind_config: Mapping | str | os.PathLike | None) -> dict:
    """Constructor kwargs from None (imagebind_huge), a dict, a JSON string or a JSON file (optionally under
    ``"constructor_kwargs"``, as the fixture's config.json)."""
    if imagebind_config is None:
        return dict(IMAGEBIND_HUGE)
    loaded = read_json_argument(imagebind_config, "imagebind_config (the reference constructor's keyword arguments)")
    return dict(loaded.get("constructor_kwargs", loaded))


def expected_weight_shapes(constructor_kwargs: Mapping | None = None, modalities=IMAGEBIND_MODALITIES) -> dict[str, torch.Size]:
    """Shapes of every tower, shared-head and logit-scale weight for these constructor kwargs (built on meta)."""
    kwargs = _constructor_kwargs(constructor_kwargs)
    configs = imagebind_modality_configs(tuple(modalities), **kwargs)
    out_dim = kwargs.get("out_embed_dim", IMAGEBIND_CONSTRUCTOR_DEFAULTS["out_embed_dim"])
    shapes = {}
    with torch.device("meta"):
        for modality, cfg in configs.items():
            tower = build_imagebind_tower(modality, cfg)
            parts = {
                "towers": tower,
                "shared_heads": ProjectionHead(tower.hidden_size, out_dim, cfg["head_layer_norm_eps"], dropout=cfg["head_dropout"]),
                "logit_scales": LogitScale(cfg["logit_scale"], cfg["logit_scale_learnable"]),
            }
            for group, module in parts.items():
                for name, value in module.state_dict().items():
                    shapes[f"{group}.{modality}.{name}"] = value.shape
    return shapes


def imagebind_state_dict_to_towers(
    state_dict: Mapping[str, torch.Tensor],
    constructor_kwargs: Mapping | None = None,
    modalities=IMAGEBIND_MODALITIES,
) -> dict[str, torch.Tensor]:
    """Rename an ImageBind state dict into ``towers.<m>.*``, ``shared_heads.<m>.{norm,proj}.*`` and
    ``logit_scales.<m>.log_logit_scale`` weights, checking that it is exactly what these towers need.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): the reference state dict (e.g. from [`load_imagebind_checkpoint`]).
        constructor_kwargs (`dict`, *optional*): the reference ``ImageBindModel.__init__`` keyword arguments the
            checkpoint was made with; ``None`` means ``imagebind_huge`` (`IMAGEBIND_HUGE`).
        modalities (`tuple[str]`, *optional*): the towers the checkpoint holds; defaults to ImageBind's six.

    Returns:
        `dict[str, torch.Tensor]`: our weights, loadable with ``strict=True`` into modules named ``towers``,
        ``shared_heads`` and ``logit_scales`` (ModuleDicts by modality). The logit scale is stored as its log, as the
        reference stores it; vision, which the reference does not scale, gets log 1 = 0.

    Raises:
        ValueError: for keys the converter does not know, checkpoint weights these towers have no place for,
            weights the towers need but the checkpoint lacks (all listed by name), or shape mismatches.

    Example:

    ```python
    >>> from codebind_hf.convert.imagebind import imagebind_state_dict_to_towers, load_imagebind_checkpoint  # doctest: +SKIP
    >>> weights = imagebind_state_dict_to_towers(load_imagebind_checkpoint("imagebind_huge.pth"))  # doctest: +SKIP
    >>> weights["towers.vision.blocks.0.attn.qkv.weight"].shape  # doctest: +SKIP
    torch.Size([3840, 1280])

    ```
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    not_tensors = sorted(str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise TypeError(f"state_dict values must be tensors; these are not: {not_tensors}")
    renamed = imagebind_state_dict_to_codebind(state_dict)
    expected = expected_weight_shapes(constructor_kwargs, modalities)
    synthesized = {f"logit_scales.{m}.log_logit_scale" for m in _UNSCALED if f"logit_scales.{m}.log_logit_scale" in expected}
    account_weights(
        state_dict, renamed, expected, imagebind_key_to_codebind, codebind_key_to_imagebind,
        disagreement=f"Checkpoint and ImageBind configuration disagree (modalities {list(modalities)})",
        mismatch_hint="wrong constructor arguments / --imagebind-config?", synthesized=synthesized,
    )
    for key in synthesized:
        renamed[key] = torch.zeros((), dtype=torch.float32)
    return renamed


def imagebind_codebind_config(imagebind_config: Mapping | str | os.PathLike | None = None, extra_towers=(),
                              **config_overrides):
    """The `CodeBindConfig` of a converted checkpoint: ImageBind's six towers from the reference keyword arguments
    (``imagebind_huge`` when ``imagebind_config`` is None), bridges text+vision, and no paths: a path's codebooks
    exist once trained (``codebind-train``, or ``model.load_path(...)`` of a trained one), so a converted base never
    quantises through random codevectors. ``extra_towers`` adds CodeBind's ``tactile`` / ``eeg`` towers (sizes from
    the ``tactile_*`` / ``eeg_*`` arguments), which ImageBind has no weights for."""
    from ..configuration_codebind import CodeBindConfig

    kwargs = _constructor_kwargs(imagebind_config)
    bad = [m for m in extra_towers if m not in CODEBIND_EXTRA_MODALITIES]
    if bad:
        raise ValueError(f"extra towers {bad}: the converter can add {list(CODEBIND_EXTRA_MODALITIES)} (ImageBind's "
                         f"{list(IMAGEBIND_MODALITIES)} are always converted)")
    modalities = imagebind_modality_configs(IMAGEBIND_MODALITIES + tuple(dict.fromkeys(extra_towers)), **kwargs)
    out_dim = kwargs.get("out_embed_dim", IMAGEBIND_CONSTRUCTOR_DEFAULTS["out_embed_dim"])
    settings = dict(
        modalities=modalities,
        bridges=["text", "vision"],
        paths={},
        embed_dim=out_dim,
        specific_dim=out_dim,
        decoder={"enabled": False},
    )
    settings.update(config_overrides)
    return CodeBindConfig(**settings)


def convert_imagebind_checkpoint(checkpoint_path, imagebind_config: Mapping | str | os.PathLike | None = None,
                                 extra_towers=(), **config_overrides):
    """Convert an ImageBind ``.pth`` into a `CodeBindModel` whose shared embeddings equal ImageBind's.

    Args:
        checkpoint_path: the original checkpoint (e.g. ``imagebind_huge.pth``).
        imagebind_config: the reference constructor's keyword arguments (dict, JSON string, or JSON file holding them
            or ``{"constructor_kwargs": {...}}``); ``None`` is imagebind_huge.
        extra_towers (`tuple[str]`, *optional*): CodeBind's ``"tactile"`` and/or ``"eeg"`` towers, randomly
            initialised (ImageBind has no weights for them): train them with a ``fulltune`` path.
        **config_overrides: `CodeBindConfig` arguments replacing the defaults (``paths``, ``quantizer``, ...).

    Example:

    ```python
    >>> from codebind_hf.convert.imagebind import convert_imagebind_checkpoint  # doctest: +SKIP
    >>> model = convert_imagebind_checkpoint("imagebind_huge.pth")  # doctest: +SKIP
    >>> model.save_pretrained("codebind-ib-base")  # doctest: +SKIP

    ```
    """
    from ..modeling_codebind import CodeBindModel

    kwargs = _constructor_kwargs(imagebind_config)
    config = imagebind_codebind_config(kwargs, extra_towers, **config_overrides)
    # Towers the overrides add beyond ImageBind's (e.g. tactile) keep their fresh initialisation.
    converted = tuple(m for m in IMAGEBIND_MODALITIES if m in config.modalities)
    weights = imagebind_state_dict_to_towers(load_imagebind_checkpoint(checkpoint_path), kwargs, converted)
    model = CodeBindModel(config)
    load_converted_weights(model, weights, tuple(f"{group}{m}." for group in _PREFIXES for m in converted))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """Console script ``codebind-convert-imagebind CHECKPOINT OUTPUT_DIR [--imagebind-config JSON] [--push-to-hub REPO]``."""
    parser = argparse.ArgumentParser(description="Convert an original ImageBind checkpoint into a CodeBind model.")
    parser.add_argument("checkpoint", help="ImageBind .pth state dict (e.g. imagebind_huge.pth)")
    parser.add_argument("output_dir", help="where to save_pretrained the CodeBind model and its processor")
    parser.add_argument(
        "--imagebind-config", default=None,
        help="the reference constructor's keyword arguments: a JSON file or an inline JSON object (default: imagebind_huge)",
    )
    parser.add_argument("--push-to-hub", default=None, metavar="REPO",
                        help="also push the converted model and its processor to this Hub repo (one commit)")
    parser.add_argument("--add-towers", default="", metavar="tactile,eeg",
                        help="also build CodeBind's tactile and/or EEG towers (random weights: train them with a fulltune "
                             "path; sizes from tactile_*/eeg_* in --imagebind-config)")
    args = parser.parse_args(argv)
    from ..processing_codebind import CodeBindProcessor

    extra = tuple(m.strip() for m in args.add_towers.split(",") if m.strip())
    model = convert_imagebind_checkpoint(args.checkpoint, args.imagebind_config, extra)
    processor = CodeBindProcessor.imagebind()  # the model's inputs travel with it, as transformers models do
    save_pretrained_atomically(args.output_dir, model, processor, max_shard_size="2GB")
    for modality, tower in model.towers.items():
        print(f"{modality:>8}: {sum(p.numel() for p in tower.parameters()):,} tower parameters")
    print(f"saved CodeBind model ({sum(p.numel() for p in model.parameters()):,} parameters) and processor to {args.output_dir}")
    if args.push_to_hub:
        model.push_to_hub(args.push_to_hub, processor=processor)
        print(f"pushed to {args.push_to_hub}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "load_imagebind_checkpoint",
    "imagebind_key_to_codebind",
    "codebind_key_to_imagebind",
    "imagebind_state_dict_to_codebind",
    "expected_weight_shapes",
    "imagebind_state_dict_to_towers",
    "imagebind_codebind_config",
    "convert_imagebind_checkpoint",
    "main",
]
