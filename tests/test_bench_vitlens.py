"""codebind-bench --benchmarks vl on a converted tiny CodeBind-VL (the vitlens_tiny lenses + a random open_clip
bridge) and the generated ModelNet40 / IN-EEG fixtures: end to end, and known answers."""

import json
import os

import numpy as np
import pytest
import torch

from codebind_hf import CodeBindModel, CodeBindProcessor
from codebind_hf.convert.vitlens import main as convert_main
from codebind_hf.evaluation.cli import main as bench_main
from codebind_hf.evaluation.fixtures import write_fixture, write_fixtures
from codebind_hf.evaluation.suite import SUITES, get_benchmark
from codebind_hf.evaluation.zero_shot import load_templates, zero_shot_scores
from test_bench_runner import _direct_classifier, _direct_embeddings
from vitlens_bridge import open_clip_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "vitlens_tiny")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_vl")
    with open(os.path.join(FIXTURES, "config.json")) as fh:
        clip = json.load(fh)["clip_model_config"]
    torch.save(open_clip_state_dict(clip), root / "clip.bin")
    assert convert_main([os.path.join(FIXTURES, "vitlens_tiny.pth"), str(root / "model"), "--vitlens-config",
                         os.path.join(FIXTURES, "config.json"), "--clip-checkpoint", str(root / "clip.bin")]) == 0
    write_fixtures(root / "data", "vl", num_items=4)
    return root


def _run(setup, name, *extra):
    argv = ["--model", str(setup / "model"), "--benchmarks", "vl", "--data-root", str(setup / "data"),
            "--output-dir", str(setup / name), "--batch-size", "3", *extra]
    assert bench_main(argv) == 0
    return json.loads((setup / name / "results.json").read_text())


def test_vl_suite_runs_quantised_through_each_lens_path(setup):
    payload = _run(setup, "quantised", "--templates", "identity")
    assert payload["benchmarks"] == SUITES["vl"] == ["modelnet40", "in_eeg_vl"]
    assert set(payload["results"]["modelnet40"]) == {"accuracy@1", "accuracy@5"}
    assert set(payload["results"]["in_eeg_vl"]) == {"val/accuracy@1", "test/accuracy@1"}
    assert payload["paths"] == {"modelnet40": "point", "in_eeg_vl": "eeg"}
    assert all(0.0 <= v <= 1.0 for metrics in payload["results"].values() for v in metrics.values())
    assert payload["num_items"]["modelnet40"] == {"test": 4}


def test_vl_known_answers_on_hand_labelled_fixtures(setup, tmp_path):
    """Per split, 4 of 6 items labelled with the model's own (unquantised, identity-prompt) prediction and 2 with the
    next class: the runner must report accuracy@1 4/6 everywhere, and ModelNet40's accuracy@5 as the direct top-5."""
    model = CodeBindModel.from_pretrained(setup / "model").eval()
    processor = CodeBindProcessor.from_pretrained(setup / "model")
    write_fixture("modelnet40", tmp_path, num_items=6, seed=3)
    write_fixture("in_eeg_vl", tmp_path, num_items=6, seed=4)
    top5_hits = None
    for name in SUITES["vl"]:
        definition = get_benchmark(name)
        classifier, class_index = _direct_classifier(model, processor, definition, None, quantize=False,
                                                     templates=load_templates("identity"))
        for split in definition.splits:
            _, items = _direct_embeddings(model, processor, definition, tmp_path, split, quantize=False)
            scores = zero_shot_scores(items, classifier, class_index)
            labels = [p if i < 4 else (p + 1) % definition.num_classes for i, p in enumerate(scores.argmax(1).tolist())]
            if name == "modelnet40":
                top5 = scores.topk(5, dim=1).indices.tolist()
                top5_hits = np.mean([label in row for label, row in zip(labels, top5)])
            metadata = tmp_path / name / split / "metadata.jsonl"
            records = [json.loads(line) for line in metadata.read_text().splitlines()]
            metadata.write_text("".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(records, labels)))
    argv = ["--model", str(setup / "model"), "--benchmarks", "vl", "--data-root", str(tmp_path), "--output-dir",
            str(tmp_path / "out"), "--batch-size", "4", "--no-quantize", "--templates", "identity"]
    assert bench_main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert results["modelnet40"]["accuracy@1"] == pytest.approx(4 / 6)
    assert results["modelnet40"]["accuracy@5"] == pytest.approx(top5_hits) and top5_hits >= 4 / 6
    assert results["in_eeg_vl"] == pytest.approx({"val/accuracy@1": 4 / 6, "test/accuracy@1": 4 / 6})
