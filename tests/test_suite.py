"""Benchmark suite: definitions and class lists (paper counts, facts from their sources), generated fixtures read
back through the adapters, processor inputs, and errors for wrong layouts."""

import dataclasses
import io
import json
import wave

import numpy as np
import pytest

from codebind_hf.evaluation.datasets import (
    BenchmarkDataError,
    HFBenchmark,
    LocalBenchmark,
    label_array,
    open_benchmark,
    processor_inputs,
    retrieval_targets,
)
from codebind_hf.evaluation.fixtures import fixture_labels, write_fixture, write_fixtures
from codebind_hf.evaluation.suite import BENCHMARKS, SUITES, BenchmarkDefinition, get_benchmark
from codebind_hf.evaluation.zero_shot import list_templates, load_class_info, load_prompt_names, load_templates

# Class counts of the paper (CodeBind Table 1/2 and the method notes); None: retrieval.
PAPER_CLASS_COUNTS = {
    "in1k": 1000, "p365": 365, "k400": 400, "msrvtt": None, "nyu_d": 10, "sun_d": 19, "audioset": 527,
    "vggsound": 309, "esc50": 50, "clotho": None, "audiocaps": None, "llvip": 2, "flir_v2": 10, "tag_material": 20,
    "tag_hard_soft": 2, "tag_rough_smooth": 2, "in_eeg": 40, "modelnet40": 40, "in_eeg_vl": 40,
}
# The method notes' table, ImageBind -> CodeBind-IB, first metric of each benchmark.
PAPER_TABLE = {
    "in1k": (77.7, 79.3), "p365": (45.4, 55.5), "k400": (50.5, 54.4), "msrvtt": (36.1, 37.8), "nyu_d": (54.0, 59.3),
    "sun_d": (35.1, 45.7), "audioset": (17.6, 21.1), "vggsound": (27.8, 30.5), "esc50": (66.9, 71.0),
    "clotho": (6.0, 6.9), "audiocaps": (9.3, 13.3), "llvip": (63.4, 95.5), "flir_v2": (46.6, 97.2),
    "tag_material": (24.2, 42.6), "tag_hard_soft": (65.7, 83.9), "tag_rough_smooth": (69.8, 78.2), "in_eeg": (18.4, 33.1),
}
NUM_ITEMS = 4


# ------------------------------------------------------------------ definitions and data
def test_suites_and_definitions():
    assert len(SUITES["ib17"]) == 17 == len(set(SUITES["ib17"]))
    assert set(SUITES["ib17"]) | set(SUITES["vl"]) == set(BENCHMARKS)
    for names in SUITES.values():
        assert all(name in BENCHMARKS for name in names)
    for name, (imagebind, codebind) in PAPER_TABLE.items():
        definition = BENCHMARKS[name]
        first = definition.metrics[0]
        assert definition.paper_results["ImageBind"][first] == imagebind
        assert definition.paper_results["CodeBind-IB"][first] == codebind
    assert BENCHMARKS["clotho"].paper_results["CodeBind-IB"] == {"recall@1": 6.9, "recall@10": 28.6}
    assert BENCHMARKS["audiocaps"].paper_results["ImageBind"] == {"recall@1": 9.3, "recall@10": 42.3}
    assert BENCHMARKS["modelnet40"].paper_results["CodeBind-VL"] == {"accuracy@1": 78.3, "accuracy@5": 96.5}
    assert BENCHMARKS["esc50"].split_aggregation == "mean" and len(BENCHMARKS["esc50"].splits) == 5
    assert BENCHMARKS["in_eeg_vl"].splits == ("val", "test") and BENCHMARKS["in_eeg_vl"].split_aggregation == "separate"
    assert get_benchmark("ESC50") is BENCHMARKS["esc50"]
    assert len(set(BENCHMARKS.values())) == len(BENCHMARKS)  # hashable (usable as cache keys)
    with pytest.raises(KeyError, match="unknown benchmark"):
        get_benchmark("imagenet-21k")
    with pytest.raises(ValueError, match="modality 'video'"):
        dataclasses.replace(BENCHMARKS["k400"], modality="video")
    with pytest.raises(ValueError, match="metrics"):
        dataclasses.replace(BENCHMARKS["k400"], metrics=("top1",))


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_class_lists_have_the_paper_counts(name):
    definition = BENCHMARKS[name]
    assert definition.num_classes == PAPER_CLASS_COUNTS[name]
    if definition.task == "retrieval":
        assert definition.class_names is None and definition.templates is None
        return
    info = load_class_info(definition.class_file or name)
    assert info["num_classes"] == len(info["class_names"]) and info["source"]
    assert all(isinstance(n, str) and n for n in info["class_names"])
    assert len(definition.prompt_names()) == definition.num_classes
    templates = definition.prompt_templates()
    assert templates and all(t.count("{}") == 1 for t in templates)
    assert set(definition.alt_templates) <= set(list_templates())


