"""Bonds on a [`CodeBindModel`]: attached without touching its weights, applied by ``get_features``, and saved,
loaded and pushed as small artifacts beside the base model, like modality paths (`codebind_hf.adapters.paths`).

``add_bond(model, bond)`` registers a bond in the model's registry (``model.bonds``), and ``model.get_features(modality, inputs,
bonds={"name": f})`` returns the bonded embedding (`apply_bonds`). A bond artifact is a folder (local or a Hub
repo) of two files:

- ``bond_config.json``: the `SpaceBondConfig`, the base model's id, Hub revision and fingerprint (the frozen tower
  and shared head of the bond's modality, which produce its unified embeddings), the unified and expert widths,
  every tensor's shape, the sha256 of the weights file and the library version;
- ``bond.safetensors``: the projector weights.

Loading checks the format, the checksum and the shapes, then that the model has the modality's tower, the same
unified width and the same fingerprint, and refuses a mismatch naming both sides. Writes go to a temporary folder
renamed into place (`codebind_hf.adapters.io`). The verbs are those of every small artifact: ``save_bond``,
``load_bond``, ``push_bond``, ``remove_bond``, ``list_bonds``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..modalities import canonical_modality
from ..version import __version__
from .bonds import SpaceBond, SpaceBondConfig
from .io import ArtifactFormat, push_folder
from .paths import base_model_fingerprint, base_model_record, base_model_weights, check_base_model
from .state import adapter_state, renamed_argument

logger = logging.getLogger(__name__)

BOND_CONFIG = "bond_config.json"
BOND_WEIGHTS = "bond.safetensors"
BOND_FORMAT = "codebind-bond"
BOND_FORMAT_VERSION = 1
BOND_ARTIFACT = ArtifactFormat(
    "bond", BOND_CONFIG, BOND_WEIGHTS, BOND_FORMAT, BOND_FORMAT_VERSION, required_keys=("bond", "base_model", "dims")
)


# ---------------------------------------------------------------------------- attaching bonds to a model
def _unified_width(model, modality: str, part: str) -> int:
    config = model.config
    if part != "shared" and not config.has_specific(modality):
        raise ValueError(f"Modality {modality!r} has no specific part, so a {part!r} bond cannot apply to it")
    return {"shared": config.embed_dim, "specific": config.specific_width(modality),
            "concat": config.embed_dim + config.specific_width(modality)}[part]


def check_bond_fits(model, config: SpaceBondConfig) -> None:
    """Refuse, naming both sides, a bond whose modality has no tower in ``model`` or whose unified width differs
    from the model's embeddings of that modality and part."""
    if config.modality not in model.towers:
        raise ValueError(
            f"Bond {config.name!r} is for modality {config.modality!r}, but this model has no {config.modality} tower "
            f"(it has {sorted(model.towers)})"
        )
    width = _unified_width(model, config.modality, config.part)
    if config.unified_dim != width:
        raise ValueError(
            f"Dimension mismatch: bond {config.name!r} takes {config.part} {config.modality} embeddings of width "
            f"{config.unified_dim}, this model's are {width} wide"
        )


def add_bond(model, bond: SpaceBond, replace: bool = False) -> None:
    """Register ``bond`` in ``model.bonds`` (the model's `AdapterState`) under ``bond.name``.

    The registry is outside the module tree: the model's ``state_dict``, ``save_pretrained`` and
    strict ``from_pretrained`` are unchanged, and ``model.to(...)`` does not move bonds (a bond computes on its
    own device and hands results back on the embeddings'). Save bonds with `save_bond`.
    """
    if not isinstance(bond, SpaceBond):
        raise TypeError(f"expected a SpaceBond, got {type(bond).__name__}")
    check_bond_fits(model, bond.config)
    registry = adapter_state(model).bonds
    if bond.name in registry and not replace:
        raise ValueError(f"A bond named {bond.name!r} is already attached; remove_bond first or pass replace=True")
    registry[bond.name] = bond


def remove_bond(model, name: str) -> SpaceBond:
    """Detach and return the bond ``name``."""
    registry = adapter_state(model).bonds
    if name not in registry:
        raise KeyError(f"No bond {name!r} attached; attached bonds: {sorted(registry)}")
    return registry.pop(name)


def list_bonds(model) -> list[str]:
    """Names of the attached bonds, sorted."""
    return sorted(adapter_state(model).bonds)


