"""The demo's metrics, on held-out voices and held-out images.

- zero-shot digit accuracy of audio against class prompts (class embedding = mean of its prompt embeddings);
- audio->image and audio->text retrieval Recall@1/@5 (a hit is a retrieved item of the query's digit);
- the modality gap: distance between the centroids of the audio and the image (text) shared embeddings;
- linear probes (5-fold stratified CV, scikit-learn ``LogisticRegression``) for voice, speed and pitch from
  shared, specific and concatenated audio embeddings — attributes the bridges never see;
- codebook usage (fraction of codes used) and perplexity of every codebook of the path, over all tokens the
  codebooks quantise on the evaluation data.

Every metric is a plain function of tensors, so it can be checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation.analysis import probe_accuracy  # the benchmark runner's probes: one implementation
from ..evaluation.zero_shot import class_embeddings
from ..modeling_codebind import CodeBindModel
from .data import DemoData
from .train import ARM_SWITCHES, PATH

# Which arms' embeddings pass codebooks / have a specific part (the baseline: neither).
QUANTIZED_ARMS = tuple(arm for arm, switches in ARM_SWITCHES.items() if switches.get("use_codebooks", True))
DECOUPLED_ARMS = tuple(arm for arm, switches in ARM_SWITCHES.items() if switches.get("use_decoupling", True))
META_COLUMNS = {"digit": 0, "voice": 1, "speed": 2, "pitch": 3}


@dataclass
class ArmEmbeddings:
    """Unit embeddings of the evaluation data under one trained arm (specific/concat ``None`` without decoupling)."""

    audio_shared: torch.Tensor
    audio_specific: torch.Tensor | None
    audio_concat: torch.Tensor | None
    image_shared: torch.Tensor
    text_shared: torch.Tensor


@torch.no_grad()
def embed_arm(
    model: CodeBindModel, arm: str, data: DemoData, batch_size: int = 256, quantize: bool | None = None
) -> ArmEmbeddings:
    """Embed test audio, test images and all prompts.

    Codebook arms use quantised embeddings (the model's default) unless ``quantize=False``, which gives the
    normalised head outputs before the codebooks.
    """
    model.eval()
    quantize = arm in QUANTIZED_ARMS if quantize is None else quantize and arm in QUANTIZED_ARMS

    def run(modality: str, inputs: torch.Tensor, part: str = "shared") -> torch.Tensor:
        chunks = [model.get_features(modality, x, part=part, quantize=quantize) for x in inputs.split(batch_size)]
        return torch.cat(chunks)

    prompts = torch.arange(len(data.prompts))[:, None]
    shared = run("audio", data.audio_test)
    specific = run("audio", data.audio_test, "specific") if arm in DECOUPLED_ARMS else None
    concat = F.normalize(torch.cat([shared, specific], -1), dim=-1) if specific is not None else None
    return ArmEmbeddings(shared, specific, concat, run("vision", data.images_test), run("text", prompts))


def zero_shot_accuracy(queries: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> float:
    """Fraction of ``queries`` `(N, D)` whose most similar class embedding `(C, D)` is their label `(N,)`."""
    if queries.shape[0] != labels.shape[0]:
        raise ValueError(f"queries and labels must have the same length, got {queries.shape[0]} and {labels.shape[0]}")
    return float(((queries @ classes.t()).argmax(-1) == labels).float().mean())


def recall_at_k(
    queries: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor, ks=(1, 5)
) -> dict[int, float]:
    """Category-level Recall@k: a query hits if one of its ``k`` nearest gallery items shares its label."""
    top = (queries @ gallery.t()).topk(max(ks), dim=-1).indices  # (N, max k)
    hits = gallery_labels[top] == query_labels[:, None]
    return {k: float(hits[:, :k].any(-1).float().mean()) for k in ks}


def modality_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Distance between the centroids of two sets of unit embeddings, ``||mean(a) - mean(b)||`` (the "modality
    gap" of Liang et al., 2022): 0 when the modalities share one region of the space."""
    return float((a.mean(0) - b.mean(0)).norm())


@torch.no_grad()
def codebook_indices(model: CodeBindModel, data: DemoData, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Indices every codebook of the path assigns on the evaluation data, all tokens (CLS and patches) included."""
    books = model.quantizers[PATH]
    found: dict[str, list[torch.Tensor]] = {name: [] for name in books.codebooks()}
    inputs = {"text": torch.arange(len(data.prompts))[:, None], "vision": data.images_test, "audio": data.audio_test}
    for modality, tensor in inputs.items():
        for x in tensor.split(batch_size):
            hidden = model.towers[modality](x).last_hidden_state
            found["shared"].append(books.shared(model.shared_heads[modality](hidden)).indices.flatten())
            if modality in books.specific:
                specific = model.specific_heads[PATH][modality](hidden)
                found[f"specific.{modality}"].append(books.specific[modality](specific).indices.flatten())
    return {name: torch.cat(chunks) for name, chunks in found.items() if chunks}


def codebook_stats(model: CodeBindModel, data: DemoData) -> dict[str, dict]:
    """``{codebook: {"usage", "perplexity", "size", "counts"}}`` over the evaluation data (``counts``: assignments
    per code, `(size,)`)."""
    books = model.quantizers[PATH].codebooks()
    stats = {}
    for name, indices in codebook_indices(model, data).items():
        book = books[name]
        stats[name] = {"usage": book.usage(indices), "perplexity": book.perplexity(indices), "size": book.codebook_size,
                       "counts": torch.bincount(indices.flatten(), minlength=book.codebook_size)}  # fmt: skip
    return stats


def evaluate_arm(
    model: CodeBindModel, arm: str, data: DemoData, seed: int = 0
) -> tuple[dict[str, float | None], ArmEmbeddings, dict[str, dict] | None]:
    """All metrics of one trained arm (``None`` where the arm has no such part), its embeddings, and its
    [`codebook_stats`] (``None`` for an arm without codebooks)."""
    emb = embed_arm(model, arm, data)
    meta = data.audio_test_meta
    digits = meta[:, META_COLUMNS["digit"]]
    classes = class_embeddings(emb.text_shared, data.prompt_labels)
    to_image = recall_at_k(emb.audio_shared, digits, emb.image_shared, data.image_test_labels)
    to_text = recall_at_k(emb.audio_shared, digits, emb.text_shared, data.prompt_labels)
    # The bridge's own image zero-shot (unquantised images and prompts): the same for every arm of a seed, since every
    # arm freezes the same stage-0 bridge; through a codebook arm's trained codebook it is a property of that arm.
    raw = embed_arm(model, arm, data, quantize=False) if arm in QUANTIZED_ARMS else emb
    raw_classes = class_embeddings(raw.text_shared, data.prompt_labels)
    metrics: dict[str, float | None] = {
        "zero_shot_acc": zero_shot_accuracy(emb.audio_shared, digits, classes),
        "image_zero_shot_acc": zero_shot_accuracy(raw.image_shared, data.image_test_labels, raw_classes),
        "image_zero_shot_acc_quantized": (zero_shot_accuracy(emb.image_shared, data.image_test_labels, classes)
                                          if arm in QUANTIZED_ARMS else None),
        "audio_to_image_r1": to_image[1],
        "audio_to_image_r5": to_image[5],
        "audio_to_text_r1": to_text[1],
        "audio_to_text_r5": to_text[5],
        "modality_gap_audio_image": modality_gap(emb.audio_shared, emb.image_shared),
        "modality_gap_audio_text": modality_gap(emb.audio_shared, emb.text_shared),
    }
    parts = {"shared": emb.audio_shared, "specific": emb.audio_specific, "concat": emb.audio_concat}
    for attribute in ("voice", "speed", "pitch"):
        labels = meta[:, META_COLUMNS[attribute]]
        for part, features in parts.items():
            metrics[f"probe_{attribute}_{part}"] = None if features is None else probe_accuracy(features, labels, seed)
    if arm in QUANTIZED_ARMS:
        # The same metrics before the codebooks (``get_features(..., quantize=False)``): what quantisation costs.
        metrics["zero_shot_acc_prequant"] = zero_shot_accuracy(raw.audio_shared, digits, raw_classes)
        raw_parts = {"shared": raw.audio_shared, "specific": raw.audio_specific, "concat": raw.audio_concat}
        for attribute in ("voice", "speed"):
            labels = meta[:, META_COLUMNS[attribute]]
            for part, features in raw_parts.items():
                metrics[f"probe_{attribute}_{part}_prequant"] = None if features is None else probe_accuracy(features, labels, seed)
        stats = codebook_stats(model, data)
        metrics["codebook_usage"] = float(np.mean([s["usage"] for s in stats.values()]))
        for name, s in stats.items():
            metrics[f"codebook_usage_{name}"] = s["usage"]
            metrics[f"codebook_perplexity_{name}"] = s["perplexity"]
    else:  # the same keys for every arm (None: no codebook, so nothing before or after it)
        stats = None
        metrics["zero_shot_acc_prequant"] = metrics["codebook_usage"] = None
        for attribute in ("voice", "speed"):
            for part in ("shared", "specific", "concat"):
                metrics[f"probe_{attribute}_{part}_prequant"] = None
    return metrics, emb, stats


def aggregate(per_seed: list[dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """``{metric: {"mean", "std"}}`` over seeds (sample std; 0 for one seed; ``None`` for metrics an arm lacks)."""
    out = {}
    for name in per_seed[0]:
        values = [run[name] for run in per_seed]
        if any(v is None for v in values):
            out[name] = {"mean": None, "std": None}
        else:
            arr = np.asarray(values, dtype=float)
            out[name] = {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}
    return out


__all__ = [
    "QUANTIZED_ARMS",
    "DECOUPLED_ARMS",
    "ArmEmbeddings",
    "embed_arm",
    "class_embeddings",
    "zero_shot_accuracy",
    "recall_at_k",
    "modality_gap",
    "probe_accuracy",
    "codebook_indices",
    "codebook_stats",
    "evaluate_arm",
    "aggregate",
]