def test_class_lists_hold_the_source_facts():
    assert load_class_info("in1k")["class_names"][:2] == ["tench", "goldfish"]
    assert load_class_info("in1k")["ids"][0] == "n01440764"
    assert load_class_info("audioset")["class_names"][0] == "Speech" and load_class_info("audioset")["ids"][0] == "/m/09x0r"
    assert load_class_info("esc50")["class_names"][:3] == ["dog", "rooster", "pig"]
    assert load_class_info("k400")["class_names"][0] == "abseiling"
    assert load_class_info("p365")["ids"][:2] == ["/a/airfield", "/a/airplane_cabin"]
    assert load_class_info("modelnet40")["class_names"][-1] == "xbox"
    eeg = load_class_info("in_eeg")
    assert (eeg["ids"][0], eeg["class_names"][0]) == ("n02389026", "sorrel")
    assert load_prompt_names("nyu_d")[-1][:2] == ["basement", "cafe"] and len(load_prompt_names("nyu_d")[-1]) == 18
    assert load_prompt_names("llvip") == [["person", "man", "woman", "people"], ["street", "road", "car", "light", "tree"]]
    assert BENCHMARKS["llvip"].prompt_names(use_prompt_names=False) == [["person"], ["background"]]
    assert len(load_templates("modelnet40_64")) == 64 and len(load_templates("kinetics")) == 28


# ------------------------------------------------------------------ fixtures through the adapters
@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    written = write_fixtures(root, ("ib17", "vl"), num_items=NUM_ITEMS)
    assert set(written) == set(BENCHMARKS)
    return root


def _check_input(kind, example):
    value = example["input"]
    if kind in ("image", "thermal", "tactile"):
        assert (isinstance(value, str) and value.endswith(".png")) or (isinstance(value, np.ndarray) and value.ndim in (2, 3))
    elif kind == "video":
        assert value.dtype == np.uint8 and value.ndim == 4 and value.shape[-1] == 3 and example["fps"] == 2.0
    elif kind == "audio":
        if isinstance(value, str):
            assert value.endswith(".wav") and example["sampling_rate"] is None
        else:
            assert value.dtype == np.float32 and value.ndim == 1 and example["sampling_rate"] == 22050
    elif kind == "depth":
        assert value.shape == (32, 32) and value.dtype == np.float32 and 0.49 < value.min() and value.max() < 5.01
    elif kind == "eeg":
        assert value.shape == (128, 512)
    elif kind == "point":
        assert value.ndim == 2 and value.shape[1] in (3, 6)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_adapters_read_the_fixtures(fixture_root, name):
    definition = BENCHMARKS[name]
    for number, split in enumerate(definition.splits):
        adapter = LocalBenchmark(name, fixture_root, split)
        examples = list(adapter)
        assert len(adapter) == len(examples) == NUM_ITEMS
        assert [e["id"] for e in examples] == [f"{name}-{split}-{i}" for i in range(NUM_ITEMS)]
        for example in examples:
            _check_input(definition.input_kind, example)
            expected_keys = {"id", "input", "captions" if definition.task == "retrieval" else "label"}
            expected_keys |= {"sampling_rate"} if definition.input_kind == "audio" else set()
            expected_keys |= {"fps"} if definition.input_kind == "video" else set()
            assert set(example) == expected_keys
        if definition.task == "retrieval":
            assert [len(e["captions"]) for e in examples] == [2, 3, 2, 3]
            targets = retrieval_targets(examples)
            assert len(targets.captions) == 10 and targets.text_to_item[:3] == [[0], [0], [1]]
            assert targets.item_to_text[1] == [2, 3, 4]
        else:
            # Labels were written as indices, names and ids in turn; all resolve to the same indices.
            assert [e["label"] for e in examples] == fixture_labels(name, NUM_ITEMS, number)
            references = label_array(definition, examples)
            assert references.shape == ((NUM_ITEMS, definition.num_classes) if definition.multi_label else (NUM_ITEMS,))
        assert [len(b) for b in adapter.batches(3)] == [3, 1]


