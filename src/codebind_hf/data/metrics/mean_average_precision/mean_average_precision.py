"""`evaluate` metric: macro mean average precision of multi-label scores (wraps
``codebind_hf.evaluation.metrics``).

```python
>>> import evaluate  # doctest: +SKIP
>>> metric = evaluate.load("src/codebind_hf/data/metrics/mean_average_precision")  # from a checkout  # doctest: +SKIP
>>> metric.compute(predictions=[[0.9, 0.2], [0.1, 0.8]], references=[[1, 0], [0, 1]])  # doctest: +SKIP
{'mAP': 1.0}

```
"""

import datasets
import evaluate

from codebind_hf.evaluation.metrics import mean_average_precision

_DESCRIPTION = """Mean average precision (AudioSet protocol): average precision per class, averaged over the classes
with at least one positive example. Tied scores form one threshold, as in scikit-learn's average_precision_score.
The value is a fraction in [0, 1]."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of lists of float, shape (N, C)): scores per sample and class.
    references (list of lists of int, shape (N, C)): multi-hot relevance, 0 or 1.
Returns:
    mAP (float): macro mean of the per-class average precision over the classes with a positive.
"""

_CITATION = """@inproceedings{gemmeke2017audioset,
  title={Audio Set: An ontology and human-labeled dataset for audio events},
  author={Gemmeke, Jort F. and others},
  booktitle={ICASSP},
  year={2017}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanAveragePrecision(evaluate.Metric):
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

    def _compute(self, predictions, references):
        return {"mAP": mean_average_precision(predictions, references)}
