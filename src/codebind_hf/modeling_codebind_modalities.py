"""The modality set of a [`CodeBindModel`]: building each modality's tower and heads, adding and removing modalities
(`add_modality` / `remove_modality`, new sensors included), and the input keys ``forward`` dispatches on.

A modality's tensor reaches ``forward`` under its input key: the nine known ones as named arguments (``pixel_values``,
``audio_values`` ...), any other through ``**kwargs`` (``radar_values=...``). A key that no modality of the model takes
is a `TypeError`, as an unknown keyword argument always was.
"""

from __future__ import annotations

import torch
from torch import nn

from .adapters.state import adapter_state
from .encoders import build_tower
from .feature_extraction_array_sensor import processor_component
from .modalities import INPUT_KEYS, VIDEO_INPUT_KEY, check_input_keys, check_new_modality_name, is_known, modality_entry
from .modules.heads import LogitScale, ProjectionHead
from .validation import check_sample_shapes


class ModalitySetMixin:
    """`add_modality`, `remove_modality` and the input-key dispatch of [`CodeBindModel`]."""

    # ------------------------------------------------------------------ building one modality
    def _build_modality_tower(self, modality: str) -> nn.Module:
        """The tower of ``modality`` from ``config.modalities``, attention following the model's, shapes checked."""
        config, cfg = self.config, self.config.modalities[modality]
        typed = config.tower_config(modality)
        # A tower's config that asks for nothing follows the model's attention implementation; an HF backbone
        # left to itself on the default picks SDPA where it has it (not every backbone does).
        follow = cfg.get("family") != "hf" or config._attn_implementation != "sdpa"
        if typed._attn_implementation is None and follow:
            typed._attn_implementation_internal = config._attn_implementation
        tower = build_tower(modality, cfg, typed)
        tower.set_attention_config(typed)
        self._check_modality_shapes(modality, cfg, tower)
        return tower

    def _modality_heads(self, modality: str, tower: nn.Module) -> tuple[ProjectionHead, LogitScale]:
        cfg = self.config.modalities[modality]
        head = ProjectionHead(tower.hidden_size, self.config.embed_dim, layer_norm_eps=cfg.get("head_layer_norm_eps", 1e-6),
                              bias=cfg.get("head_bias", False), dropout=cfg.get("head_dropout", 0.0))
        return head, LogitScale(cfg.get("logit_scale", 1.0), cfg.get("logit_scale_learnable", False))

    @staticmethod
    def _check_modality_shapes(modality: str, cfg: dict, tower: nn.Module) -> None:
        """The spec's sample shape, the processor's output and the tower's input must agree (where each is known),
        and the processor must write the modality's input key."""
        declared = cfg.get("sample_shape")
        processor = cfg.get("processor")
        component = processor_component(processor) if processor else None
        produced = getattr(component, "sample_shape", None)
        key, expected = getattr(component, "input_key", None), INPUT_KEYS.get(modality) or cfg.get("input_key")
        if key is not None and key != expected:
            raise ValueError(f"{modality}: its processor component writes {key!r}, but the modality's input key is "
                             f"{expected!r}; give both the same key")
        if declared is not None and tower.sample_ndim != len(declared):
            raise ValueError(f"{modality}: sample_shape {declared} has {len(declared)} dims, the {type(tower).__name__} "
                             f"takes samples of {tower.sample_ndim}")
        check_sample_shapes(modality, {"spec sample_shape": declared, "processor output": produced,
                                       "tower input": tower.input_shape if (declared or produced) else None})

    # ------------------------------------------------------------------ adding and removing
    def add_modality(self, modality: str, spec: dict) -> str:
        """Add a modality (a new sensor, or a known one this model lacks) with its tower, shared head and logit scale.

        Args:
            modality (`str`): an identifier that is no alias, processor keyword or modality of this model.
            spec (`dict`): ``{"tower": {"family": ..., ...}, "sample_shape": [...], "input_key": ...,
                "has_specific": ..., "processor": <component or its dict>, "description": ...}`` (see
                `codebind_hf.modalities.modality_entry`); the tower is freshly initialised (train it with a path).

        Returns:
            `str`: the canonical name. Refused, with the model left as it was: a name clash, a bad or taken input key,
            a tower that cannot be built, and sample shapes of the spec, the processor and the tower that disagree.
        """
        name = check_new_modality_name(modality)
        if name in self.towers:
            raise ValueError(f"This model already has a {name!r} modality; remove_modality({name!r}) first")
        entry = modality_entry(name, spec)
        check_input_keys({**self.config.modalities, name: entry})
        previous = self.config.modalities
        self.config.modalities = {**previous, name: entry}
        try:
            self.config.validate_architecture()
            tower = self._build_modality_tower(name)
        except Exception:
            self.config.modalities = previous
            raise
        head, scale = self._modality_heads(name, tower)
        reference = next(self.parameters(), None)
        built = [head, scale] + ([tower] if entry.get("family") != "hf" else [])  # HF backbones initialise themselves
        for module in built:
            module.apply(self._init_weights)
        if reference is not None:  # where and in what precision the model already is
            for module in (tower, head, scale):
                module.to(device=reference.device, dtype=reference.dtype)
        self.towers[name], self.shared_heads[name], self.logit_scales[name] = tower, head, scale
        self._add_decoder_target(name)
        return name

    def _add_decoder_target(self, modality: str) -> None:
        """A reconstruction decoder already there learns to reconstruct the new modality too (its own head)."""
        tower = self.towers[modality]
        if self.decoder is None or not (self.config.has_specific(modality) and tower.input_shape and tower.num_patches):
            return
        reference = self.decoder.input_proj.weight
        position = nn.Parameter(torch.zeros(1, tower.num_patches, reference.shape[0], device=reference.device,
                                            dtype=reference.dtype))
        head = nn.Linear(reference.shape[0], tower.patch_dim).to(device=reference.device, dtype=reference.dtype)
        head.apply(self._init_weights)
        self.decoder.position_embeddings[modality], self.decoder.heads[modality] = position, head

    def remove_modality(self, modality: str) -> None:
        """Remove a modality's tower, heads, decoder head and config entry; refused while a path uses it."""
        name = self._check_modality(modality)
        users = sorted(target for target in self.config.paths if name in self.config.path_modalities(target))
        if users:
            raise ValueError(f"Paths {users} use the {name} modality; remove_path them first")
        for modules in (self.towers, self.shared_heads, self.logit_scales):
            del modules[name]
        if self.decoder is not None and name in self.decoder.heads:
            del self.decoder.heads[name]
            del self.decoder.position_embeddings[name]
        adapter_state(self).lora.pop(name, None)
        self.config.modalities = {m: cfg for m, cfg in self.config.modalities.items() if m != name}
        self.config.bridges = [m for m in self.config.bridges if m != name]

    def modality_processor(self, modality: str):
        """The processor component of ``modality``'s spec (e.g. of a sensor a loaded path brought), for
        ``CodeBindProcessor.add_modality``; None when its spec names none."""
        processor = self.config.modalities[self._check_modality(modality)].get("processor")
        return None if processor is None else processor_component(processor)

    # ------------------------------------------------------------------ input keys
    def input_keys(self) -> dict[str, str]:
        """Input key -> modality, for every modality of this model (videos: ``pixel_values_videos`` -> vision)."""
        keys = {self.config.input_key(m): m for m in self.config.modalities}
        if "vision" in self.config.modalities:
            keys[VIDEO_INPUT_KEY] = "vision"
        return keys

    def _extra_inputs(self, kwargs: dict) -> dict:
        """``forward``'s ``**kwargs``: the tensors of modalities beyond the nine named arguments, by input key."""
        takes = {key for key, m in self.input_keys().items() if not is_known(m)}
        unexpected = sorted(set(kwargs) - takes)
        if unexpected:
            raise TypeError(f"CodeBindModel.forward() got an unexpected keyword argument {unexpected[0]!r}; it takes the "
                            f"input keys {sorted(self.input_keys())}, attention_mask and the output switches")
        return kwargs

    def _present_modalities(self, inputs: dict) -> dict[str, torch.Tensor]:
        by_key = {**{key: m for m, key in INPUT_KEYS.items()}, VIDEO_INPUT_KEY: "vision", **self.input_keys()}
        present = {}
        for key, value in inputs.items():
            if value is None:
                continue
            if key not in by_key:
                raise TypeError(f"Unexpected input {key!r}; CodeBindModel takes {sorted(by_key)} and attention_mask")
            modality = self._check_modality(by_key[key])
            if modality in present:
                raise ValueError(f"Got both images and videos for {modality!r}; pass one per call")
            present[modality] = value
        if not present:
            raise ValueError(f"No modality inputs given; expected some of {sorted(by_key)}")
        return present

    def _pick_input(self, modality: str, batch, attention_mask):
        keys = [self.config.input_key(modality)] + ([VIDEO_INPUT_KEY] if modality == "vision" else [])
        present = [k for k in keys if k in batch and batch[k] is not None]
        if len(present) != 1:
            raise ValueError(
                f"Expected exactly one of {keys} for modality {modality!r} in the inputs; got keys {sorted(batch.keys())}"
            )
        if modality == "text" and attention_mask is None:
            attention_mask = batch.get("attention_mask")
        return batch[present[0]], attention_mask

    def _check_sample_shape(self, modality: str, inputs: torch.Tensor) -> None:
        """A declared sample shape is what the tower gets: ``(batch, *shape)`` or ``(batch, clips, *shape)``."""
        shape = self.config.modalities[modality].get("sample_shape")
        if shape is not None and list(inputs.shape[-len(shape):]) != list(shape):
            raise ValueError(f"{modality} inputs must be (batch, {', '.join(map(str, shape))}) (its sample_shape), got "
                             f"shape {tuple(inputs.shape)}; use the modality's processor component")


__all__ = ["ModalitySetMixin"]
