"""Modality paths as small artifacts beside a base model, like PEFT adapters.

A path (named by its target modality) is a folder (local or a Hub repo) of three files:

- ``path_config.json``: modality, bridges, the path's training settings, the base model's id, Hub revision and
  fingerprint, dims, quantizer settings, LoRA settings, every tensor's shape, the sha256 of the weights file and
  the library version;
- ``path.safetensors``: the path's shared and specific codebooks (buffers), its specific heads, the target's shared
  head and logit scale, the target tower's LoRA weights (the whole target tower for ``mode="fulltune"``), and its
  own copies of base tensors (``path_owned.<target>.*``: bridge heads and CLS tokens, `codebind_hf.adapters.path_owned`);
- ``README.md``: a generated model card (`codebind_hf.adapters.model_cards`).

The verbs are those of every small artifact (bonds, projectors, the code index): ``save_path``, ``load_path``,
``push_path``, ``remove_path``, ``list_paths``, as model methods and as functions of the model here.

The decoder is never part of a path. Loading checks, before touching the model, the tower, dims, quantizer
settings, the weights' checksum and the base model's fingerprint, then every tensor name and shape; a refused
load names both sides and leaves the model as it was. Writes go to a temporary folder renamed into place, uploads
are made from a temporary folder, and the Hub token is scrubbed from any error raised on the way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..configuration_codebind import PathConfig, QuantizerConfig, normalize_path_config
from ..modalities import canonical_modality
from ..modules.heads import ProjectionHead
from ..quantization.quantizer import build_path_quantizers
from ..version import __version__
from .fingerprint import PREFIX, WeightsFingerprint, short_fingerprint
from .io import ArtifactFormat, push_folder, resolve_hub_revision
from .lora import add_lora, lora_adapter_keys, lora_keys, plain_state_keys, remove_lora
from .model_cards import render_base_card, render_path_card
from .path_owned import PREFIX as OWNED, PathOwnedMixin
from .path_towers import (attach_carried_tower, carried_prefixes, carried_spec, carried_tower_card, carries_tower,
                          path_modality_spec, path_tower_record, release_carried_tower)
from .state import AdapterStateMixin, adapter_state, deprecated_alias, renamed_argument

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


# ---------------------------------------------------------------------------- base model identity
def base_model_weights(model: nn.Module, target: str, path: dict | None = None) -> WeightsFingerprint:
    """The frozen weights a path depends on, as a lazily computed `WeightsFingerprint`.

    Those are the bridges' towers and shared heads, and the target tower unless the path fine-tunes it fully
    (LoRA is seen through, `codebind_hf.adapters.lora.lora_keys`: ``...q_proj.base_layer.weight`` counts as
    ``...q_proj.weight`` and the adapter tensors do not count). Every value counts, at half precision
    (`codebind_hf.adapters.fingerprint`), so a base cast to float16 or bfloat16 keeps its fingerprint and any larger
    change of any weight does not.

    Args:
        model ([`CodeBindModel`]): the base model.
        target (`str`): the path's target modality.
        path (`dict`, *optional*): the path's settings (``bridges``, ``mode``); defaults to ``model.config.paths[target]``.
    """
    target = canonical_modality(target)
    path = path if path is not None else model.config.paths.get(target, {})
    bridges = list(path.get("bridges", model.config.bridges))
    # A fully tuned target tower, or one the path carries (path_towers), is the path's own, not the base's.
    towers = bridges + ([target] if path.get("mode", "lora") != "fulltune" and not carries_tower(target) else [])
    prefixes = tuple(f"towers.{m}." for m in towers) + tuple(f"shared_heads.{m}." for m in bridges)
    owned = lora_keys(model)
    return WeightsFingerprint(
        (owned.get(name, name), tensor)
        for name, tensor in model.state_dict().items()
        if name.startswith(prefixes) and owned.get(name, name) is not None
    )


def base_model_fingerprint(model: nn.Module, target: str, path: dict | None = None) -> str:
    """The fingerprint to record of the frozen weights a path depends on (see `base_model_weights`).

    Returns:
        `str`: ``"v2:<bf16 sha256>:<fp16 sha256>"``.
    """
    return base_model_weights(model, target, path).record()


def base_model_record(model: nn.Module, fingerprint: str) -> dict:
    """The ``base_model`` entry of an artifact's config: the model's id, Hub revision and the given fingerprint."""
    return {
        "name_or_path": str(getattr(model.config, "_name_or_path", "") or ""),
        "revision": adapter_state(model).hub_revision,
        "fingerprint": fingerprint,
    }


def check_base_model(model: nn.Module, recorded: dict, fingerprint: WeightsFingerprint | str, artifact: str,
                     consequence: str) -> None:
    """Refuse, naming both sides, an artifact whose recorded ``base_model`` (see `base_model_record`) has another
    fingerprint than ``fingerprint``, this model's (`base_model_weights`, or a recorded string); ``artifact``
    names it ("the path") and ``consequence`` says what would go wrong."""
    expected = recorded["fingerprint"]
    if isinstance(fingerprint, str):
        ours, same = short_fingerprint(fingerprint), _same_fingerprint(fingerprint, expected)
    else:
        same = fingerprint.matches(expected)
        ours = fingerprint.short()
    if not same:
        raise ValueError(
            f"Base model mismatch: {artifact} was trained on {recorded.get('name_or_path')!r}"
            f"{' @ ' + recorded['revision'] if recorded.get('revision') else ''} (fingerprint "
            f"{short_fingerprint(expected)}…), this model is {getattr(model.config, '_name_or_path', '')!r} "
            f"(fingerprint {ours}…): some of its frozen weights differ by more than half-precision rounding; "
            f"{consequence}"
        )


def _same_fingerprint(ours: str, recorded: str) -> bool:
    if ours.startswith(PREFIX + ":") and recorded.startswith(PREFIX + ":"):
        a, b = ours.split(":")[1:], recorded.split(":")[1:]
        return a[0] == b[0] or a[1] == b[1]
    return ours == recorded


def _path_prefixes(target: str, mode: str) -> tuple[str, ...]:
    prefixes = (f"quantizers.{target}.", f"specific_heads.{target}.", f"shared_heads.{target}.", f"logit_scales.{target}.",
                f"{OWNED}.{target}.")
    return prefixes + ((f"towers.{target}.",) if mode == "fulltune" else ())


def _differences(theirs: dict, ours: dict) -> str:
    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k}: the path has {theirs.get(k)!r}, this base model has {ours.get(k)!r}" for k in keys)


# ---------------------------------------------------------------------------- files
def read_path_artifact(repo_id_or_dir: str | os.PathLike | None = None, revision: str | None = None, *,
                       token: str | bool | None = None, directory: str | os.PathLike | None = None,
                       ) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a path folder (or Hub repo) on its own: format, checksum, readable safetensors, shapes as
    recorded. ``directory`` is the former name of ``repo_id_or_dir``.

    Returns:
        `tuple[dict, dict[str, torch.Tensor]]`: the ``path_config.json`` contents and the tensors.
    """
    repo_id_or_dir = renamed_argument(repo_id_or_dir, directory, "repo_id_or_dir", "directory")
    return PATH_ARTIFACT.read(PATH_ARTIFACT.local_dir(repo_id_or_dir, revision=revision, token=token))


