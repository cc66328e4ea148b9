"""What a [`CodeBindModel`] carries besides its weights: one declared registry of its adapters, `AdapterState`.

``CodeBindModel.__init__`` creates it as ``model.adapter_state``; LoRA, paths, bonds and projectors read and write
it through `adapter_state` and nothing else. It lives outside the module tree, so ``state_dict``,
``save_pretrained`` and ``model.to(...)`` never see it (a bond computes on its own device).

The artifact verbs (``save_*``, ``load_*``, ``push_*``, ...) also share, at the end of this module, the two helpers
that keep their former argument names and function names working.

Example:

```python
>>> state = AdapterState()
>>> state.lora["depth"] = {"r": 4, "lora_alpha": 8, "last_n_blocks": 6, "dropout": 0.0}
>>> sorted(state.lora), state.hub_revision, state.bonds
(['depth'], None, {})

```
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class AttachedProjector:
    """A projector in place of a target's shared head.

    Args:
        replaced (`nn.Module`): the shared head it replaced, put back by `remove_projector`.
        bridges (`list[str]`, *optional*), temperature (`float`, *optional*): the settings its artifact records,
            known once it was saved or loaded.
    """

    replaced: nn.Module
    bridges: list[str] | None = None
    temperature: float | None = None


@dataclass
class AdapterState:
    """The adapters attached to one model.

    Args:
        lora (`dict[str, dict]`): modality -> the settings `add_lora` injected (``r``, ``lora_alpha``,
            ``last_n_blocks``, ``dropout``), which path artifacts record.
        path_backups (`dict[str, dict[str, torch.Tensor]]`): target -> the base tensors a loaded path overwrote
            (its shared head and logit scale, the tower for ``fulltune``), put back by ``remove_path``.
        hub_revision (`str`, *optional*): commit of the Hub checkpoint the model was loaded from.
        bonds (`dict[str, nn.Module]`): name -> attached [`SpaceBond`].
        projectors (`dict[str, AttachedProjector]`): target -> attached projector.
        path_modalities (`set[str]`): modalities a loaded path brought with its tower (`codebind_hf.adapters.path_towers`);
            removing the path removes them.
    """

    lora: dict[str, dict] = field(default_factory=dict)
    path_backups: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    hub_revision: str | None = None
    bonds: dict[str, nn.Module] = field(default_factory=dict)
    projectors: dict[str, AttachedProjector] = field(default_factory=dict)
    path_modalities: set[str] = field(default_factory=set)


def adapter_state(model: nn.Module) -> AdapterState:
    """The registry of ``model``; a model without one (not a [`CodeBindModel`]) is refused by name."""
    state = getattr(model, "adapter_state", None)
    if not isinstance(state, AdapterState):
        raise TypeError(f"{type(model).__name__} has no adapter registry (adapter_state): adapters attach to a CodeBindModel")
    return state


class AdapterStateMixin:
    """The registry under the attribute names a model had before it existed: ``lora_settings``, ``hub_revision``
    (also settable) and ``bonds``."""

    @property
    def lora_settings(self) -> dict[str, dict]:
        return adapter_state(self).lora

    @property
    def hub_revision(self) -> str | None:
        return adapter_state(self).hub_revision

    @hub_revision.setter
    def hub_revision(self, revision: str | None) -> None:
        adapter_state(self).hub_revision = revision

    @property
    def bonds(self) -> dict[str, nn.Module]:
        return adapter_state(self).bonds


# ---------------------------------------------------------------------------- former names
def renamed_argument(value: Any, old_value: Any, new: str, old: str) -> Any:
    """The value of an argument renamed from ``old`` to ``new``: the old keyword still works, with a
    `FutureWarning`; giving neither or both is a `TypeError`."""
    if old_value is None:
        if value is None:
            raise TypeError(f"missing the argument {new!r}")
        return value
    if value is not None:
        raise TypeError(f"got both {new!r} and {old!r}, its former name")
    warnings.warn(f"the argument {old!r} is deprecated; pass {new!r}", FutureWarning, stacklevel=3)
    return old_value


def deprecated_alias(function: Callable, old: str) -> Callable:
    """``function`` (a function or a method) under its former name ``old``, with a `FutureWarning` on each call."""

    def alias(*args, **kwargs):
        warnings.warn(f"{old} is deprecated; use {function.__name__}", FutureWarning, stacklevel=2)
        return function(*args, **kwargs)

    alias.__name__, alias.__qualname__ = old, function.__qualname__.replace(function.__name__, old)
    alias.__doc__ = f"Deprecated: the former name of `{function.__name__}`."
    return alias


__all__ = ["AdapterState", "AttachedProjector", "AdapterStateMixin", "adapter_state", "renamed_argument", "deprecated_alias"]
