"""codebind-bench: the whole ib17 suite end to end on the generated fixtures, numbers checked against a direct
computation and a hand-made known answer, the model card round trip, errors, and two processes against one."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from sklearn.metrics import accuracy_score

from codebind_hf import CodeBindConfig, CodeBindModel
from codebind_hf.evaluation.datasets import LocalBenchmark, processor_inputs
from codebind_hf.evaluation.fixtures import write_fixture, write_fixtures
from codebind_hf.evaluation.report import markdown_table, update_model_card
from codebind_hf.evaluation.cli import main, parse_benchmarks, parse_paths
from codebind_hf.evaluation.suite import BENCHMARKS, SUITES, get_benchmark
from codebind_hf.encoders.imagebind import imagebind_modality_configs
from codebind_hf.feature_extraction_codebind import CodeBindFeatureExtractor
from codebind_hf.feature_extraction_sensors import CodeBindSensorFeatureExtractor
from codebind_hf.image_processing_codebind import CodeBindImageProcessor
from codebind_hf.adapters.model_cards import read_eval_results
from codebind_hf.processing_codebind import CodeBindProcessor
from codebind_hf.evaluation.zero_shot import build_prompts, expand_prompt_names, zero_shot_classifier, zero_shot_scores

IMAGEBIND_TOWERS = ("vision", "text", "audio", "depth", "thermal", "tactile", "eeg")


def tiny_bench_model() -> tuple[CodeBindModel, CodeBindProcessor]:
    """ImageBind-family towers (width 16, one block) on 32x32 images, 32x40 spectrograms and (128, 32) EEG, a one-layer
    BERT over xyz points, one path per non-text modality; a processor producing those sizes."""
    kwargs = dict(out_embed_dim=16, kernel_size=(2, 8, 8), audio_num_mel_bins=32, audio_target_len=40, eeg_data_len=32,
                  depth_kernel_size=8, thermal_kernel_size=8, tactile_kernel_size=8)
    for m in IMAGEBIND_TOWERS:
        kwargs.update({f"{m}_embed_dim": 16, f"{m}_num_blocks": 1, f"{m}_num_heads": 2})
    towers = imagebind_modality_configs(IMAGEBIND_TOWERS, **kwargs)
    towers["vision"]["image_size"] = 32
    for m in ("depth", "thermal", "tactile"):
        towers[m]["input_size"] = [32, 32]
    towers["point"] = {"family": "hf", "input_kwarg": "inputs_embeds", "sample_ndim": 2, "backbone": {
        "model_type": "bert", "hidden_size": 3, "num_hidden_layers": 1, "num_attention_heads": 1,
        "intermediate_size": 12, "vocab_size": 8, "max_position_embeddings": 64}}
    paths = {m: {"bridges": ["text"] if m == "vision" else ["text", "vision"]}
             for m in ("vision", "audio", "depth", "thermal", "tactile", "eeg", "point")}
    torch.manual_seed(0)
    config = CodeBindConfig(modalities=towers, paths=paths, embed_dim=16, specific_dim=16, decoder={"enabled": False},
                            quantizer={"shared_codebook_size": 32, "specific_codebook_size": 16})
    processor = CodeBindProcessor(
        image_processor=CodeBindImageProcessor(size=32, video_clips=2, video_spatial_crops=1),
        feature_extractor=CodeBindFeatureExtractor(num_mel_bins=32, target_length=40, clips_per_sample=2),
        sensor_processor=CodeBindSensorFeatureExtractor(eeg_length=32, num_points=64),
    )
    return CodeBindModel(config).eval(), processor


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    model, processor = tiny_bench_model()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    write_fixtures(root / "data", ("ib17", "vl"), num_items=4)
    return root


@pytest.fixture(scope="module")
def ib17_run(setup):
    """One run of the whole ib17 suite (identity templates keep the ~2,800 class names to one prompt each)."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--model", str(setup / "model"), "--benchmarks", "ib17", "--data-root", str(setup / "data"),
                     "--output-dir", str(setup / "ib17"), "--batch-size", "3", "--templates", "identity"])
    assert code == 0
    return json.loads((setup / "ib17" / "results.json").read_text()), out.getvalue()


def _argv(setup, output, *benchmarks, extra=()):
    return ["--model", str(setup / "model"), "--benchmarks", *benchmarks, "--data-root", str(setup / "data"),
            "--output-dir", str(output), "--batch-size", "3", *extra]


