"""The benchmark runner's evaluation loop: embed a benchmark's items and its prompts or captions under Accelerate,
then score them with the suite's `evaluate` metric modules.

Every process embeds its shard of a dataset; `accelerator.gather_for_metrics` collects the embeddings together with
their item indices (the copies that pad the last batch are dropped) and the rows are put back in item order, so two
processes give the numbers of one. Scores and metrics are computed on the main process only.

- Zero-shot classification: every name of every class (`BenchmarkDefinition.prompt_names`: several for NYU-D's
  "other" or LLVIP's classes) is put in every template, the prompt embeddings of a name are averaged into one
  classifier row (`zero_shot_classifier`), and a class scores the maximum over its rows (`zero_shot_scores`).
- Retrieval: captions are the queries and items the gallery (text-to-item, the paper's metric, under the
  definition's metric names); the reverse direction (item-to-text, any of an item's captions counts) is reported as
  ``<kind>_to_text_recall@k``.

Text has no specific part: with ``part="concat"`` its shared embedding is zero-padded to the concatenated width, so a
text-vs-item cosine is the shared cosine scaled by the norm share of the item's shared half.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .zero_shot import (
    build_prompts,
    expand_prompt_names,
    load_templates,
    zero_shot_classifier,
    zero_shot_scores,
)

from .datasets import BenchmarkAdapter, label_array, processor_inputs, retrieval_targets
from .suite import METRIC_MODULES, BenchmarkDefinition, load_metric


class BenchmarkConfigError(ValueError):
    """The run's settings do not fit the model or the suite (the message says what to pass instead)."""


@dataclass
class EvalSettings:
    """How a model is evaluated.

    Attributes:
        part (`str`): ``"shared"`` or ``"concat"`` (shared⊕specific) for the benchmark's modality.
        quantize (`bool`): use the codebooks (``False``: the normalised head outputs, e.g. for an unconverted baseline).
        paths (`dict[str, str]`): modality -> path whose codebooks to use; key ``"*"`` applies to every modality.
            Unlisted modalities resolve as `CodeBindModel.resolve_path` does (own path, else the only one).
        batch_size (`int`): items per process and step.
        text_batch_size (`int`): prompts or captions per process and step.
        templates (`str`, *optional*): a shipped template list used for every classification benchmark instead of
            the definition's (``"codebind_simple"``, ``"identity"``: quick runs and template ablations).
        limit (`int`, *optional*): at most this many items per benchmark split (smoke runs).
        num_workers (`int`): data-loader workers per process.
    """

    part: str = "shared"
    quantize: bool = True
    paths: dict[str, str] = field(default_factory=dict)
    batch_size: int = 32
    text_batch_size: int = 256
    templates: str | None = None
    limit: int | None = None
    num_workers: int = 0


class _Indexed(Dataset):
    """``(index, item)`` pairs of a sequence, cut to ``limit`` items."""

    def __init__(self, items: Sequence, limit: int | None = None):
        self.items = items
        self.size = len(items) if limit is None else min(limit, len(items))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        return index, self.items[index]


def _collate(prepare: Callable[[list], dict]) -> Callable[[list], dict]:
    def collate(batch: list) -> dict:
        indices = torch.tensor([index for index, _ in batch], dtype=torch.long)
        return {"index": indices, "inputs": dict(prepare([item for _, item in batch]))}

    return collate