def apply_bonds(
    model,
    modality: str,
    embeddings: torch.Tensor,
    bonds: Mapping[str, float],
    expert_features: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    inputs=None,
    part: str = "shared",
) -> torch.Tensor:
    """The bonded embeddings: each named bond of ``model.bonds`` applied in order with its factor.

    This is what ``model.get_features(modality, inputs, bonds={name: f}, expert_features=...)`` calls. A
    combination bond with ``f > 0`` takes its expert embeddings from ``expert_features`` (a tensor when it is the
    only such bond, else a dict by bond name) or from its registered expert encoder called on ``inputs``.
    """
    if not isinstance(bonds, Mapping):
        raise TypeError(f"bonds must be a dict of bond name -> factor, got {type(bonds).__name__}")
    registry = adapter_state(model).bonds
    modality = canonical_modality(modality)
    active = [n for n, f in bonds.items() if n in registry and registry[n].kind == "combination" and float(f) > 0]
    if isinstance(expert_features, torch.Tensor) and len(active) > 1:
        raise ValueError(
            f"expert_features is one tensor but {len(active)} combination bonds are active ({active}); "
            "pass a dict of bond name -> expert embeddings"
        )
    out = embeddings
    for name, factor in bonds.items():
        if name not in registry:
            raise KeyError(f"No bond {name!r} attached; attached bonds: {sorted(registry)} (add_bond / load_bond)")
        bond = registry[name]
        if (bond.config.modality, bond.config.part) != (modality, part):
            raise ValueError(
                f"Bond {name!r} applies to {bond.config.part} {bond.config.modality} embeddings, not {part} {modality}"
            )
        expert = None
        if name in active:
            expert = _expert_embeddings(bond, expert_features, inputs)
        out = bond(out, expert, factor)
    return out


def _expert_embeddings(bond: SpaceBond, expert_features, inputs) -> torch.Tensor:
    if isinstance(expert_features, torch.Tensor):
        return expert_features
    if isinstance(expert_features, Mapping) and bond.name in expert_features:
        return expert_features[bond.name]
    if bond.expert_encoder is not None:
        return bond.expert_encoder(inputs)
    raise ValueError(
        f"Combination bond {bond.name!r} needs the expert embeddings of the same inputs: pass expert_features= "
        "(a tensor, or a dict by bond name) or register an encoder with bond.set_expert_encoder(fn)"
    )


# ---------------------------------------------------------------------------- artifacts
def bond_base_fingerprint(model, modality: str) -> str:
    """Fingerprint of what a bond on ``modality`` depends on: that modality's tower and shared head (see
    `codebind_hf.adapters.paths.base_model_fingerprint`; LoRA weights are not part of it)."""
    return base_model_fingerprint(model, modality, _bond_path(modality))


def _bond_path(modality: str) -> dict:
    # As a fully fine-tuned "path" bridged by itself, the fingerprint covers exactly towers.<m> and shared_heads.<m>.
    return {"bridges": [modality], "mode": "fulltune"}


def _resolve(model_or_bond, name: str | None) -> tuple[SpaceBond, object | None]:
    if isinstance(model_or_bond, SpaceBond):
        if name is not None and name != model_or_bond.name:
            raise ValueError(f"The bond is named {model_or_bond.name!r}, not {name!r}")
        return model_or_bond, None
    registry = adapter_state(model_or_bond).bonds
    if name not in registry:
        raise KeyError(f"No bond {name!r} attached; attached bonds: {sorted(registry)}")
    return registry[name], model_or_bond


def bond_config_dict(bond: SpaceBond, model=None, state: dict[str, torch.Tensor] | None = None) -> dict:
    """The ``bond_config.json`` contents (without ``weights_sha256``); ``base_model`` is None without a model."""
    state = bond.state_dict() if state is None else state
    base = None
    if model is not None:
        check_bond_fits(model, bond.config)
        base = base_model_record(model, bond_base_fingerprint(model, bond.config.modality))
    return {
        "format": BOND_FORMAT,
        "version": BOND_FORMAT_VERSION,
        "library_version": __version__,
        "bond": bond.config.to_dict(),
        "base_model": base,
        "dims": {"unified_dim": bond.config.unified_dim, "expert_dim": bond.config.expert_dim},
        "shapes": {k: list(v.shape) for k, v in state.items()},
    }


