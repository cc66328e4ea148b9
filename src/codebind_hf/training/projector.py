"""Projector-only binding (``path.mode: projector``): a 2-layer MLP per target modality on frozen tower features,
and its small artifact.

EBind binds frozen encoders with MLP projectors trained on cached embeddings; here the projector takes the place of
the target's shared head, so that ``model.get_features(target, x, quantize=False)`` returns the bound embedding and
every bridge keeps its frozen embedding (``quantize=False`` too: a projector has no codebooks). It is also the
hard-alignment baseline for CodeBind paths.

The artifact is a folder (``<output_dir>/projector`` of a run) with two files:

- ``projector_config.json``: format and version, the target modality, bridges, temperature, the MLP's widths,
  the base model's id, revision and fingerprint (the frozen weights the projector depends on: the bridges' towers
  and shared heads and the target tower), every tensor's shape and the sha256 of the weights file;
- ``projector.safetensors``: the MLP's tensors (keys relative to the head: ``norm.weight``, ``fc1.weight``, ...).

Example:

```python
>>> import copy, tempfile, torch
>>> from codebind_hf import CodeBindConfig, CodeBindModel
>>> from codebind_hf.training.projector import attach_projector, load_projector, save_projector
>>> vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
...        "intermediate_size": 64, "image_size": 16, "patch_size": 8}
>>> config = CodeBindConfig(modalities={"vision": {"family": "hf", "backbone": vit},
...                                     "depth": {"family": "hf", "backbone": {**vit, "num_channels": 1}}},
...                         bridges=["vision"], embed_dim=32, specific_dim=32, decoder={"enabled": False})
>>> model = CodeBindModel(config).eval()
>>> base = copy.deepcopy(model)
>>> _ = attach_projector(model, "depth", hidden_dim=48)
>>> folder = save_projector(model, "depth", tempfile.mkdtemp() + "/projector", bridges=["vision"], temperature=0.07)
>>> load_projector(base, folder)
'depth'
>>> x = torch.randn(2, 1, 16, 16)
>>> torch.equal(base.get_features("depth", x, quantize=False), model.get_features("depth", x, quantize=False))
True

```
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..adapters.io import ArtifactFormat
from ..modalities import canonical_modality
from ..adapters.paths import base_model_fingerprint, base_model_record, check_base_model

PROJECTOR_CONFIG = "projector_config.json"
PROJECTOR_WEIGHTS = "projector.safetensors"
PROJECTOR_FORMAT = "codebind-projector"
PROJECTOR_FORMAT_VERSION = 1
PROJECTOR_ARTIFACT = ArtifactFormat(
    "projector", PROJECTOR_CONFIG, PROJECTOR_WEIGHTS, PROJECTOR_FORMAT, PROJECTOR_FORMAT_VERSION,
    required_keys=("modality", "bridges", "dims", "base_model"),
)


class ProjectorHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, applied per token (a drop-in for `ProjectionHead`).

    Args:
        in_dim (`int`): tower width; out_dim (`int`): embedding width; hidden_dim (`int`): width of the hidden layer.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int):
        super().__init__()
        self.in_dim, self.out_dim, self.hidden_dim = in_dim, out_dim, hidden_dim
        self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(hidden_states))))


def attach_projector(model, target: str, hidden_dim: int | None = None) -> ProjectorHead:
    """Replace ``model.shared_heads[target]`` by a fresh `ProjectorHead` (PyTorch's default initialisation, drawn
    from the global RNG) on the model's device and dtype; `remove_projector` puts the original head back.

    Args:
        model ([`CodeBindModel`]): the base model.
        target (`str`): the modality to bind; hidden_dim (`int`, *optional*): defaults to the target tower's width.
    """
    target = canonical_modality(target)
    if target not in model.towers:
        raise ValueError(f"The model has no {target} tower to put a projector on; it has {sorted(model.towers)}")
    in_dim = model.towers[target].hidden_size
    head = ProjectorHead(in_dim, model.config.embed_dim, hidden_dim or in_dim)
    reference = next(model.shared_heads[target].parameters())
    head.to(device=reference.device, dtype=reference.dtype)
    backups = model.__dict__.setdefault("_projector_backups", {})
    if not isinstance(model.shared_heads[target], ProjectorHead):
        backups[target] = model.shared_heads[target]
    model.shared_heads[target] = head
    return head


def remove_projector(model, target: str) -> None:
    """Put back the shared head a projector replaced."""
    target = canonical_modality(target)
    backups = model.__dict__.get("_projector_backups", {})
    if target not in backups:
        raise KeyError(f"No projector attached to {target!r}")
    model.shared_heads[target] = backups.pop(target)


def projector_config_dict(model, target: str, bridges: list[str], temperature: float) -> dict:
    """The ``projector_config.json`` contents (without ``weights_sha256``, known once the file is written)."""
    from .. import __version__

    target = canonical_modality(target)
    head = model.shared_heads[target]
    if not isinstance(head, ProjectorHead):
        raise ValueError(f"The {target} shared head is a {type(head).__name__}, not a projector (attach_projector first)")
    bridges = [canonical_modality(b) for b in bridges]
    return {
        "format": PROJECTOR_FORMAT,
        "version": PROJECTOR_FORMAT_VERSION,
        "library_version": __version__,
        "modality": target,
        "bridges": bridges,
        "temperature": temperature,
        "dims": {"in_dim": head.in_dim, "hidden_dim": head.hidden_dim, "out_dim": head.out_dim},
        "base_model": base_model_record(model, base_model_fingerprint(model, target, {"bridges": bridges, "mode": "lora"})),
        "shapes": {k: list(v.shape) for k, v in head.state_dict().items()},
    }


def save_projector(model, target: str, save_directory: str | os.PathLike, *, bridges: list[str], temperature: float) -> Path:
    """Write the projector artifact of ``target`` (a temporary folder, then a rename); returns the folder."""
    config = projector_config_dict(model, target, bridges, temperature)
    state = {k: v.detach().contiguous().cpu() for k, v in model.shared_heads[config["modality"]].state_dict().items()}
    return PROJECTOR_ARTIFACT.save(save_directory, state, config)


def read_projector_artifact(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a projector folder: format, version, checksum, shapes as recorded."""
    return PROJECTOR_ARTIFACT.read(directory)


