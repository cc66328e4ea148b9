"""`evaluate` metric: top-k accuracy of zero-shot class scores (wraps ``codebind_hf.evaluation.metrics``).

Load it by path (the Hugging Face Hub is not needed):

```python
>>> import evaluate  # doctest: +SKIP
>>> metric = evaluate.load("src/codebind_hf/data/metrics/zero_shot_accuracy")  # from a checkout  # doctest: +SKIP
>>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], k=1)  # doctest: +SKIP
{'accuracy': 0.5}

```
"""

import datasets
import evaluate

from codebind_hf.evaluation.metrics import top_k_accuracy

_DESCRIPTION = """Top-k accuracy of zero-shot classification: a sample is correct when its label is among the k classes
with the highest scores. Ties are broken by the lower class index (a stable sort of the negated scores), so k=1 is
argmax with the first maximum. The value is a fraction in [0, 1]."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of lists of float, shape (N, C)): class scores per sample, e.g. cosine similarities to the
        class embeddings.
    references (list of int, shape (N,)): label indices in [0, C).
    k (int, optional, defaults to 1): the cut-off, 1 <= k <= C.
Returns:
    accuracy (float): fraction of samples whose label is in the top k.
"""

_CITATION = """@inproceedings{chen2026codebind,
  title={CodeBind: Decoupled Representation Learning for Multimodal Alignment with Unified Compositional Codebook},
  author={Chen, Zeyu and Li, Jie and Han, Kai},
  booktitle={Findings of ACL},
  year={2026}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeroShotAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=1):
        return {"accuracy": top_k_accuracy(predictions, references, k=k)}
