"""Frozen-feature cache: pooled outputs of frozen towers, computed once per row and stored with `datasets`.

Frozen bridge towers (and, with ``headtune``, the target tower) give the same output for a row every epoch,
so — as EBind does for its frozen encoders — the cache computes them once and training reads them back from
arrow files: a training step then runs only the trainable towers, the heads and the codebooks.

Layout under ``cache.dir`` (default ``<output_dir>/feature_cache``): one folder per cache key, holding
``shard-RRRRR-of-WWWWW.arrow`` (rows of the split, each process writes its contiguous share), ``prompts/``
(label datasets: the text tower's pooled output of every class x template) and ``cache_info.json``, written
last, atomically, sealed with its own checksum and holding the sha256 of every shard and prompt-table file: a
folder without it is incomplete, and one whose files do not match it is corrupt; either is rebuilt (a corrupt one
with a warning naming the file). Columns: ``__cb_ok`` (row decoded) and
``__cb_<modality>`` of shape `(n, hidden)`: one pooled output per clip (audio/video) or per caption, `n = 1`
otherwise; training picks one per row and epoch, like the live collator.

The key hashes the cached towers' weights (every value, exactly), the model id and revision,
the processor's settings, the column mapping, the templates and class names, the dataset fingerprint and split
size, and the storage dtype: change any of them and a new cache is built.

Only pooled outputs are cached, so token-level terms of cached modalities (reconstruction, the token form of
orthogonality) are not computed; the live target keeps them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..adapters.integrity import (
    IntegrityError,
    read_sealed_json,
    tensors_sha256,
    verify_checksum_list,
    write_checksum_list,
    write_sealed_json,
)
from ..adapters.io import write_dir_atomically
from .batching import BatchSpec, PathCollator
from .decoding import BadRowError, decode_value

CACHE_VERSION = 1
INFO_FILE = "cache_info.json"
CACHE_CHECKSUMS = "cache_checksums.json"
logger = logging.getLogger("codebind_hf.training")


def tower_fingerprint(model, modalities: list[str]) -> str:
    """sha256 over the names, dtypes, shapes and every byte of the towers of ``modalities`` (LoRA wrappers seen
    through, adapter tensors left out): any change of a cached tower's weights means another cache."""
    prefixes = tuple(f"towers.{m}." for m in sorted(modalities))
    return tensors_sha256({name.replace(".base_layer.", "."): tensor for name, tensor in model.state_dict().items()
                           if name.startswith(prefixes) and "lora_" not in name})


