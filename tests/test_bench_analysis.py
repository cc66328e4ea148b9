"""codebind-bench probe:/finegrained:/fusion: end to end on generated fixtures, every number checked against a direct
scikit-learn computation on embeddings computed here with the model itself."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from codebind_hf.evaluation.analysis import leave_one_out_retrieval, parse_analysis, read_items
from codebind_hf.evaluation.cli import main
from codebind_hf.evaluation.datasets import BenchmarkDataError, load_input
from codebind_hf.evaluation.fixtures import write_analysis_fixture
from codebind_hf.evaluation.suite import KIND_MODALITY
from test_bench_runner import tiny_bench_model

pytestmark = pytest.mark.usefixtures("one_thread")
TASKS = ("probe:audio:voices", "finegrained:image:breeds", "fusion:depth+image:rooms")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    model, processor = tiny_bench_model()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    for i, name in enumerate(TASKS):
        write_analysis_fixture(name, root / "data", num_items=12, seed=i)
    code = main(["--model", str(root / "model"), "--benchmarks", ",".join(TASKS), "--data-root", str(root / "data"),
                 "--output-dir", str(root / "out"), "--batch-size", "5"])
    assert code == 0
    return root, model, processor, json.loads((root / "out" / "results.json").read_text())


def _direct(model, processor, name, root, position=0):
    """Unit shared and concat embeddings of the task's items, one item at a time, straight from the model."""
    task = parse_analysis(name)
    kind = task.input_kinds[position]
    modality = KIND_MODALITY[kind]
    shared, concat, records = [], [], []
    for item in read_items(task, root / "data"):
        record = item["record"] if position == 0 else {k[7:]: v for k, v in item["record"].items() if k.startswith("paired_")}
        value, rate = load_input(kind, item["paths"][position], record)
        arg = {"image": "images", "depth": "depth", "audio": "audio"}[kind]
        kwargs = {arg: [value]} | ({"sampling_rate": [rate]} if kind == "audio" else {})
        inputs = processor(**kwargs)
        with torch.no_grad():
            shared.append(model.get_features(modality, inputs))
            concat.append(model.get_features(modality, inputs, part="concat"))
        records.append(item["record"])
    return torch.cat(shared), torch.cat(concat), records


