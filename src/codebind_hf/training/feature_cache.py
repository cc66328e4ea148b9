"""Frozen-feature cache: pooled outputs of frozen towers, computed once per row and stored with `datasets`.

Frozen bridge towers (and, with ``headtune``, the target tower) give the same output for a row every epoch,
so — as EBind does for its frozen encoders — the cache computes them once and training reads them back from
arrow files: a training step then runs only the trainable towers, the heads and the codebooks.

Layout under ``cache.dir`` (default ``<output_dir>/feature_cache``): one folder per cache key, holding
``shard-RRRRR-of-WWWWW.arrow`` (rows of the split, each process writes its contiguous share), ``prompts/``
(label datasets: the text tower's pooled output of every class x template) and ``cache_info.json``, written
last, atomically: a folder without it is incomplete and rebuilt. Columns: ``__cb_ok`` (row decoded) and
``__cb_<modality>`` of shape `(n, hidden)`: one pooled output per clip (audio/video) or per caption, `n = 1`
otherwise; training picks one per row and epoch, like the live collator.

The key hashes the cached towers' weights (sampled values, per-tensor sums, shapes), the model id and revision,
the processor's settings, the column mapping, the templates and class names, the dataset fingerprint and split
size, and the storage dtype: change any of them and a new cache is built.

Only pooled outputs are cached, so token-level terms of cached modalities (reconstruction, the token form of
orthogonality) are not computed; the live target keeps them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..adapters.io import write_dir_atomically, write_json_atomically
from .batching import BatchSpec, PathCollator
from .decoding import BadRowError, decode_value

CACHE_VERSION = 1
INFO_FILE = "cache_info.json"


def tower_fingerprint(model, modalities: list[str]) -> str:
    """sha256 over the names, shapes, per-tensor sums and a value sample of the towers of ``modalities``."""
    digest = hashlib.sha256()
    prefixes = tuple(f"towers.{m}." for m in sorted(modalities))
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(prefixes) or "lora_" in name:
            continue
        flat = tensor.detach().reshape(-1).float()
        sample = flat[:: max(1, flat.numel() // 256)][:256].cpu().numpy()
        digest.update(f"{name.replace('.base_layer.', '.')}{tuple(tensor.shape)}{float(flat.double().sum()):.10e}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()


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
        info = self.folder / INFO_FILE
        return info.is_file() and json.loads(info.read_text()).get("key") == self.key

    # ------------------------------------------------------------------ building
    def build(self, accelerator, model, dataset, collator: PathCollator, batch_size: int, label_table_inputs=None) -> None:
        """Compute this process's share of rows (and, on the main process, the prompt table); all processes
        must call it. ``label_table_inputs``: processed prompts ``(input_ids, attention_mask, classes, templates)``."""
        import datasets

        world, rank = accelerator.num_processes, accelerator.process_index
        self.folder.mkdir(parents=True, exist_ok=True)
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
            info = {"key": self.key, "num_rows": len(dataset), "world_size": world, "modalities": self.modalities,
                    "components": self.key_components, "dtype": self.dtype}
            write_json_atomically(self.folder / INFO_FILE, info, indent=2, default=str)
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
        by_modality = _inputs_by_modality(processed or {})
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

        info = json.loads((self.folder / INFO_FILE).read_text())
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


def _inputs_by_modality(processed: dict) -> dict[str, torch.Tensor]:
    from ..modalities import INPUT_KEYS, VIDEO_INPUT_KEY

    by_key = {key: m for m, key in INPUT_KEYS.items()}
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
    )


__all__ = ["FeatureCache", "tower_fingerprint", "cache_key", "cache_batch_spec", "CACHE_VERSION"]
