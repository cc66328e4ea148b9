"""One-way converter: a ViT-Lens checkpoint (``ViTLens.export_checkpoint`` layout, keys ``vitlens.<m>.*``) -> a
CodeBind-VL base model: ViT-Lens point-cloud / EEG towers plus a CLIP text and image bridge.

Each ViT-Lens modality is one open_clip ``VisionTransformer`` (lenses: adapter + perceiver + CLIP trunk; ``image``:
the CLIP image tower) or the CLIP text transformer. The conversion is a renaming with strict accounting, as the
ImageBind converter's: every checkpoint key must be consumed, every target weight filled, with matching shapes.

- ``towers.<m>.*``: ``visual_adapter.*`` -> ``adapter.*``, ``perceiver.*`` as is, ``class_embedding``,
  ``positional_embedding``, ``ln_pre``, ``conv1`` (image), ``token_embedding`` (text) as they are, and
  ``transformer.resblocks.i.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`` ->
  ``blocks.i.{norm_1, attn.qkv, attn.out_proj, norm_2, mlp.fc1, mlp.fc2}``;
- ``shared_heads.<m>``: ``ln_post`` (text ``ln_final``) is the head's LayerNorm and ``proj`` (text
  ``text_projection``, stored `(width, embed_dim)`) its transposed Linear, so ``get_features(m, x, part="shared",
  quantize=False)`` is the normalised ViT-Lens embedding;
- ``logit_scales``: ViT-Lens has none; lenses and vision get 1, text CLIP's ``logit_scale`` when an open_clip
  checkpoint brings one, else CLIP's initial 1/0.07 (learnable).

The CLIP bridge comes from the checkpoint itself (``vitlens.image.*`` and ``vitlens.text.*``, as the released
``vitlensL.pt`` holds them), from an open_clip CLIP checkpoint (``clip_checkpoint``: ``visual.*``, ``transformer.*``,
``token_embedding``, ...), or from an existing CodeBind model's ``text`` and ``vision`` towers (``bridge_model``).
Lenses without a tower here (ViT-Lens's depth, audio, tactile) must be left out explicitly (``lenses=``).

Command line::

    codebind-convert-vitlens vitlensL.pt ./codebind-vl-base [--vitlens-config config.json] [--lenses pc eeg]
        [--clip-checkpoint open_clip_pytorch_model.bin | --bridge-model DIR_OR_REPO] [--push-to-hub org/name]
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..encoders.vitlens import VITLENS_BRIDGES, VITLENS_L, VITLENS_LENSES, build_vitlens_tower, vitlens_modality_configs
from ..modules.heads import LogitScale, ProjectionHead
from ._common import account_weights, load_converted_weights, read_json_argument, save_pretrained_atomically

_MODALITY_OF = {**VITLENS_LENSES, **VITLENS_BRIDGES}
_LENS_OF = {m: lens for lens, m in _MODALITY_OF.items()}
_DIRECT = ("class_embedding", "positional_embedding", "conv1.weight", "token_embedding.weight", "ln_pre.weight",
           "ln_pre.bias")
_ADAPTER = ("visual_adapter.", "adapter.")
_BLOCK_NAMES = {"ln_1.weight": "norm_1.weight", "ln_1.bias": "norm_1.bias", "attn.in_proj_weight": "attn.qkv.weight",
                "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj.weight": "attn.out_proj.weight",
                "attn.out_proj.bias": "attn.out_proj.bias", "ln_2.weight": "norm_2.weight", "ln_2.bias": "norm_2.bias",
                "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
                "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias"}
_OUR_BLOCK_NAMES = {ours: ref for ref, ours in _BLOCK_NAMES.items()}
# Head LayerNorm and projection per modality kind: the text transformer names them differently.
_HEAD = {"text": ("ln_final", "text_projection")}
_DEFAULT_HEAD = ("ln_post", "proj")
# A key we add for an open_clip checkpoint's `logit_scale` (ViT-Lens checkpoints have none).
_TEXT_LOGIT_SCALE = "vitlens.text.logit_scale"
_PREFIXES = ("towers.", "shared_heads.", "logit_scales.")


def load_vitlens_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a ViT-Lens checkpoint without executing pickled code.

    Returns:
        `(state_dict, metadata)`: the ``vitlens.<m>.*`` tensors, and ``model_var`` / ``modality_loaded`` when the file
        is an ``export_checkpoint()`` dict (a plain state dict is accepted too).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"ViT-Lens checkpoint {str(path)!r} does not exist")
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    metadata = {}
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        metadata = {k: loaded[k] for k in ("model_var", "modality_loaded") if k in loaded}
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} is not a ViT-Lens state dict (expected a dict of tensors, or export_checkpoint's "
                         "{'state_dict': ...})")
    foreign = sorted(str(k) for k in loaded if not str(k).startswith("vitlens."))
    if foreign:
        raise ValueError(f"{path} is not in ViT-Lens's export layout (keys vitlens.<modality>.*); other keys: {foreign[:8]}")
    return dict(loaded), metadata


def load_open_clip_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An open_clip CLIP checkpoint (``.bin``/``.pt`` state dict, a training checkpoint's ``state_dict`` with or
    without DDP's ``module.``, or ``.safetensors``) renamed into ViT-Lens's layout: ``visual.*`` -> ``vitlens.image.*``,
    the text tower's keys -> ``vitlens.text.*``, ``logit_scale`` -> the text logit scale."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"open_clip checkpoint {str(path)!r} does not exist")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not an open_clip state dict (expected a dict of tensors)")
    renamed = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key == "logit_scale":
            renamed[_TEXT_LOGIT_SCALE] = value
        elif key.startswith("visual."):
            renamed["vitlens.image." + key[len("visual."):]] = value
        else:  # text weights sit at the top of open_clip's CLIP (or under `text.` in CustomTextCLIP)
            renamed["vitlens.text." + (key[len("text."):] if key.startswith("text.") else key)] = value
    return renamed


def read_vitlens_config(vitlens_config=None) -> tuple[dict, dict]:
    """``(clip_model_config, modality_cfg)`` from a dict, inline JSON or a JSON file holding both (as the fixture's
    ``config.json``; other entries are ignored); ``None`` is ViT-Lens-L."""
    if vitlens_config is None:
        return VITLENS_L["clip_model_config"], VITLENS_L["modality_cfg"]
    loaded = read_json_argument(vitlens_config, "vitlens_config")
    missing = [k for k in ("clip_model_config", "modality_cfg") if not isinstance(loaded.get(k), Mapping)]
    if missing:
        raise ValueError(f"vitlens_config lacks {missing}: it must hold 'clip_model_config' (open_clip's model config) "
                         "and 'modality_cfg' (the per-lens overrides), as ViT-Lens's config.json does")
    return dict(loaded["clip_model_config"]), dict(loaded["modality_cfg"])


def vitlens_key_to_codebind(key: str) -> str | None:
    """Our name of one ViT-Lens key (``vitlens.pc.perceiver.latents`` -> ``towers.point.perceiver.latents``), or None."""
    parts = key.split(".", 2) if isinstance(key, str) else []
    if len(parts) < 3 or parts[0] != "vitlens" or parts[1] not in _MODALITY_OF:
        return None
    modality, rest = _MODALITY_OF[parts[1]], parts[2]
    norm, proj = _HEAD.get(modality, _DEFAULT_HEAD)
    if rest in _DIRECT or rest.startswith("perceiver."):
        return f"towers.{modality}.{rest}"
    if rest.startswith(_ADAPTER[0]):
        return f"towers.{modality}.{_ADAPTER[1]}{rest[len(_ADAPTER[0]):]}"
    match = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", rest)
    if match:
        index, name = match.groups()
        return f"towers.{modality}.blocks.{index}.{_BLOCK_NAMES.get(name, name)}"
    if rest in (f"{norm}.weight", f"{norm}.bias"):
        return f"shared_heads.{modality}.norm.{rest.rsplit('.', 1)[1]}"
    if rest == proj:
        return f"shared_heads.{modality}.proj.weight"
    if key == _TEXT_LOGIT_SCALE:
        return "logit_scales.text.log_logit_scale"
    return None


def codebind_key_to_vitlens(key: str) -> str:
    """The ViT-Lens key of one of our tower/head/scale weights (the inverse of [`vitlens_key_to_codebind`])."""
    parts = key.split(".", 2)
    if len(parts) < 3 or parts[0] not in ("towers", "shared_heads", "logit_scales") or parts[1] not in _LENS_OF:
        raise ValueError(f"{key!r} is not a tower, shared-head or logit-scale weight of a ViT-Lens modality")
    group, modality, rest = parts
    lens = f"vitlens.{_LENS_OF[modality]}"
    norm, proj = _HEAD.get(modality, _DEFAULT_HEAD)
    if group == "logit_scales":
        if modality != "text":
            raise ValueError(f"{key!r} has no ViT-Lens counterpart: ViT-Lens does not scale {modality} embeddings")
        return _TEXT_LOGIT_SCALE
    if group == "shared_heads":
        return f"{lens}.{proj}" if rest == "proj.weight" else f"{lens}.{norm}.{rest.split('.', 1)[1]}"
    if rest.startswith(_ADAPTER[1]):
        return f"{lens}.{_ADAPTER[0]}{rest[len(_ADAPTER[1]):]}"
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest)
    if match:
        index, name = match.groups()
        return f"{lens}.transformer.resblocks.{index}.{_OUR_BLOCK_NAMES.get(name, name)}"
    return f"{lens}.{rest}"


def vitlens_state_dict_to_codebind(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every ViT-Lens key into our layout (projections transposed into Linear weights; the text tower's
    constant causal ``attn_mask`` is checked and dropped); unknown keys are an error listing them."""
    renamed, unknown = {}, []
    for key, value in state.items():
        if key == "vitlens.text.attn_mask":
            causal = torch.full(value.shape, float("-inf")).triu(1)
            if value.ndim != 2 or not torch.equal(value.float(), causal):
                raise ValueError(f"{key} is not the causal mask CLIP's text tower uses (shape {tuple(value.shape)})")
            continue
        ours = vitlens_key_to_codebind(key)
        if ours is None:
            unknown.append(key)
        else:
            renamed[ours] = value.t() if ours.endswith("proj.weight") and ours.startswith("shared_heads.") else value
    if unknown:
        raise ValueError(f"{len(unknown)} checkpoint keys are not ViT-Lens weights this converter knows: {sorted(map(str, unknown))}")
    return renamed