def load_projector(model, directory: str | os.PathLike) -> str:
    """Attach the projector saved in ``directory`` to ``model`` (replacing the target's shared head); returns the
    target. Refuses, before touching the model, a missing tower or bridge, other widths, or another base model
    (fingerprint of the frozen towers and bridge heads)."""
    config, state = read_projector_artifact(directory)
    target = config["modality"]
    missing = [m for m in (target, *config["bridges"]) if m not in model.towers]
    if missing:
        raise ValueError(f"The projector needs towers {missing} that this model lacks (it has {sorted(model.towers)})")
    dims = config["dims"]
    ours = {"in_dim": model.towers[target].hidden_size, "out_dim": model.config.embed_dim}
    if {k: dims[k] for k in ours} != ours:
        raise ValueError(f"Dimension mismatch: the projector has {dims}, this model has {ours}")
    fingerprint = base_model_fingerprint(model, target, {"bridges": config["bridges"], "mode": "lora"})
    check_base_model(model, config["base_model"], fingerprint, "the projector",
                     "its frozen towers/heads differ, so the projector would not fit")
    head = attach_projector(model, target, dims["hidden_dim"])
    head.load_state_dict(state, strict=True)
    return target


__all__ = [
    "ProjectorHead",
    "attach_projector",
    "remove_projector",
    "save_projector",
    "load_projector",
    "read_projector_artifact",
    "projector_config_dict",
    "PROJECTOR_CONFIG",
    "PROJECTOR_WEIGHTS",
]
