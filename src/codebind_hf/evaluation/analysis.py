"""The paper's other evaluations (§6 claims): linear probes, fine-grained intra-modal retrieval and fusion.

They run through ``codebind-bench`` next to the zero-shot benchmarks, named on the command line:

- ``probe:<kind>:<folder>``: logistic-regression probes (standardised features, stratified k-fold; the demo's
  probes are this function) of every attribute of the items on their shared, specific and shared⊕specific
  embeddings. Metric ``<attribute>/<part>/accuracy``.
- ``finegrained:<name>`` (``stanford_dogs``, ``oxford_pets``: the paper's) or ``finegrained:<kind>:<folder>``:
  every item queries all the others of the split; a hit shares its label. Metrics ``<part>/recall@1``, ``@5`` and
  ``<part>/mAP`` for the shared and shared⊕specific embeddings.
- ``fusion:<kind_a>+<kind_b>:<folder>``: items hold one input of each kind; probes of their label on each modality
  alone, on the two concatenated (``fused``) and on the sum of the unit shared embeddings (``sum``, ImageBind's
  embedding arithmetic). Metric ``<input>/<part>/accuracy``.

Layout (the benchmarks' conventions): ``<data-root>/<folder>/test/metadata.jsonl`` (or ``.csv``), one record per item
with ``file`` (relative to the split folder, a file of ``<kind>`` as `BenchmarkDefinition.local_schema` describes;
fusion: also ``paired_file`` of ``<kind_b>``, its extra fields prefixed ``paired_``) and ``label`` (fine-grained, fusion) or attribute fields (probe: every
field other than ``file``, ``paired_file``, ``id``, ``sampling_rate``, ``fps``, ``bbox``, ``depth_scale``). Labels are
class names or integers.

Example:

```python
>>> from codebind_hf.evaluation.analysis import parse_analysis
>>> task = parse_analysis("fusion:depth+image:sun_pairs")
>>> task.kind, task.input_kinds, task.folder
('fusion', ('depth', 'image'), 'sun_pairs')
>>> parse_analysis("in1k") is None
True

```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import PROCESSOR_ARGUMENT, BenchmarkDataError, _read_metadata, load_input
from .finegrained_sets import FINEGRAINED_SETS, describe_sources, read_finegrained
from .loop import choose_path, embed_all
from .suite import KIND_MODALITY

KINDS = ("probe", "finegrained", "fusion")
RESERVED_FIELDS = ("file", "paired_file", "id", "sampling_rate", "fps", "bbox", "depth_scale")
# The paper's fine-grained retrieval sets: input kind, display name, their Hugging Face datasets (readers of their own
# layouts and of the Hub: finegrained_sets).
FINEGRAINED = {name: ("image", spec.display_name, (spec.hub.dataset_id,)) for name, spec in FINEGRAINED_SETS.items()}
TASK_TYPES = {"probe": "linear-probe", "finegrained": "fine-grained-retrieval", "fusion": "fusion"}


@dataclass(frozen=True)
class AnalysisTask:
    """One analysis evaluation: its command-line ``name``, ``kind``, data ``folder`` and ``input_kinds``."""

    name: str
    kind: str
    folder: str
    input_kinds: tuple[str, ...]
    display_name: str
    hf_datasets: tuple[str, ...] = ()
    split: str = "test"

    @property
    def schema(self) -> str:
        fields = {"probe": "attribute fields (any other field)", "finegrained": "'label'",
                  "fusion": f"'paired_file' (a {self.input_kinds[-1]} file) and 'label'"}[self.kind]
        return (f"<root>/{self.folder}/{self.split}/metadata.jsonl (or .csv): one record per item with 'file' (a "
                f"{self.input_kinds[0]} file relative to the split folder) and {fields}")


def parse_analysis(name: str) -> AnalysisTask | None:
    """The task a ``--benchmarks`` entry names, or ``None`` when it is not an analysis name (no ``kind:`` prefix)."""
    kind, sep, rest = str(name).partition(":")
    if not sep or kind not in KINDS:
        return None
    parts = rest.split(":")
    if kind == "finegrained" and len(parts) == 1 and parts[0] in FINEGRAINED:
        input_kind, display, sources = FINEGRAINED[parts[0]]
        return AnalysisTask(name, kind, parts[0], (input_kind,), display, sources)
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{name!r}: expected {kind}:<kind>:<folder>" + (f" or {kind}:<name> with a name in {sorted(FINEGRAINED)}"
                         if kind == "finegrained" else "") + (" (kinds a+b for fusion)" if kind == "fusion" else ""))
    kinds = tuple(parts[0].split("+"))
    if len(kinds) != (2 if kind == "fusion" else 1) or any(k not in KIND_MODALITY for k in kinds):
        raise ValueError(f"{name!r}: input kind(s) {parts[0]!r} must be {'two kinds joined by +' if kind == 'fusion' else 'one kind'} "
                         f"of {sorted(KIND_MODALITY)}")
    return AnalysisTask(name, kind, parts[1], kinds, f"{kind} {parts[1]} ({parts[0]})")


# ---------------------------------------------------------------------------------------------- metrics
def probe_accuracy(features: torch.Tensor, labels, seed: int = 0, folds: int = 5) -> float:
    """Mean accuracy of a standardised logistic-regression probe over stratified ``folds``-fold CV (shuffled with
    ``seed``); ``folds`` is lowered to the size of the smallest class (at least 2 items per class are needed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    if smallest < 2:
        raise ValueError(f"a probe needs at least 2 items of every class; the smallest class has {smallest}")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    features = features.double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, dtype=np.float64)
    return float(np.mean(cross_val_score(probe, features, labels, cv=cv)))