def test_fixture_inputs_go_through_the_processor(fixture_root):
    from codebind_hf.processing_codebind import CodeBindProcessor

    processor = CodeBindProcessor.imagebind()
    keys = {"image": "pixel_values", "video": "pixel_values_videos", "audio": "audio_values", "depth": "depth_values",
            "thermal": "thermal_values", "tactile": "tactile_values", "eeg": "eeg_values", "point": "point_values"}
    for name, definition in BENCHMARKS.items():
        batch = next(LocalBenchmark(name, fixture_root, definition.splits[0]).batches(2))
        kwargs = processor_inputs(definition, batch)
        assert len(next(iter(kwargs.values()))) == 2
        assert keys[definition.input_kind] in processor(**kwargs), name


def test_open_benchmark_picks_the_local_adapter(fixture_root):
    assert isinstance(open_benchmark("esc50", fixture_root, "fold3"), LocalBenchmark)
    assert processor_inputs("esc50", next(open_benchmark("esc50", fixture_root, "fold3").batches(2)))["sampling_rate"] == [None, 22050]


# ------------------------------------------------------------------ wrong layouts
def _fresh(tmp_path, name="tag_hard_soft"):
    write_fixture(name, tmp_path, num_items=2)
    return tmp_path / name / BENCHMARKS[name].splits[0]


def test_missing_folder_and_metadata_name_the_piece_and_schema(tmp_path):
    with pytest.raises(BenchmarkDataError, match=r"split folder .*esc50/fold1 not found. Expected schema: <root>/esc50/<split>"):
        LocalBenchmark("esc50", tmp_path)
    (tmp_path / "esc50" / "fold1").mkdir(parents=True)
    with pytest.raises(BenchmarkDataError, match="no metadata.jsonl or metadata.csv in .*fold1. Expected schema"):
        LocalBenchmark("esc50", tmp_path)


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("esc50", lambda r: r.pop("file"), "missing field 'file'"),
        ("esc50", lambda r: r.update(file="gone.wav"), r"file .*gone.wav not found"),
        ("esc50", lambda r: r.pop("label"), "missing field 'label'"),
        ("esc50", lambda r: r.update(label="purring"), "unknown class 'purring'"),
        ("esc50", lambda r: r.update(label=50), "out of range"),
        ("in1k", lambda r: r.update(label="missile"), "ambiguous"),
        ("audioset", lambda r: r.update(labels=[]), "'labels' must be a non-empty list"),
        ("clotho", lambda r: r.update(captions=[]), "missing field 'captions'"),
        ("flir_v2", lambda r: r.update(bbox=[0, 0, 99, 99]), "outside the"),
    ],
)
def test_bad_records_name_the_problem(tmp_path, name, edit, message):
    folder = tmp_path / name / BENCHMARKS[name].splits[0]
    write_fixture(name, tmp_path, num_items=2)
    meta = folder / "metadata.jsonl"
    if not meta.exists():  # clotho writes CSV; rewrite it as JSONL
        (folder / "metadata.csv").unlink()
        meta.write_text(json.dumps({"file": "item000.wav", "captions": ["a"]}) + "\n"
                        + json.dumps({"file": "item001.npy", "sampling_rate": 22050, "captions": ["b"]}) + "\n")
    records = [json.loads(line) for line in meta.read_text().splitlines()]
    edit(records[-1])
    meta.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(BenchmarkDataError, match=message):
        list(LocalBenchmark(name, tmp_path, BENCHMARKS[name].splits[0]))


