"""Projector-only binding (``path.mode: projector``): a 2-layer MLP per target modality on frozen tower features,
and its small artifact.

EBind binds frozen encoders with MLP projectors trained on cached embeddings; here the projector takes the place of
the target's shared head, so that ``model.get_features(target, x, quantize=False)`` returns the bound embedding and
every bridge keeps its frozen embedding (``quantize=False`` too: a projector has no codebooks). It is also the
hard-alignment baseline for CodeBind paths. `attach_projector` puts a fresh one in place (the trainer's start);
the artifact has the verbs of every small artifact: `save_projector`, `load_projector`, `push_projector`,
`remove_projector`, `list_projectors`. The model's registry (`codebind_hf.adapters.state.AdapterState.projectors`)
keeps the head each projector replaced.

The artifact is a folder (``<output_dir>/projector`` of a run) with two files:

- ``projector_config.json``: format and version, the target modality, bridges, temperature, the MLP's widths,
  the base model's id, revision and fingerprint (the frozen weights the projector depends on: the bridges' towers
  and shared heads and the target tower), every tensor's shape and the sha256 of the weights file;
- ``projector.safetensors``: the MLP's tensors (keys relative to the head: ``norm.weight``, ``fc1.weight``, ...).

Example:

```python
>>> import copy, tempfile, torch
>>> from codebind_hf import CodeBindConfig, CodeBindModel
>>> from codebind_hf.adapters.projector import attach_projector, list_projectors, load_projector, save_projector
>>> vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
...        "intermediate_size": 64, "image_size": 16, "patch_size": 8}
>>> config = CodeBindConfig(modalities={"vision": {"family": "hf", "backbone": vit},
...                                     "depth": {"family": "hf", "backbone": {**vit, "num_channels": 1}}},
...                         bridges=["vision"], embed_dim=32, specific_dim=32, decoder={"enabled": False})
>>> model = CodeBindModel(config).eval()
>>> base = copy.deepcopy(model)
>>> _ = attach_projector(model, "depth", hidden_dim=48)
>>> folder = save_projector(model, "depth", tempfile.mkdtemp() + "/projector", bridges=["vision"], temperature=0.07)
>>> load_projector(base, folder), list_projectors(base)
('depth', ['depth'])
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

from ..modalities import canonical_modality
from ..version import __version__
from .io import ArtifactFormat, push_folder
from .paths import base_model_fingerprint, base_model_record, base_model_weights, check_base_model
from .state import AttachedProjector, adapter_state, renamed_argument

PROJECTOR_CONFIG = "projector_config.json"
PROJECTOR_WEIGHTS = "projector.safetensors"
PROJECTOR_FORMAT = "codebind-projector"
PROJECTOR_FORMAT_VERSION = 1
PROJECTOR_ARTIFACT = ArtifactFormat(
    "projector", PROJECTOR_CONFIG, PROJECTOR_WEIGHTS, PROJECTOR_FORMAT, PROJECTOR_FORMAT_VERSION,
    required_keys=("modality", "bridges", "dims", "base_model"),
)


class ProjectorHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, applied per token (a drop-in for `ProjectionHead`, the
    LayerNorm + Linear shared head; bonds have their own MLP, `codebind_hf.adapters.bonds.BondProjectionMLP`).

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


# ---------------------------------------------------------------------------- attaching
def _install(model, target: str, head: ProjectorHead, bridges: list[str] | None = None,
             temperature: float | None = None) -> None:
    """Put ``head`` in place of the target's shared head, on the model's device and dtype; the registry keeps the
    head it replaced (the original one, when a projector replaces a projector)."""
    reference = next(model.shared_heads[target].parameters())
    head.to(device=reference.device, dtype=reference.dtype)
    attached = adapter_state(model).projectors
    replaced = attached[target].replaced if target in attached else model.shared_heads[target]
    attached[target] = AttachedProjector(replaced, bridges, temperature)
    model.shared_heads[target] = head


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
    _install(model, target, head)
    return head


def remove_projector(model, target: str) -> None:
    """Put back the shared head a projector replaced."""
    target = canonical_modality(target)
    attached = adapter_state(model).projectors
    if target not in attached:
        raise KeyError(f"No projector attached to {target!r}; attached projectors: {sorted(attached)}")
    model.shared_heads[target] = attached.pop(target).replaced


def list_projectors(model) -> list[str]:
    """Target modalities with a projector attached, sorted."""
    return sorted(adapter_state(model).projectors)


# ---------------------------------------------------------------------------- artifacts
def projector_config_dict(model, target: str, bridges: list[str] | None = None, temperature: float | None = None) -> dict:
    """The ``projector_config.json`` contents (without ``weights_sha256``, known once the file is written).

    ``bridges`` and ``temperature`` default to those of the artifact the projector was last saved to or loaded from.
    """
    target = canonical_modality(target)
    head = model.shared_heads[target]
    if not isinstance(head, ProjectorHead):
        raise ValueError(f"The {target} shared head is a {type(head).__name__}, not a projector (attach_projector first)")
    record = adapter_state(model).projectors.get(target)
    bridges = bridges if bridges is not None else getattr(record, "bridges", None)
    temperature = temperature if temperature is not None else getattr(record, "temperature", None)
    if bridges is None or temperature is None:
        raise ValueError(f"The {target} projector was attached, not loaded: pass the bridges and temperature it was trained with")
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


def save_projector(model, target: str, projector_dir: str | os.PathLike | None = None, *,
                   bridges: list[str] | None = None, temperature: float | None = None,
                   save_directory: str | os.PathLike | None = None) -> Path:
    """Write the projector artifact of ``target`` to ``projector_dir`` (``save_directory`` is its former name), a
    temporary folder then a rename; ``bridges`` and ``temperature`` as in `projector_config_dict`.

    Returns:
        `Path`: ``projector_dir``.
    """
    projector_dir = renamed_argument(projector_dir, save_directory, "projector_dir", "save_directory")
    config = projector_config_dict(model, target, bridges, temperature)
    target = config["modality"]
    state = {k: v.detach().contiguous().cpu() for k, v in model.shared_heads[target].state_dict().items()}
    folder = PROJECTOR_ARTIFACT.save(projector_dir, state, config)
    record = adapter_state(model).projectors.get(target)
    if record is not None:  # a later save or push may then leave the settings out
        record.bridges, record.temperature = config["bridges"], config["temperature"]
    return folder


def push_projector(
    model,
    target: str,
    repo_id: str,
    *,
    bridges: list[str] | None = None,
    temperature: float | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
):
    """Upload the projector artifact of ``target`` (see `save_projector`) to ``repo_id`` as one commit, creating
    the repo if needed. Returns the `huggingface_hub.CommitInfo`. Errors never carry the token."""
    target = canonical_modality(target)

    def write(tmp: Path) -> Path:
        return save_projector(model, target, tmp / "projector", bridges=bridges, temperature=temperature)

    return push_folder(write, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
                       commit_message=commit_message or f"Upload CodeBind {target} projector",
                       commit_description=commit_description)


def read_projector_artifact(repo_id_or_dir: str | os.PathLike | None = None, revision: str | None = None, *,
                            token: str | bool | None = None, directory: str | os.PathLike | None = None,
                            ) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a projector folder (or Hub repo): format, version, checksum, shapes as recorded.
    ``directory`` is the former name of ``repo_id_or_dir``."""
    repo_id_or_dir = renamed_argument(repo_id_or_dir, directory, "repo_id_or_dir", "directory")
    return PROJECTOR_ARTIFACT.read(PROJECTOR_ARTIFACT.local_dir(repo_id_or_dir, revision=revision, token=token))