def leave_one_out_retrieval(embeddings: torch.Tensor, labels, ks=(1, 5)) -> dict[str, float]:
    """Every item queries all others by cosine. ``mAP``: mean over queries of the average precision of the
    same-label items, ties counted as scikit-learn's ``average_precision_score`` does (one threshold per distinct
    score: quantised embeddings tie whenever two items get the same codes). ``recall@k``: a same-label item ranks in
    the top k even when every tie is broken against it. Queries without a same-label item are skipped."""
    x = F.normalize(embeddings.double(), dim=-1)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    recalls, aps = {k: [] for k in ks}, []
    for q in range(len(x)):
        others = np.delete(np.arange(len(x)), q)
        scores = (x[others] @ x[q]).numpy()
        relevant = codes[others] == codes[q]
        if not relevant.any():
            continue
        aps.append(_average_precision(scores, relevant))
        # worst-case rank of each relevant item: everything scoring higher, plus the non-relevant items tied with it
        higher = (scores[None, :] > scores[relevant, None]).sum(1)
        tied_wrong = ((scores[None, :] == scores[relevant, None]) & ~relevant[None, :]).sum(1)
        best = int((higher + tied_wrong).min()) + 1
        for k in ks:
            recalls[k].append(best <= k)
    if not aps:
        raise ValueError("no item shares its label with another: nothing to retrieve")
    return {**{f"recall@{k}": float(np.mean(v)) for k, v in recalls.items()}, "mAP": float(np.mean(aps))}


def _average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """``Σ_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, highest first."""
    order = np.argsort(-scores, kind="stable")
    s, r = scores[order], relevant[order]
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last position of each group of equal scores
    hits = np.cumsum(r)[ends]
    precision, recall = hits / (ends + 1), hits / r.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ---------------------------------------------------------------------------------------------- data
def read_items(task: AnalysisTask, data_root, use_hub: bool = False) -> list[dict]:
    """The task's records with their inputs' paths checked: ``{"where", "record", "paths": [path per input kind]}``
    (a named fine-grained set may also come in its own layout or, with ``use_hub``, from the Hub: `finegrained_sets`)."""
    folder = Path(data_root) / task.folder / task.split if data_root else None
    if folder is None or not folder.is_dir():
        named = task.kind == "finegrained" and task.folder in FINEGRAINED_SETS and task.hf_datasets
        items = read_finegrained(task.folder, data_root, task.split, use_hub) if named else None
        if items is not None:
            return items
        known = f"; {describe_sources(task.folder, task.split)}" if named else ""
        raise BenchmarkDataError(f"{task.name}: no folder {folder} (--data-root). Expected: {task.schema}{known}")
    metadata, records = _read_metadata(folder, task.schema)
    items = []
    for line_no, record in records:
        where = f"{metadata}:{line_no}"
        needed = ["file"] + (["paired_file"] if task.kind == "fusion" else []) + (["label"] if task.kind != "probe" else [])
        missing = [f for f in needed if f not in record]
        if missing:
            raise BenchmarkDataError(f"{where}: missing field(s) {missing}. Expected: {task.schema}")
        paths = [folder / str(record[f]) for f in ("file", "paired_file")[: len(task.input_kinds)]]
        for path in paths:
            if not path.exists():
                raise BenchmarkDataError(f"{where}: file {path} not found. Expected: {task.schema}")
        items.append({"where": where, "record": record, "paths": paths})
    return items


def _labels(items: list[dict], field: str) -> np.ndarray:
    values = [str(item["record"].get(field)) for item in items]
    return np.unique(values, return_inverse=True)[1]