# ---------------------------------------------------------------------------- the mixin
class ModalityPathMixin(PathOwnedMixin, AdapterStateMixin):
    """Modality paths for [`CodeBindModel`]: ``add_path``, ``save_path``, ``load_path``, ``push_path``,
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
        adapter_state(model).hub_revision = getattr(revision, "resolved", None)
        return loaded

    # ------------------------------------------------------------------ building, listing, removing
    def list_paths(self) -> list[str]:
        """Target modalities of the paths present (their codebooks and specific heads exist), sorted."""
        return sorted(self.quantizers)

    def add_path(self, target: str, path_config: PathConfig | dict | None = None) -> None:
        """Create the modules of a new path (codebooks and specific heads, freshly initialised; the copies of base
        tensors it owns, `codebind_hf.adapters.path_owned`, from the base's values) and register its settings in
        ``config.paths``. The towers and shared heads are the base model's; add LoRA with
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
        with_specific = [m for m in self.config.path_modalities(target) if self.config.path_has_specific(target, m)]
        books = build_path_quantizers(self.config, target)
        heads = nn.ModuleDict({m: ProjectionHead(self.towers[m].hidden_size, self.config.specific_width(m, target))
                               for m in with_specific})
        reference = next(self.shared_heads[target].parameters())
        for module in (books, heads):
            module.apply(self._init_weights)  # same initialisation as modules built in __init__
            module.to(device=reference.device, dtype=reference.dtype)
        self.quantizers[target] = books
        self.specific_heads[target] = heads
        self.sync_path_owned(target)  # copies of the base's bridge heads / CLS tokens, if the path owns some

    def remove_path(self, target: str) -> None:
        """Drop a path: its codebooks, specific heads and config entry; take its LoRA adapters off the target tower
        and, for a path loaded with `load_path`, put back the base weights it replaced (the target's shared head
        and logit scale; the whole tower for ``fulltune``)."""
        target = canonical_modality(target)
        if target not in self.quantizers:
            raise KeyError(f"No path {target!r} loaded; loaded paths: {self.list_paths()}")
        del self.quantizers[target]
        del self.specific_heads[target]
        if target in self.path_owned:
            del self.path_owned[target]
        paths = dict(self.config.paths)
        paths.pop(target, None)
        self.config.paths = paths
        state = adapter_state(self)
        if target in state.lora:
            remove_lora(self, target)
        backup = state.path_backups.pop(target, None)
        if backup is not None:
            self.load_state_dict(backup, strict=False)
        release_carried_tower(self, target)  # a modality the path brought goes with it (path_towers)

    # ------------------------------------------------------------------ saving
    def path_state_dict(self, target: str) -> dict[str, torch.Tensor]:
        """The tensors of a path artifact, keyed by their names in this model (contiguous CPU copies)."""
        target = canonical_modality(target)
        if target not in self.quantizers:
            raise KeyError(f"No path {target!r} loaded; loaded paths: {self.list_paths()}")
        prefixes = _path_prefixes(target, self.config.paths[target].get("mode", "lora")) + carried_prefixes(target)
        adapters = lora_adapter_keys(self.towers[target], f"towers.{target}.")
        return {
            k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k.startswith(prefixes) or k in adapters
        }

    def path_config_dict(self, target: str, state: dict[str, torch.Tensor] | None = None) -> dict:
        """The ``path_config.json`` contents of a path (without ``weights_sha256``, known once the file is written)."""
        target = canonical_modality(target)
        state = self.path_state_dict(target) if state is None else state
        lora = adapter_state(self).lora.get(target)
        if lora is None and lora_adapter_keys(self.towers[target], f"towers.{target}.") & set(state):
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
            **path_tower_record(self, target),  # a new modality's spec (path_towers)
        }

    def _path_dims(self, target: str, settings: dict | None = None) -> dict:
        dims = {"embed_dim": self.config.embed_dim, "specific_dim": self.config.specific_dim,
                "tower_hidden_size": self.towers[target].hidden_size}
        settings = self.config.paths[target] if settings is None else settings
        own = settings.get("specific_dims") or {}  # the path's own widths travel in its settings
        # Widths the path takes from this base's specific_dims are recorded where they differ from specific_dim
        # (older artifacts have none).
        widths = {m: self.config.specific_width(m) for m in [*settings.get("bridges", []), target]
                  if m not in own and self.config.has_specific(m) and self.config.specific_width(m) != self.config.specific_dim}
        return {**dims, "specific_dims": widths} if widths else dims

    def save_path(
        self,
        target: str,
        path_dir: str | os.PathLike | None = None,
        *,
        card: bool = True,
        repo_id: str | None = None,
        training_data: str | list[str] | None = None,
        results: dict | str | os.PathLike | None = None,
        license: str | None = None,
        save_directory: str | os.PathLike | None = None,
    ) -> Path:
        """Write the path artifact of ``target`` to ``path_dir`` (a temporary folder, then a rename).

        Args:
            target (`str`): the path's target modality.
            path_dir (`str` or `os.PathLike`): a new folder, or one holding only a previous path artifact
                (``save_directory`` is its former name).
            card (`bool`, *optional*, defaults to `True`): also write the generated ``README.md`` card.
            repo_id, training_data, results, license: card details, see `codebind_hf.adapters.model_cards.render_path_card`.

        Returns:
            `Path`: ``path_dir``.
        """
        path_dir = renamed_argument(path_dir, save_directory, "path_dir", "save_directory")
        target = canonical_modality(target)
        state = self.path_state_dict(target)
        config = self.path_config_dict(target, state)

        def write_card(staging: Path) -> None:
            text = render_path_card(config, repo_id=repo_id, training_data=training_data, results=results, license=license)
            text += carried_tower_card(config)  # the sensor a path of a new modality expects (path_towers)
            (staging / PATH_CARD).write_text(text)

        return PATH_ARTIFACT.save(path_dir, state, config, write_card if card else None)

    def push_path(
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

    push_path_to_hub = deprecated_alias(push_path, "push_path_to_hub")

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
        processor=None,
    ):
        """Upload the full model (``save_pretrained`` output; the training-only decoder only with
        ``include_decoder``) and a generated ``README.md`` card, as one commit; with ``processor`` (anything with
        ``save_pretrained``, e.g. a [`CodeBindProcessor`]) its files go into the same commit.

        Takes the arguments of `transformers.PreTrainedModel.push_to_hub`, plus card details: ``results`` (the
        benchmark runner's JSON, a path or dict, shown as a table and as ``model-index``), ``training_data`` (text,
        or a list of Hub dataset ids) and ``license`` (default CC BY-NC-SA 4.0, for ImageBind-derived weights).
        Returns the `huggingface_hub.CommitInfo`. Errors never carry the token.
        """
        def write(tmp: Path) -> Path:
            card = render_base_card(self.config, repo_id=repo_id, results=results, training_data=training_data,
                                    license=license, tags=tags, revision=adapter_state(self).hub_revision)
            self.save_pretrained(tmp, include_decoder=include_decoder, max_shard_size=max_shard_size)
            if processor is not None:
                processor.save_pretrained(tmp)
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
            replace (`bool`, *optional*, defaults to `False`): replace a trained path already loaded for the same
                target. A loaded path whose codebooks were never trained (``initialized == False``) is replaced
                without it.

        Returns:
            `str`: the path's target modality.
        """
        config, state = read_path_artifact(repo_id_or_dir, revision, token=token)
        target = canonical_modality(config["modality"])
        untrained = target in self.quantizers and not all(
            bool(book.initialized) for book in self.quantizers[target].codebooks().values()
        )
        if target in self.quantizers and not (replace or untrained):
            raise ValueError(f"A path for {target!r} is already loaded; remove_path({target!r}) first or pass replace=True")
        carried = path_modality_spec(config, repo_id_or_dir), carried_spec(self, target)  # path_towers
        snapshot = self._snapshot_path(target) if target in self.quantizers else None
        if snapshot is not None:
            self.remove_path(target)  # checks below then see the bare base model
        try:
            attach_carried_tower(self, target, carried[0])  # a new modality's path brings its tower (path_towers)
            self._check_path_fits(config, target)
            self._install_path(target, config["path"], config.get("lora"), state)
        except Exception:
            if target in self.quantizers:
                self.remove_path(target)
            release_carried_tower(self, target)
            if snapshot is not None:
                attach_carried_tower(self, target, carried[1])
                self._install_path(target, *snapshot)
            raise
        logger.info("Loaded the %s path from %s", target, repo_id_or_dir)
        return target

    def install_path(self, target: str, settings: dict, state: dict[str, torch.Tensor], lora: dict | None = None) -> None:
        """Put a path into this model from its settings, its LoRA settings and its tensors (keyed by their names in
        this model): what `load_path` does once an artifact is read and checked; converters of other layouts use it.
        Missing, extra or mis-shaped tensors are refused and nothing is left loaded; the base tensors it overwrites
        are kept for `remove_path`."""
        target = canonical_modality(target)
        if target in self.quantizers:
            raise ValueError(f"A path for {target!r} is already loaded; remove_path({target!r}) first")
        try:
            self._install_path(target, settings, lora, state)
        except Exception:
            if target in self.quantizers:
                self.remove_path(target)
            raise

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
        ours = self._path_dims(target, config["path"])
        if config["dims"] != ours:
            raise ValueError(f"Dimension mismatch: {_differences(config['dims'], ours)}")
        recorded = asdict(QuantizerConfig(**config["quantizer"]))  # an older artifact lacks newer (default) settings
        if recorded != self.config.quantizer:
            raise ValueError(f"Quantizer settings differ: {_differences(recorded, self.config.quantizer)}")
        check_base_model(self, config["base_model"], base_model_weights(self, target, config["path"]), "the path",
                         "its frozen towers/heads differ, so the path's codebooks and heads would not fit")
        # Tower tensors beyond the plain tower's (all of them, unless the path is fulltune) are LoRA's.
        prefix = f"towers.{target}."
        plain = {prefix + k for k in plain_state_keys(self.towers[target])}
        if {k for k in config["shapes"] if k.startswith(prefix)} - plain and not config.get("lora"):
            raise ValueError(f"{PATH_CONFIG} has LoRA tensors but no 'lora' settings (rank, alpha, blocks)")

    def _snapshot_path(self, target: str) -> tuple[dict, dict | None, dict[str, torch.Tensor]]:
        """What `_install_path` needs to put a loaded path back after a failed replacement."""
        lora = adapter_state(self).lora.get(target)
        state = {k: v.clone() for k, v in self.path_state_dict(target).items()}
        return dict(self.config.paths[target]), (dict(lora) if lora else None), state

    def _install_path(self, target: str, settings: dict, lora: dict | None, state: dict[str, torch.Tensor]) -> None:
        self.add_path(target, settings)
        if lora:
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
        own = (f"quantizers.{target}.", f"specific_heads.{target}.", f"{OWNED}.{target}.")
        adapters = lora_adapter_keys(self.towers[target], f"towers.{target}.")
        adapter_state(self).path_backups[target] = {
            k: v.detach().clone() for k, v in expected.items() if not k.startswith(own) and k not in adapters
        }
        self.load_state_dict(state, strict=False)


# ---------------------------------------------------------------------------- the verbs as functions
def save_path(model, target: str, path_dir: str | os.PathLike | None = None, **kwargs) -> Path:
    """``model.save_path(target, path_dir, ...)``, the function form of the artifact verbs (like `save_bond`)."""
    return model.save_path(target, path_dir, **kwargs)


def load_path(model, repo_id_or_dir: str | os.PathLike, revision: str | None = None, **kwargs) -> str:
    """``model.load_path(repo_id_or_dir, revision, token=..., replace=...)``; returns the target modality."""
    return model.load_path(repo_id_or_dir, revision, **kwargs)


def push_path(model, target: str, repo_id: str, **kwargs):
    """``model.push_path(target, repo_id, private=..., commit_message=..., token=..., revision=..., ...)``."""
    return model.push_path(target, repo_id, **kwargs)


def remove_path(model, target: str) -> None:
    """``model.remove_path(target)``."""
    model.remove_path(target)


def list_paths(model) -> list[str]:
    """``model.list_paths()``."""
    return model.list_paths()


__all__ = [
    "ModalityPathMixin",
    "save_path",
    "load_path",
    "push_path",
    "remove_path",
    "list_paths",
    "base_model_fingerprint",
    "base_model_weights",
    "base_model_record",
    "check_base_model",
    "read_path_artifact",
    "PATH_CONFIG",
    "PATH_WEIGHTS",
    "PATH_CARD",
    "PATH_FORMAT_VERSION",
    "PATH_ARTIFACT",
]
