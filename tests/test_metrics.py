"""Benchmark metrics: parity with scikit-learn and brute force, documented tie handling, errors, evaluate wrappers,
and the zero-shot helpers of `codebind_hf.evaluation.zero_shot`."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, top_k_accuracy_score

from codebind_hf.evaluation.metrics import (
    average_precision_per_class,
    mean_average_precision,
    recall_at_k,
    top_k_accuracy,
)
from codebind_hf.evaluation.suite import BENCHMARKS, load_metric
from codebind_hf.evaluation.zero_shot import (
    build_prompts,
    expand_prompt_names,
    load_class_names,
    load_prompt_names,
    load_templates,
    zero_shot_classifier,
    zero_shot_scores,
)

SHAPES = [(50, 10), (200, 3), (17, 100), (1, 5)]


# ------------------------------------------------------------------ top-k accuracy
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_top_k_accuracy_matches_sklearn(seed, shape):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(shape)
    labels = rng.integers(0, shape[1], shape[0])
    assert top_k_accuracy(scores, labels, k=1) == accuracy_score(labels, scores.argmax(1))
    for k in [k for k in (2, 3) if k < shape[1]]:
        expected = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(shape[1]))
        assert top_k_accuracy(scores, labels, k=k) == pytest.approx(expected, abs=1e-12)


def test_top_k_accuracy_ties_go_to_the_lower_class_index():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    # Row 0 predicts class 0, row 1 class 1, row 2 class 0 at k=1; the second slot is the next index.
    assert top_k_accuracy(scores, [0, 1, 0], k=1) == 1.0
    assert top_k_accuracy(scores, [1, 2, 2], k=1) == 0.0
    assert top_k_accuracy(scores, [1, 2, 1], k=2) == 1.0
    assert top_k_accuracy(scores, [1, 2, 2], k=2) == pytest.approx(2 / 3)
    assert top_k_accuracy(np.zeros((4, 5)), [0, 0, 1, 4], k=1) == 0.5
    assert top_k_accuracy(np.zeros((4, 5)), [0, 0, 1, 4], k=5) == 1.0


@pytest.mark.parametrize(
    "scores, labels, k, message",
    [
        ([[0.1, np.nan]], [0], 1, "NaN"),
        ([[0.1, np.inf]], [0], 1, "NaN or inf"),
        (np.zeros((0, 3)), [], 1, "empty"),
        (np.zeros(3), [0], 1, "2-D"),
        (np.zeros((2, 3)), [0], 1, "one label per row"),
        (np.zeros((2, 3)), [0, 3], 1, r"\[0, 3\)"),
        (np.zeros((2, 3)), [0, -1], 1, r"\[0, 3\)"),
        (np.zeros((2, 3)), [0.5, 1], 1, "integer"),
        (np.zeros((2, 3)), [0, 1], 4, "exceeds the number of classes"),
        (np.zeros((2, 3)), [0, 1], 0, "positive"),
    ],
)
def test_top_k_accuracy_errors(scores, labels, k, message):
    with pytest.raises(ValueError, match=message):
        top_k_accuracy(scores, labels, k=k)


# ------------------------------------------------------------------ mean average precision
def _sklearn_map(scores, targets):
    present = targets.sum(0) > 0
    return average_precision_score(targets[:, present], scores[:, present], average="macro")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(60, 8), (200, 30), (9, 4)])
@pytest.mark.parametrize("tied", [False, True])
def test_map_matches_sklearn_over_present_classes(seed, shape, tied):
    rng = np.random.default_rng(seed)
    scores = rng.random(shape)
    if tied:  # few distinct values: many ties, which sklearn treats as one threshold
        scores = np.round(scores, 1)
    targets = (rng.random(shape) < 0.2).astype(int)
    targets[:, 0] = 0  # a class with no positive is skipped
    targets[0, 1] = 1
    assert np.isnan(average_precision_per_class(scores, targets)[0])
    assert mean_average_precision(scores, targets) == pytest.approx(_sklearn_map(scores, targets), abs=1e-12)
    per_class = average_precision_per_class(scores, targets)
    for c in range(1, shape[1]):
        if targets[:, c].any():
            assert per_class[c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]), abs=1e-12)


def test_map_hand_computed_and_order_independent_under_ties():
    # Positives at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
    scores = np.array([[0.9], [0.8], [0.7]])
    assert mean_average_precision(scores, [[1], [0], [1]]) == pytest.approx(5 / 6)
    # Two items tied at the top, one positive: one threshold with precision 1/2.
    tied = np.array([[0.5, 0.1], [0.5, 0.9]])
    assert average_precision_per_class(tied, [[1, 0], [0, 1]])[0] == pytest.approx(0.5)
    assert average_precision_per_class(tied[::-1], [[0, 1], [1, 0]])[0] == pytest.approx(0.5)
    # Empty class 1 skipped: the mean is over classes 0 and 2 only.
    scores = np.array([[0.9, 0.3, 0.1], [0.1, 0.2, 0.8]])
    assert mean_average_precision(scores, np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)) == 1.0


@pytest.mark.parametrize(
    "targets, message",
    [
        (np.zeros((2, 3)), "no class has a positive"),
        (np.zeros((2, 2)), "shape of predictions"),
        (np.full((2, 3), 2), "only 0 and 1"),
    ],
)
def test_map_errors(targets, message):
    with pytest.raises(ValueError, match=message):
        mean_average_precision(np.zeros((2, 3)), targets)


# ------------------------------------------------------------------ recall@k
def _brute_force_recall(similarity, relevant, k):
    hits = 0
    for q, row in enumerate(similarity):
        ranking = sorted(range(len(row)), key=lambda j: (-row[j], j))
        hits += any(j in relevant[q] for j in ranking[:k])
    return hits / len(similarity)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(40, 12), (25, 60), (7, 7), (3, 100)])
def test_recall_matches_brute_force(seed, shape):
    rng = np.random.default_rng(seed)
    similarity = rng.standard_normal(shape)
    if seed == 2:
        similarity = np.round(similarity, 0)  # many ties, broken by the lower gallery index
    relevant = [sorted(set(rng.integers(0, shape[1], rng.integers(1, 4)).tolist())) for _ in range(shape[0])]
    ks = [1, 5, min(10, shape[1])]
    result = recall_at_k(similarity, relevant, k=ks)
    assert list(result) == [f"recall@{k}" for k in ks]
    for k in ks:
        assert result[f"recall@{k}"] == pytest.approx(_brute_force_recall(similarity, relevant, k), abs=1e-12)


def test_recall_both_directions_and_ties():
    # 2 clips, 3 captions: captions 0, 1 describe clip 0, caption 2 clip 1.
    text_to_clip = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.4]])
    assert recall_at_k(text_to_clip, [[0], [0], [1]], k=[1, 2]) == {"recall@1": 2 / 3, "recall@2": 1.0}
    assert recall_at_k(text_to_clip.T, [[0, 1], [2]], k=1) == {"recall@1": 0.5}
    # All similarities equal: item j sits at position j.
    flat = np.zeros((1, 5))
    assert recall_at_k(flat, [[3]], k=[3, 4]) == {"recall@3": 0.0, "recall@4": 1.0}
    assert recall_at_k(flat, np.array([0]), k=1) == {"recall@1": 1.0}


@pytest.mark.parametrize(
    "relevant, k, message",
    [
        ([[0], []], 1, "no relevant gallery item"),
        ([[0], [5]], 1, r"\[0, 3\)"),
        ([[0]], 1, "each of the 2 queries"),
        ([[0], [1]], 4, "exceeds the number of gallery items"),
        ([[0], [1]], [], "k is empty"),
    ],
)
def test_recall_errors(relevant, k, message):
    with pytest.raises(ValueError, match=message):
        recall_at_k(np.zeros((2, 3)), relevant, k=k)


# ------------------------------------------------------------------ evaluate wrappers
@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name) for name in ("zero_shot_accuracy", "mean_average_precision", "recall_at_k")}


def test_evaluate_modules_match_the_functions(metrics):
    rng = np.random.default_rng(7)
    scores, labels = rng.standard_normal((30, 6)), rng.integers(0, 6, 30)
    for k in (1, 3):
        result = metrics["zero_shot_accuracy"].compute(predictions=scores, references=labels, k=k)
        assert result == {"accuracy": top_k_accuracy(scores, labels, k=k)}

    targets = (rng.random((30, 6)) < 0.3).astype(int)
    targets[:, 2] = 0
    result = metrics["mean_average_precision"].compute(predictions=scores, references=targets)
    assert result["mAP"] == mean_average_precision(scores, targets)
    assert result["mAP"] == pytest.approx(_sklearn_map(scores, targets), abs=1e-12)

    relevant = [[int(i)] for i in rng.integers(0, 6, 30)]
    relevant[0] = [1, 4, 5]  # variable-length relevance lists
    metric = metrics["recall_at_k"]
    assert metric.compute(predictions=scores, references=relevant, k=[1, 5]) == recall_at_k(scores, relevant, k=[1, 5])
    metric.add_batch(predictions=scores[:10], references=relevant[:10])
    metric.add_batch(predictions=scores[10:], references=relevant[10:])
    assert metric.compute(k=[1, 5]) == recall_at_k(scores, relevant, k=[1, 5])


def test_evaluate_modules_raise_the_function_errors(metrics):
    with pytest.raises(ValueError, match="NaN"):
        metrics["zero_shot_accuracy"].compute(predictions=[[0.1, float("nan")]], references=[0])
    with pytest.raises(ValueError, match="no relevant gallery item"):
        metrics["recall_at_k"].compute(predictions=[[0.1, 0.2]], references=[[]], k=[1])


def test_definition_metrics_use_the_same_numbers(metrics):
    rng = np.random.default_rng(3)
    scores, labels = rng.standard_normal((20, 40)), rng.integers(0, 40, 20)
    values = BENCHMARKS["modelnet40"].compute_metrics(scores, labels)
    assert values == {"accuracy@1": top_k_accuracy(scores, labels, 1), "accuracy@5": top_k_accuracy(scores, labels, 5)}
    for (path, kwargs), (name, value) in zip(BENCHMARKS["modelnet40"].metric_modules(), values.items()):
        assert path.endswith("zero_shot_accuracy")
        assert metrics["zero_shot_accuracy"].compute(predictions=scores, references=labels, **kwargs)["accuracy"] == value
    similarity, relevant = rng.standard_normal((12, 20)), [[i] for i in range(12)]
    assert BENCHMARKS["clotho"].compute_metrics(similarity, relevant) == recall_at_k(similarity, relevant, k=[1, 10])
    assert BENCHMARKS["msrvtt"].compute_metrics(similarity, relevant) == recall_at_k(similarity, relevant, k=1)
    multi_hot = (rng.random((20, 527)) < 0.05).astype(int)
    multi_hot[0, 0] = 1
    audio_scores = rng.standard_normal((20, 527))
    assert BENCHMARKS["audioset"].compute_metrics(audio_scores, multi_hot) == {"mAP": mean_average_precision(audio_scores, multi_hot)}


# ------------------------------------------------------------------ zero-shot helpers
def test_build_prompts_and_shipped_templates():
    assert build_prompts(["dog", "sea waves"], load_templates("sound")) == [
        ["The sound of dog.", "This is the sound of dog.", "A sound of dog.", "This is a sound of dog."],
        ["The sound of sea waves.", "This is the sound of sea waves.", "A sound of sea waves.", "This is a sound of sea waves."],
    ]
    assert load_templates("openai_imagenet")[0] == "a bad photo of a {}." and len(load_templates("openai_imagenet")) == 80
    with pytest.raises(ValueError, match="exactly one"):
        build_prompts(["dog"], ["a {} and a {}"])
    with pytest.raises(ValueError, match="non-empty list"):
        build_prompts(["dog"], "a photo of a {}.")
    with pytest.raises(KeyError, match="unknown template list"):
        load_templates("nope")
    with pytest.raises(KeyError, match="no class list"):
        load_class_names("nope")


def test_zero_shot_classifier_is_the_normalised_mean_of_normalised_prompts():
    prompts = torch.tensor([[[3.0, 4.0], [0.0, 2.0]], [[1.0, 0.0], [-1.0, 0.0]]])
    classifier = zero_shot_classifier(prompts[:1])
    mean = torch.tensor([0.6 + 0.0, 0.8 + 1.0]) / 2
    torch.testing.assert_close(classifier[0], mean / mean.norm())
    ragged = zero_shot_classifier([torch.randn(5, 8), torch.randn(2, 8)])
    torch.testing.assert_close(ragged.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="finite"):
        zero_shot_classifier(torch.full((1, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="differs"):
        zero_shot_classifier([torch.randn(2, 4), torch.randn(2, 5)])


def test_zero_shot_scores_reduce_names_by_class_max():
    names, class_index = expand_prompt_names(load_prompt_names("nyu_d"))
    assert len(names) == 27 and class_index.tolist() == list(range(9)) + [9] * 18
    rows = torch.eye(4)
    embeddings = torch.tensor([[0.0, 0.0, 2.0, 0.1], [1.0, 0.0, 0.0, 0.0]])
    scores = zero_shot_scores(embeddings, rows, class_index=torch.tensor([0, 1, 1, 1]))
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    torch.testing.assert_close(scores, torch.stack([unit[:, 0], unit[:, 1:].max(1).values], 1))
    with pytest.raises(ValueError, match="cover every class"):
        zero_shot_scores(embeddings, rows, class_index=torch.tensor([0, 2, 2, 2]))
    with pytest.raises(ValueError, match="does not match"):
        zero_shot_scores(embeddings, torch.eye(3))