def expected_weight_shapes(configs: Mapping[str, dict], embed_dim: int) -> dict[str, torch.Size]:
    """Shapes of every tower, shared-head and logit-scale weight of these tower configs (built on meta)."""
    shapes = {}
    with torch.device("meta"):
        for modality, cfg in configs.items():
            tower = build_vitlens_tower(modality, cfg)
            parts = {
                "towers": tower,
                "shared_heads": ProjectionHead(tower.hidden_size, embed_dim, cfg["head_layer_norm_eps"], cfg["head_bias"]),
                "logit_scales": LogitScale(cfg["logit_scale"], cfg["logit_scale_learnable"]),
            }
            for group, module in parts.items():
                for name, value in module.state_dict().items():
                    shapes[f"{group}.{modality}.{name}"] = value.shape
    return shapes


def _lenses_in(state: Mapping[str, torch.Tensor]) -> list[str]:
    return list(dict.fromkeys(k.split(".")[1] for k in state if k.count(".") >= 2))


def plan_conversion(state_dict: Mapping[str, torch.Tensor], vitlens_config=None, lenses=None,
                    with_bridges: bool | None = None) -> tuple[dict, dict, list[str]]:
    """Which parts of a checkpoint become which towers.

    Args:
        state_dict: ``vitlens.<m>.*`` tensors. lenses: ViT-Lens lens names (or our modality names) to convert;
            default: every lens of the checkpoint, which must all have towers here. Lenses left out are dropped.
        with_bridges: convert ``vitlens.image``/``vitlens.text``; default: when the checkpoint holds them.

    Returns:
        `(tower_configs, clip_model_config, dropped_lenses)`.
    """
    clip, modality_cfg = read_vitlens_config(vitlens_config)
    present = _lenses_in(state_dict)
    bridges = [b for b in VITLENS_BRIDGES if b in present]
    with_bridges = bool(bridges) if with_bridges is None else with_bridges
    if with_bridges and len(bridges) != len(VITLENS_BRIDGES):
        raise ValueError(f"The checkpoint holds the CLIP bridge parts {bridges} only; a bridge needs both "
                         f"{list(VITLENS_BRIDGES)}")
    if lenses is None:
        chosen = [lens for lens in present if lens not in VITLENS_BRIDGES]
        unsupported = [lens for lens in chosen if lens not in VITLENS_LENSES]
        if unsupported:
            raise ValueError(f"The checkpoint holds lenses {unsupported} that have no tower here (supported: "
                             f"{sorted(VITLENS_LENSES)}); leave them out explicitly with lenses=/--lenses")
    else:
        chosen = [_LENS_OF.get(lens, lens) for lens in ([lenses] if isinstance(lenses, str) else lenses)]
        bad = [lens for lens in chosen if lens not in VITLENS_LENSES]
        if bad:
            raise ValueError(f"No tower for lenses {bad}; supported: {sorted(VITLENS_LENSES)} (or {sorted(VITLENS_LENSES.values())})")
        absent = [lens for lens in chosen if lens not in present]
        if absent:
            raise ValueError(f"Lenses {absent} were asked for but the checkpoint holds {present}")
    if not chosen:
        raise ValueError(f"Nothing to convert: the checkpoint holds no lens with a tower here (it holds {present})")
    unconfigured = [lens for lens in chosen if lens not in modality_cfg]
    if unconfigured:
        raise ValueError(f"vitlens_config's modality_cfg has no settings for lenses {unconfigured} (it has {sorted(modality_cfg)})")
    configs = vitlens_modality_configs(clip, {lens: modality_cfg[lens] for lens in chosen}, bridges=with_bridges)
    dropped = [lens for lens in present if lens not in chosen and not (with_bridges and lens in VITLENS_BRIDGES)]
    return configs, clip, dropped