def test_more_layout_errors(tmp_path):
    folder = _fresh(tmp_path)
    (folder / "metadata.csv").write_text("path,label\nitem000.png,hard\n")
    with pytest.raises(BenchmarkDataError, match="'file' column"):
        LocalBenchmark("tag_hard_soft", tmp_path)
    (folder / "metadata.csv").write_text("file,label\nitem000.txt,hard\n")
    (folder / "item000.txt").write_text("x")
    with pytest.raises(BenchmarkDataError, match="not tactile data of a supported format"):
        LocalBenchmark("tag_hard_soft", tmp_path)
    (folder / "metadata.csv").write_text("file,label\n")
    with pytest.raises(BenchmarkDataError, match="lists no items"):
        LocalBenchmark("tag_hard_soft", tmp_path)
    audio = tmp_path / "esc50" / "fold1"
    write_fixture("esc50", tmp_path, num_items=2)
    (audio / "metadata.jsonl").write_text(json.dumps({"file": "item001.npy", "label": 0}) + "\n")
    with pytest.raises(BenchmarkDataError, match="needs a 'sampling_rate' field"):
        LocalBenchmark("esc50", tmp_path)
    (audio / "metadata.jsonl").write_text("{not json\n")
    with pytest.raises(BenchmarkDataError, match=r"metadata.jsonl:1: not valid JSON"):
        LocalBenchmark("esc50", tmp_path)


# ------------------------------------------------------------------ Hugging Face datasets (local data folders)
def _wav_bytes(samples, rate=16000):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.asarray(samples) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def test_hf_adapter_reads_audio_bytes_and_filters_folds(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                  "target": datasets.Value("int64"), "fold": datasets.Value("int64")})
    rows = {"audio": [{"bytes": _wav_bytes(np.full(800, 0.25)), "path": f"{i}.wav"} for i in range(3)],
            "target": [4, 7, 9], "fold": [1, 2, 2]}
    dataset = datasets.Dataset.from_dict(rows, features=features).cast_column("audio", datasets.Audio())
    dataset.to_parquet(str(tmp_path / "data" / "test.parquet"))
    source = dataclasses.replace(BENCHMARKS["esc50"].hf_sources[0], dataset_id=str(tmp_path / "data"), split="test")
    adapter = HFBenchmark("esc50", source, "fold2")
    examples = list(adapter)
    assert len(adapter) == 2 and [e["label"] for e in examples] == [7, 9]
    assert examples[0]["sampling_rate"] == 16000 and examples[0]["input"].shape == (1, 800)
    np.testing.assert_allclose(examples[0]["input"], 0.25, atol=1 / 32768)
    with pytest.raises(BenchmarkDataError, match=r"lacks column\(s\) \['labels'\]"):
        HFBenchmark("esc50", source, "fold2", label_column="labels")
    with pytest.raises(BenchmarkDataError, match="no known Hugging Face dataset"):
        HFBenchmark("sun_d")


def test_hf_adapter_reads_images_with_name_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = [Image.fromarray(np.full((8, 8, 3), i * 60, dtype=np.uint8)) for i in range(3)]
    dataset = datasets.Dataset.from_dict({"image": images, "material": ["soft", "hard", "soft"]},
                                         features=datasets.Features({"image": datasets.Image(), "material": datasets.Value("string")}))
    dataset.to_parquet(str(tmp_path / "tag" / "test.parquet"))
    adapter = open_benchmark("tag_hard_soft", str(tmp_path / "tag"), input_column="image", label_column="material", label_kind="name")
    examples = list(adapter)
    assert [e["label"] for e in examples] == [1, 0, 1]
    assert np.asarray(examples[2]["input"])[0, 0].tolist() == [120, 120, 120]
    bad = datasets.Dataset.from_dict({"image": images[:1], "material": ["squishy"]},
                                     features=datasets.Features({"image": datasets.Image(), "material": datasets.Value("string")}))
    bad.to_parquet(str(tmp_path / "bad" / "test.parquet"))
    with pytest.raises(BenchmarkDataError, match="unknown class 'squishy'"):
        list(HFBenchmark("tag_hard_soft", str(tmp_path / "bad"), input_column="image", label_column="material", label_kind="name"))


def test_local_schema_is_documented_per_benchmark():
    for definition in BENCHMARKS.values():
        assert isinstance(definition, BenchmarkDefinition)
        assert definition.local_schema.startswith(f"<root>/{definition.name}/<split>/metadata.jsonl")
    assert "'captions'" in BENCHMARKS["clotho"].local_schema and "'labels'" in BENCHMARKS["audioset"].local_schema
    assert "'bbox'" in BENCHMARKS["llvip"].local_schema and "'sampling_rate'" in BENCHMARKS["esc50"].local_schema