# ---------------------------------------------------------------------------------------------- the suite
def test_ib17_runs_end_to_end_with_every_metric(ib17_run, setup):
    payload, printed = ib17_run
    assert payload["benchmarks"] == SUITES["ib17"] and list(payload["results"]) == SUITES["ib17"]
    for name in SUITES["ib17"]:
        definition = BENCHMARKS[name]
        metrics = payload["results"][name]
        assert set(definition.metrics) <= set(metrics), name
        assert all(0.0 <= v <= 1.0 for v in metrics.values()), (name, metrics)
        assert payload["num_items"][name] == {split: 4 for split in definition.splits}
        assert payload["tasks"][name] == ("retrieval" if definition.task == "retrieval" else "zero-shot-classification")
        assert payload["paper"][name] == definition.paper_results
        assert payload["paths"][name] == definition.modality  # each modality's own path
    for name, kind in (("msrvtt", "video"), ("clotho", "audio"), ("audiocaps", "audio")):
        assert f"{kind}_to_text_recall@1" in payload["results"][name]
    # ESC-50: five folds, averaged.
    folds = payload["splits"]["esc50"]
    assert sorted(folds) == [f"fold{i}" for i in range(1, 6)]
    assert payload["results"]["esc50"]["accuracy@1"] == pytest.approx(np.mean([f["accuracy@1"] for f in folds.values()]))
    # 4 clips < k=10: computed at k=4, where every caption is a hit, and said so.
    assert payload["results"]["clotho"]["recall@10"] == 1.0
    assert any(n.startswith("clotho recall@10: only 4 candidates") for n in payload["notes"])
    # The printed table: header with the paper columns, one row per (benchmark, metric), 17 benchmarks.
    lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert lines[0] == "| benchmark | metric | ours (%) | ImageBind (paper) | CodeBind-IB (paper) |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert len({row[0] for row in rows}) == 17
    assert len(rows) == sum(len(v) for v in payload["results"].values())
    in1k = next(row for row in rows if row[0] == "IN1K")
    assert in1k == ["IN1K", "accuracy@1", f"{100 * payload['results']['in1k']['accuracy@1']:.1f}", "77.7", "79.3"]
    assert ["AudioSet", "mAP"] == next(row for row in rows if row[0] == "AudioSet")[:2]
    assert (setup / "ib17" / "results.md").read_text().count("\n| ") == len(rows) + 1


def test_vl_suite_adds_its_paper_columns_and_separate_splits(setup, capsys):
    assert main(_argv(setup, setup / "vl", "vl", extra=["--templates", "identity"])) == 0
    payload = json.loads((setup / "vl" / "results.json").read_text())
    assert set(payload["results"]["modelnet40"]) == {"accuracy@1", "accuracy@5"}
    assert set(payload["results"]["in_eeg_vl"]) == {"val/accuracy@1", "test/accuracy@1"}  # reported separately
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith("| ViT-Lens (paper) | CodeBind-VL (paper) |")


def test_adapters_give_random_access_and_targets_without_inputs(setup):
    """What the runner shards: ``adapter[i]`` is the i-th iterated example; ``targets()`` its labels or captions."""
    for name in (*SUITES["ib17"], *SUITES["vl"]):
        definition = BENCHMARKS[name]
        adapter = LocalBenchmark(definition, setup / "data", definition.splits[-1])
        examples = list(adapter)
        key = "captions" if definition.task == "retrieval" else "label"
        assert adapter.targets() == [e[key] for e in examples], name
        assert [adapter[i]["id"] for i in (3, 0)] == [examples[3]["id"], examples[0]["id"]]


# ---------------------------------------------------------------------------------------------- numbers
def _direct_embeddings(model, processor, definition, root, split, part="shared", quantize=True):
    adapter = LocalBenchmark(definition, root, split)
    examples = list(adapter)
    inputs = processor(**processor_inputs(definition, examples))
    with torch.no_grad():
        items = model.get_features(definition.modality, inputs, part=part, quantize=quantize)
    return examples, items


def _direct_classifier(model, processor, definition, path, quantize=True, templates=None):
    names, class_index = expand_prompt_names(definition.prompt_names())
    templates = templates or definition.prompt_templates()
    prompts = [p for row in build_prompts(names, templates) for p in row]
    with torch.no_grad():
        text = model.get_features("text", processor(text=prompts), path=path, quantize=quantize)
    return zero_shot_classifier(text.reshape(len(names), len(templates), -1)), class_index