def vitlens_state_dict_to_towers(state_dict: Mapping[str, torch.Tensor], vitlens_config=None, lenses=None,
                                 with_bridges: bool | None = None) -> dict[str, torch.Tensor]:
    """Rename a ViT-Lens state dict into ``towers.<m>.*``, ``shared_heads.<m>.{norm,proj}.*`` and
    ``logit_scales.<m>.log_logit_scale`` weights, checking that it is exactly what these towers need.

    Args:
        state_dict: ``vitlens.<m>.*`` tensors (e.g. from [`load_vitlens_checkpoint`], plus
            [`load_open_clip_checkpoint`]'s for the bridge).
        vitlens_config: ``clip_model_config`` + ``modality_cfg`` (see [`read_vitlens_config`]); None is ViT-Lens-L.
        lenses, with_bridges: see [`plan_conversion`].

    Returns:
        `dict[str, torch.Tensor]`: our weights; logit scales the checkpoint lacks are filled in (module docstring).

    Raises:
        ValueError: for keys the converter does not know, weights these towers have no place for or need but the
            checkpoint lacks (listed with their ViT-Lens names), or shape mismatches.

    Example:

    ```python
    >>> from codebind_hf.convert.vitlens import load_vitlens_checkpoint, vitlens_state_dict_to_towers  # doctest: +SKIP
    >>> state, _ = load_vitlens_checkpoint("vitlensL.pt")  # doctest: +SKIP
    >>> weights = vitlens_state_dict_to_towers(state, lenses=["pc", "eeg"])  # doctest: +SKIP
    >>> weights["towers.point.blocks.0.attn.qkv.weight"].shape  # doctest: +SKIP
    torch.Size([3072, 1024])

    ```
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    not_tensors = sorted(str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise TypeError(f"state_dict values must be tensors; these are not: {not_tensors}")
    configs, clip, dropped = plan_conversion(state_dict, vitlens_config, lenses, with_bridges)
    kept = {k: v for k, v in state_dict.items() if k.split(".")[1] not in dropped}
    renamed = vitlens_state_dict_to_codebind(kept)
    expected = expected_weight_shapes(configs, clip["embed_dim"])
    synthesized = {k for k in expected if k.startswith("logit_scales.") and k not in renamed}
    account_weights(
        kept, renamed, expected, vitlens_key_to_codebind, codebind_key_to_vitlens,
        disagreement=f"Checkpoint and ViT-Lens configuration disagree (towers {list(configs)})",
        mismatch_hint="wrong clip_model_config / modality_cfg, or --vitlens-config?", synthesized=synthesized,
    )
    for key in synthesized:
        renamed[key] = torch.tensor(math.log(configs[key.split(".")[1]]["logit_scale"]), dtype=torch.float32)
    return renamed


def vitlens_codebind_config(tower_configs: Mapping[str, dict], embed_dim: int, **config_overrides):
    """The `CodeBindConfig` of a converted checkpoint: the towers, bridges text+vision, one path per lens."""
    from ..configuration_codebind import CodeBindConfig

    lenses = [m for m in tower_configs if m not in VITLENS_BRIDGES.values()]
    settings = dict(modalities=dict(tower_configs), bridges=["text", "vision"],
                    paths={m: {"bridges": ["text", "vision"]} for m in lenses}, embed_dim=embed_dim,
                    specific_dim=embed_dim, decoder={"enabled": False})
    settings.update(config_overrides)
    return CodeBindConfig(**settings)


def convert_vitlens_checkpoint(checkpoint_path, vitlens_config=None, lenses=None, clip_checkpoint=None,
                               bridge_model=None, **config_overrides):
    """Convert a ViT-Lens checkpoint into a `CodeBindModel` whose shared lens embeddings equal ViT-Lens's.

    Args:
        checkpoint_path: an ``export_checkpoint()`` file or a plain ``vitlens.<m>.*`` state dict.
        vitlens_config: ``clip_model_config`` + ``modality_cfg`` (dict, JSON string or file); None is ViT-Lens-L.
        lenses: ViT-Lens lenses to convert (default: all of the checkpoint's; see [`plan_conversion`]).
        clip_checkpoint: an open_clip CLIP checkpoint for the text/image bridge, when the checkpoint has none.
        bridge_model: or a `CodeBindModel` (or its folder / Hub id) whose ``text`` and ``vision`` towers, heads and
            logit scales are copied; its ``embed_dim`` must be the lenses'.
        **config_overrides: `CodeBindConfig` arguments replacing the defaults (``paths``, ``quantizer``, ...).

    Example:

    ```python
    >>> from codebind_hf.convert.vitlens import convert_vitlens_checkpoint  # doctest: +SKIP
    >>> model = convert_vitlens_checkpoint("vitlensL.pt", lenses=["pc", "eeg"])  # doctest: +SKIP
    >>> model.save_pretrained("codebind-vl-base")  # doctest: +SKIP

    ```
    """
    from ..modeling_codebind import CodeBindModel

    state, _ = load_vitlens_checkpoint(checkpoint_path)
    own_bridges = [k for k in state if k.split(".")[1] in VITLENS_BRIDGES]
    sources = [name for name, given in (("the checkpoint's vitlens.image/text", own_bridges),
                                        ("clip_checkpoint", clip_checkpoint), ("bridge_model", bridge_model)) if given]
    if len(sources) != 1:
        raise ValueError(f"A CodeBind-VL model needs exactly one CLIP text/image bridge; got {sources or 'none'} "
                         "(pass clip_checkpoint= / --clip-checkpoint or bridge_model= / --bridge-model when the "
                         "checkpoint holds no vitlens.image and vitlens.text weights)")
    if clip_checkpoint is not None:
        state.update(load_open_clip_checkpoint(clip_checkpoint))
    if bridge_model is not None and not isinstance(bridge_model, CodeBindModel):
        bridge_model = CodeBindModel.from_pretrained(bridge_model)
    weights = vitlens_state_dict_to_towers(state, vitlens_config, lenses, with_bridges=bridge_model is None)
    configs, clip, _ = plan_conversion(state, vitlens_config, lenses, with_bridges=bridge_model is None)
    groups = ("towers", "shared_heads", "logit_scales")
    if bridge_model is not None:
        if bridge_model.config.embed_dim != clip["embed_dim"] or not {"text", "vision"} <= set(bridge_model.towers):
            raise ValueError(f"bridge_model must have text and vision towers and embed_dim {clip['embed_dim']} (the "
                             f"lenses' width); it has {sorted(bridge_model.towers)} and {bridge_model.config.embed_dim}")
        configs.update({m: bridge_model.config.modalities[m] for m in VITLENS_BRIDGES.values()})
        prefixes = tuple(f"{g}.{m}." for g in groups for m in VITLENS_BRIDGES.values())
        weights.update({k: v for k, v in bridge_model.state_dict().items() if k.startswith(prefixes)})
    model = CodeBindModel(vitlens_codebind_config(configs, clip["embed_dim"], **config_overrides))
    load_converted_weights(model, weights, tuple(f"{g}.{m}." for g in groups for m in configs))
    return model.eval()


def vitlens_processor(config):
    """The `CodeBindProcessor` matching a converted model's towers (point count, EEG size, image size)."""
    from ..processing_codebind import CodeBindProcessor

    towers = config.modalities
    sizes = {}
    if "point" in towers:
        sizes["num_points"] = towers["point"]["num_points"]
    if "eeg" in towers:
        sizes.update(eeg_length=towers["eeg"]["time_len"], eeg_channels=towers["eeg"]["in_channels"])
    if towers.get("vision", {}).get("stem") == "patch":
        sizes["image_size"] = towers["vision"]["image_size"]
    return CodeBindProcessor.vitlens(**sizes)


def main(argv: list[str] | None = None) -> int:
    """Console script ``codebind-convert-vitlens CHECKPOINT OUTPUT_DIR [--vitlens-config CONFIG.json] [...]``."""
    parser = argparse.ArgumentParser(description="Convert a ViT-Lens checkpoint into a CodeBind-VL base model.")
    parser.add_argument("checkpoint", help="ViT-Lens export_checkpoint file (e.g. vitlensL.pt) or vitlens.* state dict")
    parser.add_argument("output_dir", help="where to save_pretrained the CodeBind model and its processor")
    parser.add_argument("--vitlens-config", default=None,
                        help="JSON file or inline object with 'clip_model_config' and 'modality_cfg' (default: ViT-Lens-L)")
    parser.add_argument("--lenses", nargs="+", default=None, help="lenses to convert (pc, eeg); others are left out")
    bridge = parser.add_mutually_exclusive_group()
    bridge.add_argument("--clip-checkpoint", default=None, help="open_clip CLIP weights for the text/image bridge")
    bridge.add_argument("--bridge-model", default=None, help="CodeBind model folder or Hub id whose text/vision towers to use")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="also push the model and processor to this Hub repo")
    parser.add_argument("--license", default=None,
                        help="licence of the pushed weights for the model card (default: the card's CC BY-NC-SA 4.0)")
    args = parser.parse_args(argv)
    model = convert_vitlens_checkpoint(args.checkpoint, args.vitlens_config, args.lenses, args.clip_checkpoint,
                                       args.bridge_model)
    processor = vitlens_processor(model.config)
    save_pretrained_atomically(args.output_dir, model, processor, max_shard_size="2GB")
    for modality, tower in model.towers.items():
        print(f"{modality:>8}: {sum(p.numel() for p in tower.parameters()):,} tower parameters")
    print(f"saved CodeBind-VL model ({sum(p.numel() for p in model.parameters()):,} parameters) and processor to {args.output_dir}")
    if args.push_to_hub:
        model.push_to_hub(args.push_to_hub, license=args.license)
        processor.push_to_hub(args.push_to_hub)
        print(f"pushed to {args.push_to_hub}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "load_vitlens_checkpoint",
    "load_open_clip_checkpoint",
    "read_vitlens_config",
    "vitlens_key_to_codebind",
    "codebind_key_to_vitlens",
    "vitlens_state_dict_to_codebind",
    "expected_weight_shapes",
    "plan_conversion",
    "vitlens_state_dict_to_towers",
    "vitlens_codebind_config",
    "convert_vitlens_checkpoint",
    "vitlens_processor",
    "main",
]
