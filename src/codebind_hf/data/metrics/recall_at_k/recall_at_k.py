"""`evaluate` metric: Recall@k for cross-modal retrieval with several relevant items per query (wraps
``codebind_hf.evaluation.metrics``).

```python
>>> import evaluate  # doctest: +SKIP
>>> metric = evaluate.load("src/codebind_hf/data/metrics/recall_at_k")  # from a checkout  # doctest: +SKIP
>>> metric.compute(predictions=[[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]], references=[[2], [0, 2]], k=[1, 2])  # doctest: +SKIP
{'recall@1': 0.0, 'recall@2': 1.0}

```
"""

import datasets
import evaluate

from codebind_hf.evaluation.metrics import recall_at_k

_DESCRIPTION = """Recall@k for retrieval: a query is a hit when any of its relevant gallery items is among its k most
similar items (several captions per clip, as in Clotho, AudioCaps and MSR-VTT). Ties are broken by the lower
gallery index. Text-to-item and item-to-text retrieval are two calls, with the similarity matrix transposed and the
relevance lists inverted. Values are fractions in [0, 1]."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of lists of float, shape (Q, G)): similarity of each query to each gallery item.
    references (list of lists of int, length Q): the relevant gallery indices of each query (at least one each;
        lists may have different lengths).
    k (int or list of int, optional, defaults to [1, 10]): cut-offs, each at most G.
Returns:
    recall@<k> (float): one entry per cut-off.
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RecallAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 10)):
        return recall_at_k(predictions, references, k=k)