@pytest.mark.parametrize("quantize", [False, True])
def test_runner_equals_a_direct_computation(setup, quantize):
    """Accuracy (sklearn on argmax of the zero-shot scores, default templates) and brute-force recall, per split."""
    model, processor = CodeBindModel.from_pretrained(setup / "model").eval(), CodeBindProcessor.from_pretrained(setup / "model")
    extra = [] if quantize else ["--no-quantize"]
    output = setup / f"direct-{quantize}"
    assert main(_argv(setup, output, "tag_hard_soft,esc50", "llvip", "clotho", extra=extra)) == 0
    payload = json.loads((output / "results.json").read_text())
    for name in ("tag_hard_soft", "esc50", "llvip"):  # LLVIP: 9 names for 2 classes, a class scores its best name
        definition = get_benchmark(name)
        classifier, class_index = _direct_classifier(model, processor, definition, definition.modality, quantize)
        per_split = []
        for split in definition.splits:
            examples, items = _direct_embeddings(model, processor, definition, setup / "data", split, quantize=quantize)
            predicted = zero_shot_scores(items, classifier, class_index).argmax(1).numpy()
            per_split.append(accuracy_score([e["label"] for e in examples], predicted))
        assert payload["results"][name]["accuracy@1"] == pytest.approx(np.mean(per_split), abs=1e-12), name
    if quantize:
        return  # quantised retrieval similarities tie (few codes); the tie-free comparison is the unquantised one
    examples, items = _direct_embeddings(model, processor, get_benchmark("clotho"), setup / "data", "test", quantize=False)
    captions = [(c, i) for i, e in enumerate(examples) for c in e["captions"]]
    with torch.no_grad():
        text = model.get_features("text", processor(text=[c for c, _ in captions]), quantize=False)
    similarity = text @ items.T
    hits = [int(similarity[q].argmax()) == item for q, (_, item) in enumerate(captions)]
    reverse = [captions[int(similarity[:, i].argmax())][1] == i for i in range(len(examples))]
    assert payload["results"]["clotho"]["recall@1"] == pytest.approx(np.mean(hits))
    assert payload["results"]["clotho"]["audio_to_text_recall@1"] == pytest.approx(np.mean(reverse))


@pytest.mark.parametrize("name, quantize", [("flir_v2", False), ("llvip", True), ("nyu_d", True)])
def test_known_answer_on_a_hand_labelled_benchmark(setup, tmp_path, name, quantize):
    """Items labelled with the model's own prediction (4 of them) or another class (2): accuracy is 4/6. LLVIP and
    NYU-D embed several names per class (a class scores its best name); quantised, text uses the modality's path."""
    model, processor = CodeBindModel.from_pretrained(setup / "model").eval(), CodeBindProcessor.from_pretrained(setup / "model")
    definition = get_benchmark(name)
    write_fixture(definition, tmp_path, num_items=6, seed=3)
    examples, items = _direct_embeddings(model, processor, definition, tmp_path, "test", quantize=quantize)
    path = definition.modality if quantize else None
    classifier, class_index = _direct_classifier(model, processor, definition, path, quantize=quantize)
    predicted = zero_shot_scores(items, classifier, class_index).argmax(1).tolist()
    labels = [p if i < 4 else (p + 1) % definition.num_classes for i, p in enumerate(predicted)]
    metadata = tmp_path / name / "test" / "metadata.jsonl"
    records = [json.loads(line) for line in metadata.read_text().splitlines()]
    metadata.write_text("".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(records, labels)))
    argv = ["--model", str(setup / "model"), "--benchmarks", name, "--data-root", str(tmp_path),
            "--output-dir", str(tmp_path / "out"), "--batch-size", "4", *([] if quantize else ["--no-quantize"])]
    assert main(argv) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["results"][name]["accuracy@1"] == pytest.approx(4 / 6)
    # --limit 3 keeps the first three items, all labelled with their prediction.
    assert main([*argv, "--limit", "3", "--overwrite_output_dir"]) == 0  # a finished run is replaced only when asked
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["results"][name]["accuracy@1"] == 1.0 and payload["num_items"][name] == {"test": 3}