def load_projector(
    model,
    repo_id_or_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    replace: bool = False,
    directory: str | os.PathLike | None = None,
) -> str:
    """Attach the projector of an artifact (a local folder or a Hub repo id; ``directory`` is the former name of
    ``repo_id_or_dir``) in place of the target's shared head; returns the target.

    Refuses, before touching the model, a missing tower or bridge, other widths, another base model (fingerprint
    of the frozen towers and bridge heads), and a projector already attached to the target unless ``replace``.
    """
    repo_id_or_dir = renamed_argument(repo_id_or_dir, directory, "repo_id_or_dir", "directory")
    config, state = read_projector_artifact(repo_id_or_dir, revision, token=token)
    target = config["modality"]
    if target in adapter_state(model).projectors and not replace:
        raise ValueError(f"A projector for {target!r} is already attached; remove_projector({target!r}) first or pass replace=True")
    missing = [m for m in (target, *config["bridges"]) if m not in model.towers]
    if missing:
        raise ValueError(f"The projector needs towers {missing} that this model lacks (it has {sorted(model.towers)})")
    dims = config["dims"]
    ours = {"in_dim": model.towers[target].hidden_size, "out_dim": model.config.embed_dim}
    if {k: dims[k] for k in ours} != ours:
        raise ValueError(f"Dimension mismatch: the projector has {dims}, this model has {ours}")
    fingerprint = base_model_weights(model, target, {"bridges": config["bridges"], "mode": "lora"})
    check_base_model(model, config["base_model"], fingerprint, "the projector",
                     "its frozen towers/heads differ, so the projector would not fit")
    head = ProjectorHead(dims["in_dim"], dims["out_dim"], dims["hidden_dim"])
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{PROJECTOR_WEIGHTS} does not fit the widths {dims} in {PROJECTOR_CONFIG}: {err}") from None
    _install(model, target, head, config["bridges"], config.get("temperature"))
    return target


__all__ = [
    "ProjectorHead",
    "attach_projector",
    "save_projector",
    "load_projector",
    "push_projector",
    "remove_projector",
    "list_projectors",
    "read_projector_artifact",
    "projector_config_dict",
    "PROJECTOR_CONFIG",
    "PROJECTOR_WEIGHTS",
    "PROJECTOR_FORMAT",
    "PROJECTOR_FORMAT_VERSION",
    "PROJECTOR_ARTIFACT",
]