class _Inputs:
    """Indexable example dicts of one input kind of the items, read lazily (what `embed_all` shards)."""

    def __init__(self, items: list[dict], position: int, kind: str):
        self.items, self.position, self.kind = items, position, kind

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        if "load" in item:  # an item of a Hub dataset: its image, decoded now
            return {"input": item["load"](), "sampling_rate": None, "fps": None}
        record = item["record"]
        if self.position:  # the paired input's own fields: paired_sampling_rate, paired_fps, paired_bbox ...
            record = {k[len("paired_"):]: v for k, v in record.items() if k.startswith("paired_")}
        value, rate = load_input(self.kind, item["paths"][self.position], record, item["where"])
        return {"input": value, "sampling_rate": rate if self.kind == "audio" else None, "fps": rate if self.kind == "video" else None}


def _processor_kwargs(kind: str, batch: list[dict]) -> dict:
    kwargs = {PROCESSOR_ARGUMENT[kind]: [e["input"] for e in batch]}
    if kind == "audio":
        kwargs["sampling_rate"] = [e["sampling_rate"] for e in batch]
    elif kind == "video":
        kwargs["video_fps"] = [e["fps"] for e in batch]
    return kwargs


def embed_parts(accelerator, model, processor, settings, items, position: int, kind: str, desc: str) -> dict:
    """``{"shared", "specific", "concat"}`` unit embeddings of one input of every item (``specific``/``concat``
    absent for a modality without a specific part); one pass: the parts are the halves of the concatenation."""
    modality = KIND_MODALITY[kind]
    decoupled = model.config.has_specific(modality)
    path = None
    if settings.quantize or decoupled:  # the path whose specific head / codebooks embed it (as --part concat would)
        path = choose_path(model, modality, dataclasses.replace(settings, part="concat"), desc)
        decoupled = decoupled and model.config.path_has_specific(path, modality)
    part = "concat" if decoupled else "shared"

    def encode(inputs):
        return model.get_features(modality, inputs, part=part, quantize=settings.quantize, path=path)

    embeds = embed_all(accelerator, _Inputs(items, position, kind), lambda b: processor(**_processor_kwargs(kind, b)),
                       encode, settings, desc)
    if not decoupled:
        return {"shared": embeds}
    width = model.config.embed_dim
    # concat = [s | p] / sqrt(2) for unit s and p, so each half re-normalised is that part exactly
    return {"shared": F.normalize(embeds[:, :width], dim=-1), "specific": F.normalize(embeds[:, width:], dim=-1),
            "concat": embeds}


def evaluate_task(task: AnalysisTask, accelerator, model, processor, settings, data_root, seed: int = 0,
                  use_hub: bool = False) -> dict | None:
    """The task's metrics on the main process (``None`` on the others, which help embed)."""
    items = read_items(task, data_root, use_hub)
    if settings.limit:
        items = items[: settings.limit]
    embeds = [embed_parts(accelerator, model, processor, settings, items, i, kind, f"{task.name}/{kind}")
              for i, kind in enumerate(task.input_kinds)]
    if not accelerator.is_main_process:
        return None
    out: dict[str, float] = {}
    if task.kind == "probe":
        attributes = sorted({k for item in items for k in item["record"] if k not in RESERVED_FIELDS and not k.startswith("paired_")})
        if not attributes:
            raise BenchmarkDataError(f"{task.name}: the records have no attribute field to probe. Expected: {task.schema}")
        for attribute in attributes:
            labels = _labels(items, attribute)
            for part, features in embeds[0].items():
                out[f"{attribute}/{part}/accuracy"] = probe_accuracy(features, labels, seed)
    elif task.kind == "finegrained":
        labels = _labels(items, "label")
        for part in ("shared", "concat"):
            if part in embeds[0]:
                out.update({f"{part}/{m}": v for m, v in leave_one_out_retrieval(embeds[0][part], labels).items()})
    else:
        labels = _labels(items, "label")
        a, b = embeds
        names = task.input_kinds
        for part in ("shared", "concat"):
            for name, features in ((names[0], a.get(part)), (names[1], b.get(part))):
                if features is not None:
                    out[f"{name}/{part}/accuracy"] = probe_accuracy(features, labels, seed)
            if part in a and part in b:
                out[f"fused/{part}/accuracy"] = probe_accuracy(torch.cat([a[part], b[part]], -1), labels, seed)
        out["sum/shared/accuracy"] = probe_accuracy(F.normalize(a["shared"] + b["shared"], dim=-1), labels, seed)
    return out


__all__ = ["KINDS", "FINEGRAINED", "TASK_TYPES", "AnalysisTask", "parse_analysis", "probe_accuracy",
           "leave_one_out_retrieval", "read_items", "embed_parts", "evaluate_task"]