def test_concat_part_keeps_the_zero_shot_ranking(setup, capsys):
    """Text has no specific part (zero-padded), so for single-clip inputs concat ranks classes exactly as shared."""
    names = "flir_v2,tag_material,nyu_d"
    assert main(_argv(setup, setup / "shared", names, extra=["--templates", "identity", "--no-quantize"])) == 0
    assert main(_argv(setup, setup / "concat", names, extra=["--templates", "identity", "--no-quantize", "--part", "concat"])) == 0
    shared, concat = (json.loads((setup / p / "results.json").read_text()) for p in ("shared", "concat"))
    assert concat["part"] == "concat" and concat["results"] == shared["results"]


def test_hub_source_gives_the_numbers_of_the_same_data_in_the_local_layout(setup, tmp_path, monkeypatch):
    """ESC-50 from a Hugging Face dataset (one split, folds selected by a column, wav bytes) and from local folders:
    the first clip of each fold is labelled with the model's prediction, the second with another class, so both
    sources must give 0.5 in every fold."""
    import dataclasses
    import io
    import wave

    datasets = pytest.importorskip("datasets")
    model, processor = CodeBindModel.from_pretrained(setup / "model").eval(), CodeBindProcessor.from_pretrained(setup / "model")
    definition = BENCHMARKS["esc50"]
    classifier, class_index = _direct_classifier(model, processor, definition, None, quantize=False, templates=["{}"])
    rng = np.random.default_rng(5)
    rows = {"audio": [], "target": [], "fold": []}
    for fold in range(1, 6):
        folder = tmp_path / "local" / "esc50" / f"fold{fold}"
        folder.mkdir(parents=True)
        clips = []
        for i in range(2):
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as out:
                out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
                out.writeframes((rng.uniform(-0.3, 0.3, 8000) * 32767).astype("<i2").tobytes())
            (folder / f"{i}.wav").write_bytes(buffer.getvalue())
            clips.append(buffer.getvalue())
        (folder / "metadata.jsonl").write_text("".join(json.dumps({"file": f"{i}.wav", "label": 0}) + "\n" for i in range(2)))
        _, items = _direct_embeddings(model, processor, definition, tmp_path / "local", f"fold{fold}", quantize=False)
        predicted = zero_shot_scores(items, classifier, class_index).argmax(1).tolist()
        labels = [predicted[0], (predicted[1] + 1) % 50]
        (folder / "metadata.jsonl").write_text("".join(json.dumps({"file": f"{i}.wav", "label": y}) + "\n" for i, y in enumerate(labels)))
        rows["audio"] += [{"bytes": clip, "path": f"{fold}-{i}.wav"} for i, clip in enumerate(clips)]
        rows["target"] += labels
        rows["fold"] += [fold, fold]
    features = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                  "target": datasets.Value("int64"), "fold": datasets.Value("int64")})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "hub" / "train.parquet"))
    source = dataclasses.replace(definition.hf_sources[0], dataset_id=str(tmp_path / "hub"))
    monkeypatch.setitem(BENCHMARKS, "esc50", dataclasses.replace(definition, hf_sources=(source,)))
    common = ["--model", str(setup / "model"), "--benchmarks", "esc50", "--no-quantize", "--templates", "identity"]
    assert main([*common, "--use-hub-sources", "--output-dir", str(tmp_path / "from-hub")]) == 0
    assert main([*common, "--data-root", str(tmp_path / "local"), "--output-dir", str(tmp_path / "from-local")]) == 0
    hub, local = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("from-hub", "from-local"))
    assert hub["datasets"] == {"esc50": str(tmp_path / "hub")} and local["datasets"] == {}
    assert hub["num_items"]["esc50"] == {f"fold{f}": 2 for f in range(1, 6)}
    for payload in (hub, local):
        assert payload["splits"]["esc50"] == {f"fold{f}": {"accuracy@1": 0.5} for f in range(1, 6)}
        assert payload["results"]["esc50"] == {"accuracy@1": 0.5}


