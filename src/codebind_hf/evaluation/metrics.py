"""Plain NumPy metrics of the benchmark suite; the `evaluate` modules in ``metrics/`` are thin wrappers over these.

All values are fractions in ``[0, 1]`` (the paper's tables print percentages).

- `top_k_accuracy`: the label is among the ``k`` highest scores. Ties are broken by the lower class index (the
  order of a stable sort of ``-scores``), so with ``k=1`` the prediction is ``argmax`` (first maximum).
- `mean_average_precision`: average precision per class, macro-averaged over the classes with at least one
  positive example (the AudioSet protocol); tied scores form one threshold, as in scikit-learn's
  ``average_precision_score``, so the value does not depend on the order of tied items.
- `recall_at_k`: a query is a hit when any of its relevant gallery items is among its ``k`` most similar items
  (several captions per clip, as in Clotho, AudioCaps, MSR-VTT); ties are broken by the lower gallery index.
  Text-to-item and item-to-text retrieval are two calls with the similarity matrix transposed.

Example:

```python
>>> import numpy as np
>>> top_k_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), [1, 1])
0.5
>>> recall_at_k(np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]]), [[2], [0, 2]], k=[1, 2])
{'recall@1': 0.0, 'recall@2': 1.0}

```
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _scores(scores, name: str = "predictions") -> np.ndarray:
    array = np.asarray(scores)
    if array.dtype == object:
        raise ValueError(f"{name} must be a rectangular 2-D array of numbers (rows of equal length)")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_queries, num_candidates); got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); expected at least one row and one column")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).argmax())
        raise ValueError(f"{name} contain NaN or inf (first in row {bad})")
    return array


def _ks(k, limit: int, what: str) -> list[int]:
    values = [k] if isinstance(k, (int, np.integer)) else list(k)
    if not values:
        raise ValueError("k is empty; expected a positive integer or a list of them")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"k must be positive integers, got {value!r}")
        if value > limit:
            raise ValueError(f"k={value} exceeds the number of {what} ({limit})")
    return [int(v) for v in values]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """``ranks[i, j]``: position of column ``j`` when row ``i`` is sorted by descending score, ties by lower index."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(scores.shape[0], 0), axis=1)
    return ranks


def top_k_accuracy(scores, labels, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores.

    Args:
        scores (`np.ndarray` of shape `(num_samples, num_classes)`): class scores (any monotone scale).
        labels (`np.ndarray` of shape `(num_samples,)`): integer labels in ``[0, num_classes)``.
        k (`int`, *optional*, defaults to 1): how many top classes count; at most ``num_classes``.
    """
    scores = _scores(scores)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"references must be 1-D with one label per row of predictions ({scores.shape[0]}); got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise ValueError(f"references must be integer class indices, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}) (num_classes from predictions); got range [{labels.min()}, {labels.max()}]")
    (k,) = _ks(k, scores.shape[1], "classes")
    ranks = _ranks(scores)[np.arange(len(labels)), labels]
    return float((ranks < k).mean())


def average_precision_per_class(scores, targets) -> np.ndarray:
    """Average precision of each class (column); ``nan`` for a class without a positive example.

    AP = Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds of the class, descending (scikit-learn's
    definition), so tied scores enter together.

    Args:
        scores (`np.ndarray` of shape `(num_samples, num_classes)`): scores per class.
        targets (`np.ndarray` of shape `(num_samples, num_classes)`): multi-hot 0/1 (or boolean) relevance.

    Returns:
        `np.ndarray` of shape `(num_classes,)`.
    """
    scores = _scores(scores)
    targets = np.asarray(targets)
    if targets.shape != scores.shape:
        raise ValueError(f"references must be multi-hot with the shape of predictions {scores.shape}; got {targets.shape}")
    if targets.dtype != bool:
        if not (np.issubdtype(targets.dtype, np.number) and np.isin(targets, (0, 1)).all()):
            raise ValueError("references must be multi-hot: only 0 and 1 (or booleans)")
    targets = targets.astype(bool)
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        positives = int(targets[:, c].sum())
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        ranked, hits = scores[order, c], targets[order, c]
        true_pos = np.cumsum(hits)
        # The last position of each run of equal scores is one threshold.
        last = np.r_[np.nonzero(np.diff(ranked))[0], len(ranked) - 1]
        precision = true_pos[last] / (last + 1)
        recall = true_pos[last] / positives
        out[c] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


def mean_average_precision(scores, targets) -> float:
    """Macro mean of `average_precision_per_class` over the classes with at least one positive example."""
    per_class = average_precision_per_class(scores, targets)
    if np.isnan(per_class).all():
        raise ValueError("no class has a positive example in references; mAP is undefined")
    return float(np.nanmean(per_class))


def recall_at_k(similarity, relevant: Sequence[Sequence[int]], k=(1, 10)) -> dict[str, float]:
    """Fraction of queries with at least one relevant gallery item among their ``k`` most similar items.

    Args:
        similarity (`np.ndarray` of shape `(num_queries, num_gallery)`): query-to-gallery similarity.
        relevant (list of `num_queries` lists of `int`): the relevant gallery indices of each query (at least one).
        k (`int` or list of `int`, *optional*, defaults to `(1, 10)`): cut-offs, each at most ``num_gallery``.

    Returns:
        `dict` with one ``"recall@<k>"`` entry per cut-off.
    """
    similarity = _scores(similarity)
    num_queries, num_gallery = similarity.shape
    if isinstance(relevant, np.ndarray) and relevant.ndim == 1 and relevant.dtype != object:
        relevant = relevant[:, None]
    if len(relevant) != num_queries:
        raise ValueError(f"references must give the relevant gallery indices of each of the {num_queries} queries; got {len(relevant)} entries")
    best = np.empty(num_queries, dtype=np.int64)
    ranks = _ranks(similarity)
    for q, items in enumerate(relevant):
        items = np.atleast_1d(np.asarray(items))
        if items.size == 0:
            raise ValueError(f"query {q} has no relevant gallery item; every query needs at least one")
        if not np.issubdtype(items.dtype, np.integer) or items.min() < 0 or items.max() >= num_gallery:
            raise ValueError(f"query {q}: relevant indices must be integers in [0, {num_gallery}); got {items.tolist()}")
        best[q] = ranks[q, items].min()
    return {f"recall@{value}": float((best < value).mean()) for value in _ks(k, num_gallery, "gallery items")}


__all__ = ["top_k_accuracy", "average_precision_per_class", "mean_average_precision", "recall_at_k"]
