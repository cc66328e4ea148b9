"""Path-owned modules: base tensors a path carries its own copy of, used in place of the base's for that path.

A path always owns its codebooks and specific heads, and overwrites the target's shared head and logit scale (see
`codebind_hf.adapters.paths`). Some tensors cannot be overwritten, because several paths use them: in the authors'
code every path fine-tunes its own vision and text heads and the vision CLS token, so the audio path's vision
embedding differs from the depth path's. Such tensors are *path-owned*: ``model.path_owned[<path>]`` holds a copy
of each under the base's own name (``path_owned.audio.shared_heads.vision.proj.weight`` replaces
``shared_heads.vision.proj.weight`` for the audio path, ``path_owned.audio.towers.vision.cls_token`` the vision
tower's ``cls_token``), and computing with that path runs the base module with them in place
(`torch.func.functional_call`): the base itself never changes, so its fingerprint still covers it, and paths without
copies keep using it.

`path_owned_names` is the one place that says what a path owns this way (today: the ``bridge_heads`` switch,
``variants.bridge_heads: official``); a path that needs to carry other tensors of the base adds them there.

Example:

```python
>>> import torch
>>> from codebind_hf import CodeBindConfig, CodeBindModel
>>> vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
...        "intermediate_size": 64, "image_size": 16, "patch_size": 8}
>>> config = CodeBindConfig(modalities={"vision": {"family": "hf", "backbone": vit},
...                                     "depth": {"family": "hf", "backbone": {**vit, "num_channels": 1}}},
...                         bridges=["vision"], embed_dim=32, specific_dim=32, decoder={"enabled": False},
...                         paths={"depth": {"bridges": ["vision"], "variants": {"bridge_heads": "official"}}})
>>> model = CodeBindModel(config)
>>> path_owned_names(model, "depth")
['shared_heads.vision', 'logit_scales.vision', 'towers.vision.backbone.embeddings.cls_token', 'towers.depth.backbone.embeddings.cls_token']
>>> sorted(model.path_owned_overrides("depth", "towers.vision"))
['backbone.embeddings.cls_token']

```
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from transformers import initialization as init

from ..modalities import canonical_modality

PREFIX = "path_owned"


def path_owned_names(model: nn.Module, target: str, settings: dict | None = None) -> list[str]:
    """The base modules and tensors (state-dict names) path ``target`` carries its own copy of.

    With ``variants.bridge_heads: official`` (the authors' code): the shared head and logit scale of every bridge,
    and the CLS token (a tower tensor named ``cls_token``) of every modality of the path whose tower has one, the
    target's included unless the path fine-tunes the whole target tower (then the path carries that tower anyway).
    Otherwise nothing.

    Args:
        model ([`CodeBindModel`]): the base model (its towers say which have a CLS token).
        target (`str`): the path's target modality.
        settings (`dict`, *optional*): the path's settings; defaults to ``model.config.paths[target]``.
    """
    target = canonical_modality(target)
    settings = model.config.paths[target] if settings is None else settings
    if (settings.get("variants") or {}).get("bridge_heads", "paper") != "official":
        return []
    bridges = [canonical_modality(b) for b in settings.get("bridges", [])]
    names = [f"{group}.{b}" for b in bridges for group in ("shared_heads", "logit_scales")]
    cls_modalities = bridges + ([target] if settings.get("mode", "lora") != "fulltune" else [])
    for modality in cls_modalities:
        names += [f"towers.{modality}.{n}" for n in _cls_tokens(model.towers[modality])]
    return names


def _cls_tokens(tower: nn.Module) -> list[str]:
    return [name for name, _ in tower.named_parameters() if name.rsplit(".", 1)[-1] == "cls_token"]


class PathOwnedTensors(nn.Module):
    """Copies of base tensors under the base's names, as nested holder modules (``towers`` -> ``vision`` ->
    ``cls_token``); each leaf remembers the base tensor it copies (``sources``), which `_init_weights` reads."""

    def __init__(self):
        super().__init__()
        self.sources: dict[str, str] = {}  # local tensor name -> full base name

    def child(self, name: str) -> PathOwnedTensors:
        if name not in self._modules:
            self.add_module(name, PathOwnedTensors())
        return self._modules[name]

    def hold(self, base_name: str, tensor: torch.Tensor) -> None:
        """Store a copy of ``tensor`` (a parameter stays a parameter, frozen until a trainer says otherwise)."""
        *parents, leaf = base_name.split(".")
        holder = self
        for part in parents:
            holder = holder.child(part)
        copy = tensor.detach().clone()
        if isinstance(tensor, nn.Parameter):
            holder.register_parameter(leaf, nn.Parameter(copy, requires_grad=False))
        else:
            holder.register_buffer(leaf, copy)
        holder.sources[leaf] = base_name

    def find(self, module_name: str) -> PathOwnedTensors | None:
        holder = self
        for part in module_name.split("."):
            holder = holder._modules.get(part)
            if holder is None:
                return None
        return holder


def _base_tensors(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Every tensor the names cover (a module name covers all of its own), by full name, as the model holds them."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    found = {}
    for name in names:
        covered = {k: v for k, v in tensors.items() if k == name or k.startswith(name + ".")}
        if not covered:
            raise ValueError(f"path-owned name {name!r} is no module or tensor of this model")
        found.update(covered)
    return found


class PathOwnedMixin:
    """``model.path_owned`` (a ModuleDict by path) and its use: the overrides of one base module for one path, and
    running a base module with them. `CodeBindModel.__init__` creates ``path_owned``."""

    def sync_path_owned(self, target: str) -> None:
        """Give path ``target`` exactly the copies `path_owned_names` asks for: new ones copy the base's current
        values (a path starts from the base, as the authors fine-tune from ImageBind's heads), existing ones are kept,
        obsolete ones dropped."""
        target = canonical_modality(target)
        wanted = _base_tensors(self, path_owned_names(self, target)) if target in self.config.paths else {}
        current = self.path_owned[target] if target in self.path_owned else None
        have = {} if current is None else self._held(current)
        if set(have) == set(wanted):
            return
        holder = PathOwnedTensors()
        for name, tensor in wanted.items():
            holder.hold(name, have.get(name, tensor))
        if have:  # trained copies keep their values and trainability
            for name, tensor in self._held(holder).items():
                if name in have and isinstance(tensor, nn.Parameter):
                    tensor.requires_grad_(have[name].requires_grad)
        if wanted:
            self.path_owned[target] = holder
        elif current is not None:
            del self.path_owned[target]

    @staticmethod
    def _held(holder: PathOwnedTensors) -> dict[str, torch.Tensor]:
        out = {}
        for module in holder.modules():
            for leaf, base in module.sources.items():
                out[base] = getattr(module, leaf)
        return out

    def path_owned_overrides(self, path: str | None, module_name: str) -> dict[str, torch.Tensor]:
        """Path ``path``'s copies of tensors of base module ``module_name``, by their names inside that module (empty
        for no path or a path without copies there)."""
        if path is None or path not in self.path_owned:
            return {}
        holder = self.path_owned[path].find(module_name)
        if holder is None:
            return {}
        return {**dict(holder.named_parameters()), **dict(holder.named_buffers())}

    def run_path_module(self, path: str | None, module_name: str, *args, **kwargs):
        """``self.get_submodule(module_name)(*args, **kwargs)`` with path ``path``'s copies in place of the base's."""
        module = self.get_submodule(module_name)
        overrides = self.path_owned_overrides(path, module_name)
        if not overrides:
            return module(*args, **kwargs)
        return functional_call(module, overrides, args, kwargs, strict=False, tie_weights=False)

    def trains_path_owned(self, path: str, modality: str) -> bool:
        """Whether path ``path`` has trainable copies of tensors of the ``modality`` tower (its CLS token): that
        tower's outputs then depend on what trains, so they need gradients and cannot be cached."""
        return any(t.requires_grad for t in self.path_owned_overrides(path, f"towers.{modality}").values())

    def _init_path_owned(self, module: PathOwnedTensors) -> None:
        """`_init_weights` of a holder: each copy starts as the base tensor it copies (already initialised: the
        holders come after the base modules)."""
        for leaf, base in module.sources.items():
            parent, _, name = base.rpartition(".")
            init.copy_(getattr(module, leaf), getattr(self.get_submodule(parent), name))


__all__ = ["PREFIX", "PathOwnedMixin", "PathOwnedTensors", "path_owned_names"]
