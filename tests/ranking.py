"""Comparing top-k results without depending on the order of ties (items with equal scores, e.g. equal codes) or
on the last bits of a platform's float sums."""

import torch


def assert_same_topk(ids, scores, reference: torch.Tensor, names, atol: float = 1e-5) -> None:
    """``ids``/``scores`` (one row per query) are a correct top-k of ``reference`` (queries x items, item ``j``
    named ``names[j]``): the k best reference scores, each returned id carrying its own reference score. Which of
    several tied items comes first (or is in at the k-th place) is left open."""
    scores = torch.as_tensor(scores)
    k = scores.shape[1]
    column = {name: j for j, name in enumerate(names)}
    for row, (row_ids, row_scores) in enumerate(zip(ids, scores)):
        assert len(set(row_ids)) == k, f"query {row}: repeated ids {row_ids}"
        best = reference[row].topk(k).values
        assert torch.allclose(row_scores, best, atol=atol), f"query {row}: scores {row_scores} vs best {best}"
        own = reference[row, [column[i] for i in row_ids]]
        assert torch.allclose(own, row_scores, atol=atol), f"query {row}: ids {row_ids} carry scores {own}, not {row_scores}"
        assert bool((row_scores[:-1] >= row_scores[1:] - atol).all()), f"query {row}: not in descending order"