# ---------------------------------------------------------------------------------------------- model card
def test_results_round_trip_into_the_model_card(setup, ib17_run, tmp_path):
    payload, _ = ib17_run
    model_dir = tmp_path / "model"
    shutil.copytree(setup / "model", model_dir)
    argv = ["--model", str(model_dir), "--benchmarks", "llvip,clotho", "--data-root", str(setup / "data"),
            "--output-dir", str(tmp_path / "out"), "--templates", "identity", "--update-model-card"]
    assert main(argv) == 0
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    card = ModelCard.load(model_dir / "README.md")  # generated: the folder had no card
    assert card.data.eval_results == read_eval_results(written)
    index = card.data.to_dict()["model-index"][0]
    entries = {r["dataset"]["name"]: r for r in index["results"]}
    assert sorted(entries) == ["clotho", "llvip"] and entries["clotho"]["task"]["type"] == "retrieval"
    assert {m["type"]: m["value"] for m in entries["clotho"]["metrics"]} == written["results"]["clotho"]
    # An existing card keeps its text; the same (benchmark, metric) is replaced, other results stay.
    card.text = "# My model\n\nHand-written notes.\n"
    (model_dir / "README.md").write_text(str(card))
    update_model_card(model_dir / "README.md", payload)
    again = ModelCard.load(model_dir / "README.md")
    assert again.text.strip() == "# My model\n\nHand-written notes.".strip()
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in again.data.eval_results}
    expected = {(r.dataset_name, r.metric_type): r.metric_value for r in read_eval_results(written)}
    expected.update({(r.dataset_name, r.metric_type): r.metric_value for r in read_eval_results(payload)})
    assert got == expected and len(again.data.eval_results) == len(expected)


def test_markdown_table_formats_percentages_and_missing_paper_values():
    table = markdown_table({"benchmarks": ["clotho"], "results": {"clotho": {"recall@10": 0.25, "audio_to_text_recall@10": 1.0}}})
    assert table.splitlines()[2:] == ["| Clotho | recall@10 | 25.0 | 28.4 | 28.6 |",
                                      "| Clotho | audio_to_text_recall@10 | 100.0 | — | — |"]


# ---------------------------------------------------------------------------------------------- errors and arguments
def test_missing_benchmark_folder_is_a_clear_error(setup, tmp_path, capsys):
    write_fixture("llvip", tmp_path, num_items=2)
    # The data check runs before the model loads: a model path that does not exist is never reached.
    argv = ["--model", str(tmp_path / "no-model"), "--benchmarks", "llvip", "esc50", "--data-root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--data-root {tmp_path} has no folder 'esc50'" in err
    assert "esc50/<split>/metadata.jsonl" in err and "fold1, fold2" in err and "--use-hub-sources" in err
    assert main(["--model", "x", "--benchmarks", "msrvtt"]) == 2
    assert "no --data-root was given" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "llvip" / "test")
    assert main(["--model", "x", "--benchmarks", "llvip", "--data-root", str(tmp_path)]) == 2
    assert "split folder" in capsys.readouterr().err
    assert main(["--model", "x", "--benchmarks", "imagenet21k", "--data-root", str(tmp_path)]) == 2
    assert "unknown benchmark 'imagenet21k'" in capsys.readouterr().err


def test_argument_parsing_and_path_choice(setup, capsys):
    assert [d.name for d in parse_benchmarks(["vl,in1k", "modelnet40", "ESC50"])] == ["modelnet40", "in_eeg_vl", "in1k", "esc50"]
    assert len(parse_benchmarks(["ib17"])) == 17
    assert parse_paths("depth") == {"*": "depth"} and parse_paths("image=vision, depth=depth") == {"vision": "vision", "depth": "depth"}
    # A path that does not cover the benchmark's modality is refused with the choices.
    assert main(_argv(setup, setup / "bad", "esc50", extra=["--path", "depth"])) == 2
    err = capsys.readouterr().err
    assert "esc50: Path 'depth' does not cover modality 'audio'" in err and "--no-quantize" in err
    assert main(_argv(setup, setup / "bad", "esc50", extra=["--templates", "nope"])) == 2
    assert "unknown template list 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- processes
def test_two_processes_give_the_numbers_of_one(setup, ib17_run, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(29500 + os.getpid() % 1000), "-m", "codebind_hf.evaluation.cli",
               *_argv(setup, tmp_path / "ddp", "ib17", extra=["--templates", "identity"])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "ddp" / "results.json").read_text())
    one, _ = ib17_run
    assert two["results"] == one["results"] and two["splits"] == one["splits"] and two["num_items"] == one["num_items"]
    assert done.stdout.count("| IN1K | accuracy@1 |") == 1  # only the main process prints