def cache_key(components: dict) -> str:
    return hashlib.sha256(json.dumps({"version": CACHE_VERSION, **components}, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """Build or reuse the cached pooled features of ``modalities`` for a prepared training split.

    Args:
        directory (`str` or `os.PathLike`): cache root.
        key_components (`dict`): everything the features depend on (see module docstring).
        modalities (`list[str]`): modalities to cache (``"text"`` included when text is a frozen bridge).
        dtype (`str`, *optional*, defaults to `"float32"`): storage dtype.
    """

    def __init__(self, directory, key_components: dict, modalities: list[str], dtype: str = "float32"):
        self.modalities = list(modalities)
        self.dtype = dtype
        self.key = cache_key({**key_components, "modalities": sorted(self.modalities), "dtype": dtype})
        self.folder = Path(directory) / self.key[:20]
        self.key_components = key_components

    @property
    def complete(self) -> bool:
        """Whether the folder holds this key's cache, every file as recorded (a corrupt one is reported and
        rebuilt)."""
        if not (self.folder / INFO_FILE).is_file():
            return False
        try:
            info = read_sealed_json(self.folder / INFO_FILE, "feature cache info")
            if info.get("key") != self.key:
                return False
            if info.get("checksums"):
                verify_checksum_list(self.folder, CACHE_CHECKSUMS, what=f"feature cache {self.folder.name}")
        except (IntegrityError, FileNotFoundError) as err:
            logger.warning("the feature cache in %s is corrupt and is rebuilt: %s", self.folder, err)
            return False
        return True

    # ------------------------------------------------------------------ building
    def build(self, accelerator, model, dataset, collator: PathCollator, batch_size: int, label_table_inputs=None) -> None:
        """Compute this process's share of rows (and, on the main process, the prompt table); all processes
        must call it. ``label_table_inputs``: processed prompts ``(input_ids, attention_mask, classes, templates)``."""
        import datasets

        world, rank = accelerator.num_processes, accelerator.process_index
        if accelerator.is_main_process:  # the folder is incomplete until the new info is written
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / INFO_FILE).unlink(missing_ok=True)
        accelerator.wait_for_everyone()
        bounds = np.linspace(0, len(dataset), world + 1).astype(int)
        shard = dataset.select(range(bounds[rank], bounds[rank + 1]))
        features = {"__cb_ok": datasets.Value("bool")}
        for modality in self.modalities:
            if modality == "text" and label_table_inputs is not None:
                continue
            features[f"__cb_{modality}"] = datasets.List(datasets.List(datasets.Value(self.dtype)))
        offset = int(bounds[rank])
        device = accelerator.device

        def encode(batch: dict, indices: list[int]) -> dict:
            rows = [offset + i for i in indices]
            items = [(row, {c: batch[c][k] for c in batch}) for k, row in enumerate(rows)]
            return self._encode_rows(model, collator, items, device, accelerator, label_table_inputs is not None)

        shard.map(
            encode,
            batched=True,
            batch_size=batch_size,
            with_indices=True,
            remove_columns=shard.column_names,
            features=datasets.Features(features),
            cache_file_name=str(self.folder / f"shard-{rank:05d}-of-{world:05d}.arrow"),
            new_fingerprint=f"{self.key[:24]}-{rank}-{world}",
            load_from_cache_file=False,
            desc=f"feature cache (process {rank})",
        )
        if label_table_inputs is not None and accelerator.is_main_process:
            self._build_prompt_table(model, label_table_inputs, device, accelerator)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            files = [f"shard-{r:05d}-of-{world:05d}.arrow" for r in range(world)]
            if (self.folder / "prompts").is_dir():
                files += [p.relative_to(self.folder).as_posix() for p in sorted((self.folder / "prompts").rglob("*")) if p.is_file()]
            write_checksum_list(self.folder, files, CACHE_CHECKSUMS)
            info = {"key": self.key, "num_rows": len(dataset), "world_size": world, "modalities": self.modalities,
                    "components": self.key_components, "dtype": self.dtype, "checksums": CACHE_CHECKSUMS}
            write_sealed_json(self.folder / INFO_FILE, info, fsync=True, indent=2)  # the commit point
        accelerator.wait_for_everyone()

    @torch.no_grad()
    def _encode_rows(self, model, collator: PathCollator, items, device, accelerator, text_from_table: bool) -> dict:
        spec = collator.spec
        out = {"__cb_ok": [False] * len(items)}
        columns = {m: [None] * len(items) for m in self.modalities if not (m == "text" and text_from_table)}
        position = {row: k for k, (row, _) in enumerate(items)}
        good, _, processed, _ = collator._process_rows(items)  # raises on bad rows unless skipping
        keep = [position[r] for r in good]
        for k in keep:
            out["__cb_ok"][k] = True
        by_modality = _inputs_by_modality(processed or {}, spec.input_keys)
        for modality in columns:
            if modality == "text":
                self._encode_captions(model, collator, items, keep, columns["text"], device, accelerator, out)
                continue
            if not keep:
                continue
            x = by_modality[modality].to(device)
            clips = x.ndim == spec.sample_ndims[modality] + 2
            flat = x.flatten(0, 1) if clips else x
            with accelerator.autocast():
                pooled, _ = model.tower_outputs(modality, flat)
            pooled = pooled.float().reshape(x.shape[0], -1, pooled.shape[-1]) if clips else pooled.float()[:, None]
            for j, k in enumerate(keep):
                columns[modality][k] = pooled[j].cpu().numpy()
        width = {m: model.towers[m].hidden_size for m in columns}
        for modality, values in columns.items():
            out[f"__cb_{modality}"] = [v if v is not None else np.zeros((1, width[modality]), np.float32) for v in values]
        return out

    def _encode_captions(self, model, collator, items, keep, column, device, accelerator, out) -> None:
        """Every caption of every kept row, in one processor call and one text-tower pass."""
        spec = collator.spec
        rows, captions = [], []
        for k in keep:
            row, values = items[k]
            try:
                found = decode_value("text", values[spec.columns.text], row, spec.columns.text)
            except BadRowError:
                if not collator.skip_bad_rows:
                    raise
                out["__cb_ok"][k] = False
                continue
            rows.append((k, len(found)))
            captions += found
        if not captions:
            return
        processed = dict(collator.processor(text=captions))
        with accelerator.autocast():
            pooled, _ = model.tower_outputs("text", torch.as_tensor(processed["input_ids"]).to(device), _mask(processed, device))
        pooled, start = pooled.float().cpu().numpy(), 0
        for k, count in rows:
            column[k] = pooled[start : start + count]
            start += count

    @torch.no_grad()
    def _build_prompt_table(self, model, label_table_inputs, device, accelerator) -> None:
        import datasets

        input_ids, mask, classes, templates = label_table_inputs
        with accelerator.autocast():
            pooled, _ = model.tower_outputs("text", input_ids.to(device), None if mask is None else mask.to(device))
        table = pooled.float().reshape(classes, templates, -1).cpu().numpy()
        features = datasets.Features({"pooled": datasets.List(datasets.List(datasets.Value("float32")))})
        prompts = datasets.Dataset.from_dict({"pooled": list(table)}, features=features)
        # The folder belongs to this cache entry: a previous table is replaced whatever it holds.
        write_dir_atomically(self.folder / "prompts", lambda staging: prompts.save_to_disk(str(staging)), replaceable=None)

    # ------------------------------------------------------------------ loading
    def load(self):
        """``(cache dataset aligned with the split's rows, prompt table `(classes, templates, hidden)` or None)``."""
        import datasets

        info = read_sealed_json(self.folder / INFO_FILE, "feature cache info")
        world = info["world_size"]
        shards = [datasets.Dataset.from_file(str(self.folder / f"shard-{r:05d}-of-{world:05d}.arrow")) for r in range(world)]
        table = datasets.concatenate_datasets(shards)
        if len(table) != info["num_rows"]:
            raise RuntimeError(f"feature cache {self.folder} is inconsistent: {len(table)} rows, expected {info['num_rows']}")
        prompts = None
        if (self.folder / "prompts").is_dir():
            stored = datasets.load_from_disk(str(self.folder / "prompts")).with_format("numpy")
            prompts = torch.from_numpy(np.stack(list(stored["pooled"])).astype(np.float32))
        return table, prompts


def _mask(processed: dict, device):
    mask = processed.get("attention_mask")
    return None if mask is None else torch.as_tensor(mask).to(device)


def _inputs_by_modality(processed: dict, input_keys: dict | None = None) -> dict[str, torch.Tensor]:
    from ..modalities import INPUT_KEYS, VIDEO_INPUT_KEY

    by_key = {key: m for m, key in {**INPUT_KEYS, **(input_keys or {})}.items()}
    by_key[VIDEO_INPUT_KEY] = "vision"
    return {by_key[k]: torch.as_tensor(v) for k, v in processed.items() if k in by_key}


def cache_batch_spec(spec: BatchSpec, modalities: list[str]) -> BatchSpec:
    """The collator spec used while building: decode only the cached non-text modalities."""
    return BatchSpec(
        live=[m for m in modalities if m != "text"],
        columns=spec.columns,
        sample_ndims=spec.sample_ndims,
        templates=spec.templates,
        class_names=spec.class_names,
        vision_input=spec.vision_input,
        sampling_rate=spec.sampling_rate,
        input_keys=spec.input_keys,
    )


__all__ = ["FeatureCache", "tower_fingerprint", "cache_key", "cache_batch_spec", "CACHE_VERSION"]
