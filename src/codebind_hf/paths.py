"""Modality paths as small artifacts beside a base model, like PEFT adapters.

A path (named by its target modality) is saved as ``path_config.json`` (modality, bridges, the path's
training settings, base model id + revision + fingerprint, dims, quantizer settings, LoRA settings, every
tensor's shape, library version) + ``path.safetensors`` (the path's shared and specific codebooks, its
specific heads, the target's shared head and logit scale, and the target tower's LoRA weights — or the whole
tower for ``fulltune``) + a generated ``README.md`` card. Loading checks the base model and every shape and
refuses mismatches naming both sides. Writes are atomic; a failed upload leaves the local files as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .configuration_codebind import PathConfig, normalize_path_config
from .heads import ProjectionHead
from .index import _atomic_dir_write
from .modalities import canonical_modality
from .quantization import MultiCodebookQuantizer

PATH_CONFIG = "path_config.json"
PATH_WEIGHTS = "path.safetensors"


def base_model_fingerprint(model, target: str) -> str:
    """sha256 over names, shapes and a value sample of the frozen weights a path depends on: the bridges'
    towers and shared heads, and the target tower unless the path fine-tunes it fully."""
    config = model.config
    path = config.paths.get(target, {})
    modalities = list(path.get("bridges", config.bridges))
    if path.get("mode", "lora") != "fulltune":
        modalities.append(target)
    prefixes = tuple(f"towers.{m}." for m in modalities) + tuple(f"shared_heads.{m}." for m in path.get("bridges", []))
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(prefixes) or "lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64].float().cpu().numpy().round(6)
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()


def _path_prefixes(target: str, mode: str) -> tuple[str, ...]:
    prefixes = (f"quantizers.{target}.", f"specific_heads.{target}.", f"shared_heads.{target}.", f"logit_scales.{target}.")
    return prefixes + ((f"towers.{target}.",) if mode == "fulltune" else ())


class ModalityPathMixin:
    """save_path / load_path / push_path_to_hub / list_paths / remove_path for `CodeBindModel`."""

    # ------------------------------------------------------------------ building and listing
    def list_paths(self) -> list[str]:
        """Target modalities whose paths (codebooks + specific heads) are present."""
        return sorted(self.quantizers)

    def add_path(self, target: str, path_config: PathConfig | dict | None = None) -> None:
        """Create (fresh) the modules of a path: its codebooks and specific heads, and register it in the config."""
        target = canonical_modality(target)
        if target not in self.towers:
            raise ValueError(f"The base model has no tower for modality {target!r}; it has {sorted(self.towers)}")
        if target in self.quantizers:
            raise ValueError(f"A path for {target!r} is already loaded; remove_path({target!r}) first")
        paths = dict(self.config.paths)
        paths[target] = normalize_path_config(target, path_config)
        self.config.paths = paths
        try:
            self.config.validate_architecture()
        except Exception:
            paths.pop(target)
            self.config.paths = paths
            raise
        quantizer = self.config.quantizer_config
        with_specific = [m for m in self.config.path_modalities(target) if self.config.has_specific(m)]
        self.quantizers[target] = MultiCodebookQuantizer(
            with_specific, quantizer.shared_codebook_size, quantizer.specific_codebook_size, **quantizer.quantizer_kwargs()
        )
        self.specific_heads[target] = nn.ModuleDict(
            {m: ProjectionHead(self.towers[m].hidden_size, self.config.specific_dim) for m in with_specific}
        )

    def remove_path(self, target: str) -> None:
        """Drop a path's codebooks, specific heads and config entry, and take its LoRA adapters off the tower."""
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

    # ------------------------------------------------------------------ saving
    def path_state_dict(self, target: str) -> dict[str, torch.Tensor]:
        target = canonical_modality(target)
        if target not in self.quantizers:
            raise KeyError(f"No path {target!r} loaded; loaded paths: {self.list_paths()}")
        mode = self.config.paths[target].get("mode", "lora")
        prefixes = _path_prefixes(target, mode)
        state = {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}
        state.update({k: v for k, v in self.state_dict().items() if k.startswith(f"towers.{target}.") and "lora_" in k})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def path_config_dict(self, target: str) -> dict:
        from . import __version__

        target = canonical_modality(target)
        state = self.path_state_dict(target)
        return {
            "format": "codebind-path",
            "version": 1,
            "library_version": __version__,
            "modality": target,
            "path": self.config.paths[target],
            "base_model": {
                "name_or_path": getattr(self.config, "_name_or_path", "") or "",
                "revision": getattr(self.config, "_commit_hash", None),
                "fingerprint": base_model_fingerprint(self, target),
            },
            "dims": {"embed_dim": self.config.embed_dim, "specific_dim": self.config.specific_dim,
                     "tower_hidden_size": self.towers[target].hidden_size},
            "quantizer": self.config.quantizer,
            "lora": getattr(self, "lora_settings", {}).get(target),
            "shapes": {k: list(v.shape) for k, v in state.items()},
        }

    def save_path(self, target: str, directory: str | os.PathLike, card: bool = True) -> Path:
        """Write the path artifact of ``target`` to ``directory`` (atomically: a temp dir, then a rename)."""
        from .model_cards import render_path_card

        target = canonical_modality(target)
        config = self.path_config_dict(target)
        state = self.path_state_dict(target)

        def write(staging: Path) -> None:
            save_file(state, staging / PATH_WEIGHTS, metadata={"format": "pt", "codebind_path": target})
            (staging / PATH_CONFIG).write_text(json.dumps(config, indent=2))
            if card:
                (staging / "README.md").write_text(render_path_card(config))

        _atomic_dir_write(Path(directory), write)
        return Path(directory)

    def push_path_to_hub(self, target: str, repo_id: str, private: bool | None = None,
                         commit_message: str | None = None, token: str | None = None, revision: str | None = None):
        """Upload the path artifact of ``target`` as one commit; returns the commit info."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_path(target, Path(tmp) / "path")
            return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                     commit_message=commit_message or f"Upload CodeBind {target} path")

    def push_to_hub(self, repo_id: str, private: bool | None = None, commit_message: str | None = None,
                    token: str | None = None, revision: str | None = None, results=None, include_decoder: bool = False, **_):
        """Upload the full model (``save_pretrained`` output, decoder excluded unless asked) with a generated card,
        as one commit. ``results``: the benchmark runner's JSON (path or dict) for the card's evaluation section."""
        from huggingface_hub import HfApi

        from .model_cards import render_base_card

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, include_decoder=include_decoder)
            (Path(tmp) / "README.md").write_text(render_base_card(self.config, repo_id, results))
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                     commit_message=commit_message or "Upload CodeBind model")

    # ------------------------------------------------------------------ loading
    def load_path(self, repo_id_or_dir: str | os.PathLike, revision: str | None = None, token: str | None = None) -> str:
        """Load a path artifact (local folder or Hub repo) into this base model; returns its target modality.

        Refuses, naming both sides: a modality without a tower here, a different base model (fingerprint),
        different dims or quantizer settings, and any missing, extra, mis-shaped or unreadable tensor.
        """
        directory = Path(repo_id_or_dir)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(snapshot_download(str(repo_id_or_dir), revision=revision, token=token))
        config_file = directory / PATH_CONFIG
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} not found: {repo_id_or_dir} is not a CodeBind path artifact")
        config = json.loads(config_file.read_text())
        if config.get("format") != "codebind-path":
            raise ValueError(f"{config_file} is not a CodeBind path config (format {config.get('format')!r})")
        target = canonical_modality(config["modality"])
        if target not in self.towers:
            raise ValueError(f"The path is for modality {target!r}, but this base model has no {target} tower (it has {sorted(self.towers)})")
        ours = {"embed_dim": self.config.embed_dim, "specific_dim": self.config.specific_dim, "tower_hidden_size": self.towers[target].hidden_size}
        if config["dims"] != ours:
            raise ValueError(f"Dimension mismatch: the path has {config['dims']}, this base model has {ours}")
        if config["quantizer"] != self.config.quantizer:
            raise ValueError(f"Quantizer settings differ: the path has {config['quantizer']}, this base model has {self.config.quantizer}")
        try:
            state = load_file(directory / PATH_WEIGHTS)
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{directory / PATH_WEIGHTS} is corrupted or truncated: {err}") from err
        previous = self.config.paths.get(target)
        if target in self.quantizers:
            self.remove_path(target)
        self.add_path(target, config["path"])
        try:
            fingerprint = base_model_fingerprint(self, target)
            expected = config["base_model"]["fingerprint"]
            if fingerprint != expected:
                raise ValueError(
                    f"Base model mismatch: the path was trained on {config['base_model']['name_or_path']!r} "
                    f"(fingerprint {expected[:12]}…), this model is {getattr(self.config, '_name_or_path', '')!r} "
                    f"(fingerprint {fingerprint[:12]}…)"
                )
            if config.get("lora"):
                from .lora import add_lora

                lora = config["lora"]
                add_lora(self, target, r=lora["r"], lora_alpha=lora["lora_alpha"], last_n_blocks=lora["last_n_blocks"], dropout=lora["dropout"])
            self._load_path_tensors(target, state, config["shapes"])
        except Exception:
            self.remove_path(target)
            if previous is not None:
                self.add_path(target, previous)
            raise
        return target

    def _load_path_tensors(self, target: str, state: dict[str, torch.Tensor], shapes: dict[str, list[int]]) -> None:
        own = self.state_dict()
        expected = set(self.path_state_dict(target))
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or extra:
            raise ValueError(f"path.safetensors does not match the path's modules: missing {missing[:10]}, unexpected {extra[:10]}")
        wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
        wrong += [f"{k}: config {shapes.get(k)} vs file {list(v.shape)}" for k, v in state.items() if shapes.get(k) != list(v.shape)]
        if wrong:
            raise ValueError(f"Shape mismatches: {wrong[:10]}")
        self.load_state_dict(state, strict=False)


__all__ = ["ModalityPathMixin", "base_model_fingerprint", "PATH_CONFIG", "PATH_WEIGHTS"]
