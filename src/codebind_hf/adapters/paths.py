"""Modality paths as small artifacts beside a base model, like PEFT adapters.

A path (named by its target modality) is a folder (local or a Hub repo) of three files:

- ``path_config.json``: modality, bridges, the path's training settings, the base model's id, Hub revision and
  fingerprint, dims, quantizer settings, LoRA settings, every tensor's shape, the sha256 of the weights file and
  the library version;
- ``path.safetensors``: the path's shared and specific codebooks (buffers), its specific heads, the target's shared
  head and logit scale, and the target tower's LoRA weights (the whole target tower for ``mode="fulltune"``);
- ``README.md``: a generated model card (`codebind_hf.adapters.model_cards`).

The decoder is never part of a path. Loading checks, before touching the model, the tower, dims, quantizer
settings, the weights' checksum and the base model's fingerprint, then every tensor name and shape; a refused
load names both sides and leaves the model as it was. Writes go to a temporary folder renamed into place, uploads
are made from a temporary folder, and the Hub token is scrubbed from any error raised on the way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from torch import nn

from .io import ArtifactFormat, push_folder, resolve_hub_revision
from ..configuration_codebind import PathConfig, normalize_path_config
from ..modules.heads import ProjectionHead
from ..modalities import canonical_modality
from ..quantization.quantizer import MultiCodebookQuantizer

logger = logging.getLogger(__name__)

PATH_CONFIG = "path_config.json"
PATH_WEIGHTS = "path.safetensors"
PATH_CARD = "README.md"
PATH_FORMAT = "codebind-path"
PATH_FORMAT_VERSION = 1
PATH_ARTIFACT = ArtifactFormat(
    "path", PATH_CONFIG, PATH_WEIGHTS, PATH_FORMAT, PATH_FORMAT_VERSION,
    required_keys=("modality", "path", "base_model", "dims", "quantizer"), extra_files=(PATH_CARD,),
)
_SAMPLE = 64  # values sampled per tensor for the fingerprint


# ---------------------------------------------------------------------------- base model identity
def base_model_fingerprint(model: nn.Module, target: str, path: dict | None = None) -> str:
    """sha256 over the names, shapes and a deterministic sample of values of the frozen weights a path depends on.

    Those are the bridges' towers and shared heads, and the target tower unless the path fine-tunes it fully
    (LoRA wrappers are seen through: ``...q_proj.base_layer.weight`` counts as ``...q_proj.weight``). Values are
    compared at bfloat16 precision, so a base model cast to half precision keeps its fingerprint.

    Args:
        model ([`CodeBindModel`]): the base model.
        target (`str`): the path's target modality.
        path (`dict`, *optional*): the path's settings (``bridges``, ``mode``); defaults to ``model.config.paths[target]``.

    Returns:
        `str`: 64 hex digits.
    """
    target = canonical_modality(target)
    path = path if path is not None else model.config.paths.get(target, {})
    bridges = list(path.get("bridges", model.config.bridges))
    towers = bridges + ([target] if path.get("mode", "lora") != "fulltune" else [])
    prefixes = tuple(f"towers.{m}." for m in towers) + tuple(f"shared_heads.{m}." for m in bridges)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(prefixes) or "lora_" in name:
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE)][:_SAMPLE].to(torch.bfloat16).float().cpu()
        digest.update(f"{name.replace('.base_layer.', '.')}{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def base_model_record(model: nn.Module, fingerprint: str) -> dict:
    """The ``base_model`` entry of an artifact's config: the model's id, Hub revision and the given fingerprint."""
    return {
        "name_or_path": str(getattr(model.config, "_name_or_path", "") or ""),
        "revision": getattr(model, "hub_revision", None),
        "fingerprint": fingerprint,
    }


def check_base_model(model: nn.Module, recorded: dict, fingerprint: str, artifact: str, consequence: str) -> None:
    """Refuse, naming both sides, an artifact whose recorded ``base_model`` (see `base_model_record`) has another
    fingerprint than ``fingerprint``, this model's; ``artifact`` names it ("the path") and ``consequence`` says
    what would go wrong."""
    expected = recorded["fingerprint"]
    if fingerprint != expected:
        raise ValueError(
            f"Base model mismatch: {artifact} was trained on {recorded.get('name_or_path')!r}"
            f"{' @ ' + recorded['revision'] if recorded.get('revision') else ''} (fingerprint {expected[:12]}…), "
            f"this model is {getattr(model.config, '_name_or_path', '')!r} (fingerprint {fingerprint[:12]}…); "
            f"{consequence}"
        )


def _path_prefixes(target: str, mode: str) -> tuple[str, ...]:
    prefixes = (f"quantizers.{target}.", f"specific_heads.{target}.", f"shared_heads.{target}.", f"logit_scales.{target}.")
    return prefixes + ((f"towers.{target}.",) if mode == "fulltune" else ())


def _differences(theirs: dict, ours: dict) -> str:
    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k}: the path has {theirs.get(k)!r}, this base model has {ours.get(k)!r}" for k in keys)


# ---------------------------------------------------------------------------- files
def read_path_artifact(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a path folder on its own: format, checksum, readable safetensors, shapes as recorded.

    Returns:
        `tuple[dict, dict[str, torch.Tensor]]`: the ``path_config.json`` contents and the tensors.
    """
    return PATH_ARTIFACT.read(directory)