def embed_all(accelerator, items: Sequence, prepare: Callable[[list], dict], encode: Callable[[dict], torch.Tensor],
              settings: EvalSettings, desc: str) -> torch.Tensor:
    """Embeddings `(len(items), dim)` in item order, computed across processes (every process gets all of them).

    ``prepare`` turns a list of items into model inputs (a processor call); ``encode`` turns those into embeddings.
    """
    from tqdm.auto import tqdm

    dataset = _Indexed(items, settings.limit)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, collate_fn=_collate(prepare),
                        num_workers=settings.num_workers)
    loader = accelerator.prepare(loader)
    indices, chunks = [], []
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        with torch.no_grad():
            embeds = encode(batch["inputs"]).float()
        gathered = accelerator.gather_for_metrics({"index": batch["index"], "embeds": embeds})
        indices.append(gathered["index"].cpu())
        chunks.append(gathered["embeds"].cpu())
    index, embeds = torch.cat(indices), torch.cat(chunks)
    out = embeds.new_zeros(len(dataset), embeds.shape[1])
    seen = torch.zeros(len(dataset), dtype=torch.bool)
    out[index], seen[index] = embeds, True  # padding copies repeat rows that are already there
    if not seen.all():
        raise RuntimeError(f"{desc}: {int((~seen).sum())} of {len(dataset)} items came back from no process")
    return out


# ---------------------------------------------------------------------------------------------- paths
def choose_path(model, modality: str, settings: EvalSettings, benchmark: str) -> str | None:
    """The path whose codebooks embed ``modality`` and the text of a benchmark (``None`` when nothing needs one)."""
    if not settings.quantize and settings.part == "shared":
        return None
    wanted = settings.paths.get(modality, settings.paths.get("*"))
    try:
        return model.resolve_path(modality, wanted)
    except ValueError as err:
        raise BenchmarkConfigError(
            f"{benchmark}: {err}. Choose one with --path {modality}=<path> (paths: {sorted(model.quantizers)}), "
            "or evaluate the unquantised embeddings with --no-quantize"
        ) from None


# ---------------------------------------------------------------------------------------------- metrics
def score(definition: BenchmarkDefinition, predictions: np.ndarray, references, modules: dict,
          notes: list[str] | None = None, label: str = "") -> dict[str, float]:
    """The definition's metrics through their `evaluate` modules (loaded once into ``modules``).

    A cut-off larger than the candidates (``recall@10`` over 4 items, ``accuracy@5`` over 2 classes) is computed at
    the number of candidates, where every query is a hit, and a note says so.
    """
    num_candidates = predictions.shape[1]
    # Lists of rows, not nested Python lists: IN1K's 50,000 x 1,000 scores stay NumPy inside the list.
    predictions_list = list(np.asarray(predictions, dtype=np.float64))
    references = list(references) if isinstance(references, np.ndarray) else references
    out: dict[str, float] = {}
    recall_ks = {}
    for metric in definition.metrics:
        name, kwargs = METRIC_MODULES[metric]
        if name not in modules:
            modules[name] = load_metric(name)
        if name == "recall_at_k":
            recall_ks[metric] = kwargs["k"][0]
            continue
        if name == "zero_shot_accuracy":
            k = min(kwargs["k"], num_candidates)
            _note_cut(notes, label or definition.name, metric, kwargs["k"], k)
            out[metric] = modules[name].compute(predictions=predictions_list, references=references, k=k)["accuracy"]
        else:
            out[metric] = modules[name].compute(predictions=predictions_list, references=references)["mAP"]
    if recall_ks:
        used = {metric: min(k, num_candidates) for metric, k in recall_ks.items()}
        values = modules["recall_at_k"].compute(predictions=predictions_list, references=references,
                                                k=sorted(set(used.values())))
        for metric, k in recall_ks.items():
            _note_cut(notes, label or definition.name, metric, k, used[metric])
            out[metric] = values[f"recall@{used[metric]}"]
    return {metric: float(out[metric]) for metric in definition.metrics}


def _note_cut(notes, label, metric, k, used):
    if notes is not None and used < k:
        notes.append(f"{label} {metric}: only {used} candidates, computed at k={used} (every query a hit)")


def aggregate(definition: BenchmarkDefinition, per_split: dict[str, dict[str, float]]) -> dict[str, float]:
    """Combine split results as the definition says: one split, the mean over splits, or ``<split>/<metric>``."""
    if definition.split_aggregation == "single":
        return dict(next(iter(per_split.values())))
    if definition.split_aggregation == "mean":
        metrics = next(iter(per_split.values()))
        return {m: float(np.mean([values[m] for values in per_split.values()])) for m in metrics}
    return {f"{split}/{m}": v for split, values in per_split.items() for m, v in values.items()}