def save_bond(model_or_bond, name: str | None, bond_dir: str | os.PathLike | None = None, *,
              save_directory: str | os.PathLike | None = None) -> Path:
    """Write a bond artifact to ``bond_dir`` (``save_directory`` is its former name): the bond ``name`` attached to
    a model (recording the model's fingerprint), or a bare [`SpaceBond`] (no base model recorded; ``name`` may be
    None).

    Example:

    ```python
    >>> import tempfile
    >>> from codebind_hf.adapters.bonds import SpaceBond, SpaceBondConfig
    >>> from codebind_hf.adapters.bond_io import read_bond, save_bond
    >>> bond = SpaceBond(SpaceBondConfig("clap", "combination", "audio", in_dim=12, out_dim=8))
    >>> folder = save_bond(bond, None, tempfile.mkdtemp() + "/clap-bond")
    >>> sorted(p.name for p in folder.iterdir()), read_bond(folder).config == bond.config
    (['bond.safetensors', 'bond_config.json'], True)

    ```

    Returns:
        `Path`: ``bond_dir``.
    """
    bond_dir = renamed_argument(bond_dir, save_directory, "bond_dir", "save_directory")
    bond, model = _resolve(model_or_bond, name)
    state = {k: v.detach().contiguous().cpu() for k, v in bond.state_dict().items()}
    return BOND_ARTIFACT.save(bond_dir, state, bond_config_dict(bond, model, state))


def push_bond(
    model_or_bond,
    name: str | None,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
):
    """Upload a bond artifact (see `save_bond`) to ``repo_id`` as one commit, creating the repo if needed.

    Returns the `huggingface_hub.CommitInfo`. Errors never carry the token.
    """
    bond, _ = _resolve(model_or_bond, name)
    return push_folder(lambda tmp: save_bond(model_or_bond, name, tmp / "bond"), repo_id, private=private, token=token,
                       revision=revision, create_pr=create_pr,
                       commit_message=commit_message or f"Upload CodeBind bond {bond.name}",
                       commit_description=commit_description)


def read_bond_artifact(repo_id_or_dir: str | os.PathLike, revision: str | None = None, *,
                       token: str | bool | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a bond folder (or Hub repo) on its own: format, checksum, readable safetensors, recorded shapes.

    Returns:
        `tuple[dict, dict[str, torch.Tensor]]`: the ``bond_config.json`` contents and the tensors.
    """
    return BOND_ARTIFACT.read(BOND_ARTIFACT.local_dir(repo_id_or_dir, revision=revision, token=token))


def _build(config: dict, state: dict[str, torch.Tensor]) -> SpaceBond:
    bond = SpaceBond(SpaceBondConfig.from_dict(config["bond"]))
    dims = {"unified_dim": bond.config.unified_dim, "expert_dim": bond.config.expert_dim}
    if config["dims"] != dims:
        raise ValueError(f"{BOND_CONFIG} records dims {config['dims']}, but its settings give {dims}")
    try:
        bond.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{BOND_WEIGHTS} does not fit the bond's settings: {err}") from None
    return bond.eval()


def read_bond(repo_id_or_dir: str | os.PathLike, revision: str | None = None, *,
              token: str | bool | None = None) -> SpaceBond:
    """A [`SpaceBond`] from an artifact, without a model (no base-model check): for use on cached embeddings."""
    return _build(*read_bond_artifact(repo_id_or_dir, revision, token=token))


def load_bond(
    model,
    repo_id_or_dir: str | os.PathLike,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    replace: bool = False,
    expert_encoder=None,
) -> str:
    """Load a bond artifact (a local folder or a Hub repo id) and attach it to ``model``.

    Refuses, naming both sides, a modality without a tower here, a different unified width, and a different base
    model (fingerprint of the modality's tower and shared head); a bond saved without a base model loads with a
    warning. The model is untouched by a refused load.

    Returns:
        `str`: the bond's name.
    """
    config, state = read_bond_artifact(repo_id_or_dir, revision, token=token)
    bond = _build(config, state)
    check_bond_fits(model, bond.config)
    base = config["base_model"]
    if base is None:
        logger.warning("Bond %r records no base model; its fit to this model is not checked", bond.name)
    else:
        weights = base_model_weights(model, bond.config.modality, _bond_path(bond.config.modality))
        check_base_model(model, base, weights, f"bond {bond.name!r}",
                         f"its {bond.config.modality} tower/shared head differ, so the bond's projector would not fit")
    bond.set_expert_encoder(expert_encoder)
    add_bond(model, bond, replace=replace)
    logger.info("Loaded bond %s from %s", bond.name, repo_id_or_dir)
    return bond.name


__all__ = [
    "add_bond",
    "remove_bond",
    "list_bonds",
    "apply_bonds",
    "check_bond_fits",
    "save_bond",
    "load_bond",
    "push_bond",
    "read_bond",
    "read_bond_artifact",
    "bond_base_fingerprint",
    "bond_config_dict",
    "BOND_CONFIG",
    "BOND_WEIGHTS",
    "BOND_FORMAT_VERSION",
    "BOND_ARTIFACT",
]