# ---------------------------------------------------------------------------- the mixin
class ModalityPathMixin:
    """Modality paths for [`CodeBindModel`]: ``add_path``, ``save_path``, ``load_path``, ``push_path_to_hub``,
    ``list_paths``, ``remove_path``, and ``push_to_hub`` of the full model with a generated card.

    Example:

    ```python
    >>> import tempfile, torch
    >>> from codebind_hf import CodeBindConfig, CodeBindModel
    >>> vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    ...        "intermediate_size": 64, "image_size": 16, "patch_size": 8}
    >>> config = CodeBindConfig(modalities={"vision": {"family": "hf", "backbone": vit},
    ...                                     "depth": {"family": "hf", "backbone": {**vit, "num_channels": 1}}},
    ...                         bridges=["vision"], embed_dim=32, specific_dim=32, decoder={"enabled": False})
    >>> model = CodeBindModel(config).eval()
    >>> model.add_path("depth", {"bridges": ["vision"]})
    >>> folder = model.save_path("depth", tempfile.mkdtemp() + "/depth-path")
    >>> sorted(p.name for p in folder.iterdir())
    ['README.md', 'path.safetensors', 'path_config.json']
    >>> model.remove_path("depth"); model.list_paths()
    []
    >>> model.load_path(folder), model.list_paths()
    ('depth', ['depth'])

    ```
    """

    # ------------------------------------------------------------------ loading the base model
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, which also records the commit of a Hub checkpoint in ``hub_revision``
        (``None`` for a local folder), so path artifacts can name the exact base they were trained on."""
        revision = resolve_hub_revision(
            pretrained_model_name_or_path, kwargs.get("revision"), token=kwargs.get("token"),
            cache_dir=kwargs.get("cache_dir"), local_files_only=bool(kwargs.get("local_files_only")),
        )
        if revision is not None:
            kwargs["revision"] = revision  # pin every file of this load to that commit
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.hub_revision = getattr(revision, "resolved", None)
        return loaded

    # ------------------------------------------------------------------ building, listing, removing
    def list_paths(self) -> list[str]:
        """Target modalities of the paths present (their codebooks and specific heads exist), sorted."""
        return sorted(self.quantizers)

    def add_path(self, target: str, path_config: PathConfig | dict | None = None) -> None:
        """Create the modules of a new path (codebooks and specific heads, freshly initialised) and register its
        settings in ``config.paths``. The towers and shared heads are the base model's; add LoRA with
        `codebind_hf.adapters.lora.add_lora`.

        Args:
            target (`str`): the target modality; the base model needs a tower for it.
            path_config ([`PathConfig`] or `dict`, *optional*): bridges, temperature, loss weights, mode, LoRA settings.
        """
        target = canonical_modality(target)
        if target not in self.towers:
            raise ValueError(
                f"The base model has no {target} tower, so it cannot take a {target} path; it has {sorted(self.towers)}"
            )
        if target in self.quantizers:
            raise ValueError(f"A path for {target!r} is already loaded; remove_path({target!r}) first")
        settings = normalize_path_config(target, path_config)
        paths = dict(self.config.paths)
        previous = dict(paths)
        paths[target] = settings
        self.config.paths = paths
        try:
            self.config.validate_architecture()
        except Exception:
            self.config.paths = previous
            raise
        quantizer = self.config.quantizer_config
        with_specific = [m for m in self.config.path_modalities(target) if self.config.has_specific(m)]
        books = MultiCodebookQuantizer(
            with_specific, quantizer.shared_codebook_size, quantizer.specific_codebook_size, **quantizer.quantizer_kwargs()
        )
        heads = nn.ModuleDict({m: ProjectionHead(self.towers[m].hidden_size, self.config.specific_dim) for m in with_specific})
        reference = next(self.shared_heads[target].parameters())
        for module in (books, heads):
            module.apply(self._init_weights)  # same initialisation as modules built in __init__
            module.to(device=reference.device, dtype=reference.dtype)
        self.quantizers[target] = books
        self.specific_heads[target] = heads

    def remove_path(self, target: str) -> None:
        """Drop a path: its codebooks, specific heads and config entry; take its LoRA adapters off the target tower
        and, for a path loaded with `load_path`, put back the base weights it replaced (the target's shared head
        and logit scale; the whole tower for ``fulltune``)."""
        target = canonical_modality(target)
        if target not in self.quantizers:
            raise KeyError(f"No path {target!r} loaded; loaded paths: {self.list_paths()}")
        del self.quantizers[target]
        del self.specific_heads[target]
        paths = dict(self.config.paths)
        paths.pop(target, None)
        self.config.paths = paths
        if target in getattr(self, "lora_settings", {}):
            from peft.tuners.lora import LoraLayer

            tower = self.towers[target]
            for name, module in list(tower.named_modules()):
                if isinstance(module, LoraLayer):
                    parent_name, _, child = name.rpartition(".")
                    setattr(tower.get_submodule(parent_name) if parent_name else tower, child, module.get_base_layer())
            self.lora_settings.pop(target)
            if hasattr(tower, "peft_config"):  # left by peft's injection; a later add_lora would warn about it
                del tower.peft_config
        backup = getattr(self, "_path_backups", {}).pop(target, None)
        if backup is not None:
            self.load_state_dict(backup, strict=False)

    # ------------------------------------------------------------------ saving
    def path_state_dict(self, target: str) -> dict[str, torch.Tensor]:
        """The tensors of a path artifact, keyed by their names in this model (contiguous CPU copies)."""
        target = canonical_modality(target)
        if target not in self.quantizers:
            raise KeyError(f"No path {target!r} loaded; loaded paths: {self.list_paths()}")
        prefixes = _path_prefixes(target, self.config.paths[target].get("mode", "lora"))
        lora_prefix = f"towers.{target}."
        return {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if k.startswith(prefixes) or (k.startswith(lora_prefix) and "lora_" in k)
        }

    def path_config_dict(self, target: str, state: dict[str, torch.Tensor] | None = None) -> dict:
        """The ``path_config.json`` contents of a path (without ``weights_sha256``, known once the file is written)."""
        from .. import __version__

        target = canonical_modality(target)
        state = self.path_state_dict(target) if state is None else state
        lora = getattr(self, "lora_settings", {}).get(target)
        if lora is None and any("lora_" in k for k in state):
            raise ValueError(
                f"The {target} tower has LoRA weights but no recorded LoRA settings; inject LoRA with codebind_hf.adapters.lora.add_lora"
            )
        return {
            "format": PATH_FORMAT,
            "version": PATH_FORMAT_VERSION,
            "library_version": __version__,
            "modality": target,
            "path": self.config.paths[target],
            "base_model": base_model_record(self, base_model_fingerprint(self, target)),
            "dims": self._path_dims(target),
            "quantizer": self.config.quantizer,
            "lora": lora,
            "shapes": {k: list(v.shape) for k, v in state.items()},
        }

    def _path_dims(self, target: str) -> dict[str, int]:
        return {"embed_dim": self.config.embed_dim, "specific_dim": self.config.specific_dim,
                "tower_hidden_size": self.towers[target].hidden_size}

    def save_path(
        self,
        target: str,
        save_directory: str | os.PathLike,
        *,
        card: bool = True,
        repo_id: str | None = None,
        training_data: str | list[str] | None = None,
        results: dict | str | os.PathLike | None = None,
        license: str | None = None,
    ) -> Path:
        """Write the path artifact of ``target`` to ``save_directory`` (a temporary folder, then a rename).

        Args:
            target (`str`): the path's target modality.
            save_directory (`str` or `os.PathLike`): a new folder, or one holding only a previous path artifact.
            card (`bool`, *optional*, defaults to `True`): also write the generated ``README.md`` card.
            repo_id, training_data, results, license: card details, see `codebind_hf.adapters.model_cards.render_path_card`.

        Returns:
            `Path`: ``save_directory``.
        """
        from .model_cards import render_path_card

        target = canonical_modality(target)
        state = self.path_state_dict(target)
        config = self.path_config_dict(target, state)

        def write_card(staging: Path) -> None:
            text = render_path_card(config, repo_id=repo_id, training_data=training_data, results=results, license=license)
            (staging / PATH_CARD).write_text(text)

        return PATH_ARTIFACT.save(save_directory, state, config, write_card if card else None)

    def push_path_to_hub(
        self,
        target: str,
        repo_id: str,
        *,
        private: bool | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        training_data: str | list[str] | None = None,
        results: dict | str | os.PathLike | None = None,
        license: str | None = None,
    ):
        """Upload the path artifact of ``target`` (with its card) to ``repo_id`` as one commit; create the repo if needed.

        Unchanged files are not re-uploaded and an unchanged artifact makes no commit. Returns the
        `huggingface_hub.CommitInfo`. Errors never carry the token.
        """
        target = canonical_modality(target)

        def write(tmp: Path) -> Path:
            return self.save_path(target, tmp / "path", repo_id=repo_id, training_data=training_data, results=results,
                                  license=license)

        return push_folder(write, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
                           commit_message=commit_message or f"Upload CodeBind {target} path",
                           commit_description=commit_description)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
        results: dict | str | os.PathLike | None = None,
        training_data: str | list[str] | None = None,
        license: str | None = None,
        include_decoder: bool = False,
    ):
        """Upload the full model (``save_pretrained`` output; the training-only decoder only with
        ``include_decoder``) and a generated ``README.md`` card, as one commit.

        Takes the arguments of `transformers.PreTrainedModel.push_to_hub`, plus card details: ``results`` (the
        benchmark runner's JSON, a path or dict, shown as a table and as ``model-index``), ``training_data`` (text,
        or a list of Hub dataset ids) and ``license`` (default CC BY-NC-SA 4.0, for ImageBind-derived weights).
        Returns the `huggingface_hub.CommitInfo`. Errors never carry the token.
        """
        from .model_cards import render_base_card

        def write(tmp: Path) -> Path:
            card = render_base_card(self.config, repo_id=repo_id, results=results, training_data=training_data,
                                    license=license, tags=tags, revision=getattr(self, "hub_revision", None))
            self.save_pretrained(tmp, include_decoder=include_decoder, max_shard_size=max_shard_size)
            (tmp / PATH_CARD).write_text(card)
            return tmp

        return push_folder(write, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
                           commit_message=commit_message or "Upload CodeBind model", commit_description=commit_description)

    # ------------------------------------------------------------------ loading a path
    def load_path(
        self,
        repo_id_or_dir: str | os.PathLike,
        revision: str | None = None,
        *,
        token: str | bool | None = None,
        replace: bool = False,
    ) -> str:
        """Load a path artifact (a local folder or a Hub repo id) into this base model.

        Refuses, naming both sides: a modality without a tower here, missing bridges, different dims or quantizer
        settings, a different base model (fingerprint of the frozen weights the path depends on), a corrupted or
        truncated ``path.safetensors`` (checksum), and any missing, extra or mis-shaped tensor. A refused load
        leaves the model as it was.

        Args:
            repo_id_or_dir (`str` or `os.PathLike`): a folder written by `save_path`, or a Hub repo id.
            revision (`str`, *optional*): branch, tag or commit of the Hub repo.
            token (`str` or `bool`, *optional*): Hub token, for private repos.
            replace (`bool`, *optional*, defaults to `False`): replace a path already loaded for the same target.

        Returns:
            `str`: the path's target modality.
        """
        directory = PATH_ARTIFACT.local_dir(repo_id_or_dir, revision=revision, token=token)
        config, state = read_path_artifact(directory)
        target = canonical_modality(config["modality"])
        if target in self.quantizers and not replace:
            raise ValueError(f"A path for {target!r} is already loaded; remove_path({target!r}) first or pass replace=True")
        snapshot = self._snapshot_path(target) if target in self.quantizers else None
        if snapshot is not None:
            self.remove_path(target)  # checks below then see the bare base model
        try:
            self._check_path_fits(config, target)
            self._install_path(target, config["path"], config.get("lora"), state)
        except Exception:
            if target in self.quantizers:
                self.remove_path(target)
            if snapshot is not None:
                self._install_path(target, *snapshot)
            raise
        logger.info("Loaded the %s path from %s", target, repo_id_or_dir)
        return target

    def _check_path_fits(self, config: dict, target: str) -> None:
        """Everything that can be checked without touching the model."""
        if target not in self.towers:
            raise ValueError(
                f"The path is for modality {target!r}, but this base model has no {target} tower (it has {sorted(self.towers)})"
            )
        missing = [b for b in config["path"].get("bridges", []) if b not in self.towers]
        if missing:
            raise ValueError(
                f"The path's bridges {config['path']['bridges']} need towers {missing} that this base model lacks "
                f"(it has {sorted(self.towers)})"
            )
        ours = self._path_dims(target)
        if config["dims"] != ours:
            raise ValueError(f"Dimension mismatch: {_differences(config['dims'], ours)}")
        if config["quantizer"] != self.config.quantizer:
            raise ValueError(f"Quantizer settings differ: {_differences(config['quantizer'], self.config.quantizer)}")
        check_base_model(self, config["base_model"], base_model_fingerprint(self, target, config["path"]), "the path",
                         "its frozen towers/heads differ, so the path's codebooks and heads would not fit")
        if any("lora_" in k for k in config["shapes"]) and not config.get("lora"):
            raise ValueError(f"{PATH_CONFIG} has LoRA tensors but no 'lora' settings (rank, alpha, blocks)")

    def _snapshot_path(self, target: str) -> tuple[dict, dict | None, dict[str, torch.Tensor]]:
        """What `_install_path` needs to put a loaded path back after a failed replacement."""
        lora = getattr(self, "lora_settings", {}).get(target)
        state = {k: v.clone() for k, v in self.path_state_dict(target).items()}
        return dict(self.config.paths[target]), (dict(lora) if lora else None), state

    def _install_path(self, target: str, settings: dict, lora: dict | None, state: dict[str, torch.Tensor]) -> None:
        self.add_path(target, settings)
        if lora:
            from .lora import add_lora

            add_lora(self, target, r=lora["r"], lora_alpha=lora["lora_alpha"], last_n_blocks=lora["last_n_blocks"],
                     dropout=lora.get("dropout", 0.0))
        expected = self.path_state_dict(target)
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{PATH_WEIGHTS} does not match the path's modules here: missing {missing[:10]}, unexpected {extra[:10]}"
            )
        wrong = [f"{k}: path {tuple(v.shape)} vs model {tuple(expected[k].shape)}" for k, v in state.items()
                 if tuple(v.shape) != tuple(expected[k].shape)]
        if wrong:
            raise ValueError(f"Shape mismatches between the path and this base model: {wrong[:10]}")
        # The path overwrites base weights (the target's shared head and logit scale, the tower for fulltune):
        # keep them so that remove_path gives the base model back.
        own = (f"quantizers.{target}.", f"specific_heads.{target}.")
        if not hasattr(self, "_path_backups"):
            self._path_backups = {}
        self._path_backups[target] = {
            k: v.detach().clone() for k, v in expected.items() if not k.startswith(own) and "lora_" not in k
        }
        self.load_state_dict(state, strict=False)


__all__ = [
    "ModalityPathMixin",
    "base_model_fingerprint",
    "base_model_record",
    "check_base_model",
    "read_path_artifact",
    "PATH_CONFIG",
    "PATH_WEIGHTS",
    "PATH_CARD",
    "PATH_FORMAT_VERSION",
    "PATH_ARTIFACT",
]