# ---------------------------------------------------------------------------------------------- one split
class SplitEvaluator:
    """Evaluates benchmark splits with one model and processor; caches text classifiers across splits (ESC-50's five
    folds share one)."""

    def __init__(self, accelerator, model, processor, settings: EvalSettings):
        self.accelerator, self.model, self.processor, self.settings = accelerator, model, processor, settings
        self.modules: dict = {}
        self._classifiers: dict = {}

    def _text(self, texts: list[str], path: str | None, width: int, desc: str) -> torch.Tensor:
        def encode(inputs):
            return self.model.get_features("text", inputs, quantize=self.settings.quantize, path=path)

        # --limit cuts items, never prompts
        settings = dataclasses.replace(self.settings, limit=None, batch_size=self.settings.text_batch_size)
        embeds = embed_all(self.accelerator, texts, lambda batch: self.processor(text=batch), encode, settings, desc)
        return F.pad(embeds, (0, width - embeds.shape[1]))  # concat: text has no specific part

    def _items(self, definition: BenchmarkDefinition, adapter: BenchmarkAdapter, path: str | None) -> torch.Tensor:
        settings, modality = self.settings, definition.modality

        def encode(inputs):
            return self.model.get_features(modality, inputs, part=settings.part, quantize=settings.quantize, path=path)

        return embed_all(self.accelerator, adapter, lambda batch: self.processor(**processor_inputs(definition, batch)),
                         encode, settings, f"{definition.name}/{adapter.split}")

    def path_of(self, definition: BenchmarkDefinition) -> str | None:
        """The path whose codebooks embed the benchmark's modality and its text."""
        return choose_path(self.model, definition.modality, self.settings, definition.name)

    def __call__(self, definition: BenchmarkDefinition, adapter: BenchmarkAdapter, notes: list[str]) -> dict | None:
        """The split's metrics on the main process (``None`` on the others, which only help embed)."""
        path = self.path_of(definition)
        items = self._items(definition, adapter, path)
        targets = adapter.targets()[: len(items)]
        if definition.task == "zero_shot_classification":
            key = (definition.name, path)
            if key not in self._classifiers:
                names, class_index = expand_prompt_names(definition.prompt_names())
                templates = load_templates(self.settings.templates) if self.settings.templates else definition.prompt_templates()
                prompts = [p for row in build_prompts(names, templates) for p in row]
                text = self._text(prompts, path, items.shape[1], f"{definition.name} prompts")
                self._classifiers[key] = (zero_shot_classifier(text.reshape(len(names), len(templates), -1)), class_index)
            if not self.accelerator.is_main_process:
                return None
            classifier, class_index = self._classifiers[key]
            predictions = zero_shot_scores(items, classifier, class_index).numpy()
            references = label_array(definition, [{"label": t} for t in targets])
            return score(definition, predictions, references, self.modules, notes)
        relevance = retrieval_targets([{"captions": c} for c in targets])
        text = self._text(relevance.captions, path, items.shape[1], f"{definition.name} captions")
        if not self.accelerator.is_main_process:
            return None
        similarity = (F.normalize(text, dim=-1) @ F.normalize(items, dim=-1).T).numpy()
        out = score(definition, similarity, relevance.text_to_item, self.modules, notes)
        reverse = score(definition, similarity.T, relevance.item_to_text, self.modules, notes,
                        label=f"{definition.name} {definition.input_kind}-to-text")
        out.update({f"{definition.input_kind}_to_text_{m}": v for m, v in reverse.items()})
        return out


__all__ = ["BenchmarkConfigError", "EvalSettings", "SplitEvaluator", "embed_all", "choose_path", "score", "aggregate"]