def _sklearn_probe(features, labels, folds: int = 4):
    """The probe by hand: folds = 5, or the smallest class (3 classes of 4 items here) when it has fewer items."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(probe, features.double().numpy(), labels, cv=cv)))


def _codes(values):
    return np.unique([str(v) for v in values], return_inverse=True)[1]


def test_probes_match_scikit_learn(run):
    root, model, processor, payload = run
    shared, concat, records = _direct(model, processor, "probe:audio:voices", root)
    results = payload["results"]["probe:audio:voices"]
    specific = F.normalize(concat[:, 16:], dim=-1)
    for attribute in ("voice", "speed"):
        labels = _codes([r[attribute] for r in records])
        for part, features in (("shared", shared), ("specific", specific), ("concat", concat)):
            expected = _sklearn_probe(features, labels, folds=4 if attribute == "voice" else 5)  # speed: 2 classes of 6
            assert results[f"{attribute}/{part}/accuracy"] == pytest.approx(expected, abs=1e-9), (attribute, part)
    assert payload["tasks"]["probe:audio:voices"] == "linear-probe"


def test_finegrained_retrieval_matches_scikit_learn(run):
    root, model, processor, payload = run
    shared, concat, records = _direct(model, processor, "finegrained:image:breeds", root)
    labels = _codes([r["label"] for r in records])
    results = payload["results"]["finegrained:image:breeds"]
    for part, x in (("shared", shared), ("concat", concat)):
        x = F.normalize(x.double(), dim=-1)
        aps, r1, r5 = [], [], []
        for q in range(len(x)):
            others = [j for j in range(len(x)) if j != q]
            scores = (x[others] @ x[q]).numpy()
            relevant = labels[others] == labels[q]
            aps.append(average_precision_score(relevant, scores))
            # worst-case rank of the best same-label item: higher scores + other-label ties
            rank = min(int((scores > scores[j]).sum() + ((scores == scores[j]) & ~relevant).sum()) + 1
                       for j in np.nonzero(relevant)[0])
            r1.append(rank <= 1)
            r5.append(rank <= 5)
        assert results[f"{part}/mAP"] == pytest.approx(np.mean(aps), abs=1e-9)
        assert results[f"{part}/recall@1"] == pytest.approx(np.mean(r1)) and results[f"{part}/recall@5"] == pytest.approx(np.mean(r5))


def test_fusion_probes_each_modality_the_concatenation_and_the_sum(run):
    root, model, processor, payload = run
    depth_shared, depth_concat, records = _direct(model, processor, "fusion:depth+image:rooms", root)
    image_shared, image_concat, _ = _direct(model, processor, "fusion:depth+image:rooms", root, position=1)
    labels = _codes([r["label"] for r in records])
    results = payload["results"]["fusion:depth+image:rooms"]
    expected = {
        "depth/shared/accuracy": depth_shared, "image/shared/accuracy": image_shared,
        "fused/shared/accuracy": torch.cat([depth_shared, image_shared], -1),
        "fused/concat/accuracy": torch.cat([depth_concat, image_concat], -1),
        "sum/shared/accuracy": F.normalize(depth_shared + image_shared, dim=-1),
    }
    for key, features in expected.items():
        assert results[key] == pytest.approx(_sklearn_probe(features, labels), abs=1e-9), key
    table = (root / "out" / "results.md").read_text()
    assert "| fusion rooms (depth+image) | fused/shared/accuracy |" in table


def test_leave_one_out_retrieval_counts_ties_against_the_query():
    # identical codes tie: 0 and 1 (a) sit on one code with 2 (b); 3 (b) elsewhere
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    out = leave_one_out_retrieval(x, ["a", "a", "b", "b"], ks=(1, 2))
    # q0: the a-item 1 ties with b-item 2 -> worst rank 2; q2: its b-partner 3 ranks below the two tied a-items -> 3
    assert out["recall@1"] == 0.0 and out["recall@2"] == 0.5
    assert out["mAP"] == pytest.approx(np.mean([average_precision_score([1, 0, 0], [1.0, 1.0, 0.0]),
                                                average_precision_score([1, 0, 0], [1.0, 1.0, 0.0]),
                                                average_precision_score([0, 0, 1], [1.0, 1.0, 0.0]),
                                                average_precision_score([0, 0, 1], [0.0, 0.0, 0.0])]))


def test_leave_one_out_retrieval_hand_case():
    # 4 items on a line: labels a a b b; item 0's nearest is 1 (a): hit; item 2's nearest is 1 (a): miss.
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0]])
    out = leave_one_out_retrieval(x, ["a", "a", "b", "b"], ks=(1,))
    order = {0: [1, 2, 3], 1: [0, 2, 3], 2: [1, 0, 3], 3: [2, 1, 0]}
    assert out["recall@1"] == pytest.approx(np.mean([order[q][0] // 2 == q // 2 for q in range(4)]))  # 3 of 4
    assert out["recall@1"] == 0.75
    # AP: q0 1.0; q1 1.0; q2 (hit at rank 3) 1/3; q3 (hit at rank 1) 1.0
    assert out["mAP"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)


def test_analysis_names_and_layout_errors(tmp_path):
    with pytest.raises(ValueError, match="two kinds joined by"):
        parse_analysis("fusion:depth:rooms")
    with pytest.raises(ValueError, match="stanford_dogs"):
        parse_analysis("finegrained:dogs")
    with pytest.raises(BenchmarkDataError, match="Donghyun99/Stanford-Dogs"):
        read_items(parse_analysis("finegrained:stanford_dogs"), tmp_path)
    folder = write_analysis_fixture("fusion:depth+image:rooms", tmp_path, num_items=3)
    (folder / "paired" / "item001.png").unlink()
    with pytest.raises(BenchmarkDataError, match="item001.png not found"):
        read_items(parse_analysis("fusion:depth+image:rooms"), tmp_path)
