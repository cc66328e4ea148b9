"""Stanford Dogs and Oxford-IIIT Pet for ``finegrained:``: their own folder layouts and their Hub datasets, on tiny
generated copies. The readers' items are checked by hand, and ``codebind-bench`` gives the same numbers whether a set
comes in its own layout, in the benchmarks' metadata layout or from a (local) Hugging Face dataset."""

import dataclasses
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from codebind_hf.evaluation.analysis import parse_analysis, read_items
from codebind_hf.evaluation.cli import main
from codebind_hf.evaluation.datasets import BenchmarkDataError
from codebind_hf.evaluation.finegrained_sets import FINEGRAINED_SETS, read_oxford_pets, read_stanford_dogs
from codebind_hf.evaluation.suite import HFSource
from test_bench_runner import tiny_bench_model

pytestmark = pytest.mark.usefixtures("one_thread")
DOG_CLASSES = ("n02085620-Chihuahua", "n02086240-Shih-Tzu", "n02088364-beagle")
# (image name stem, class id, species: 1 cat / 2 dog) as Oxford-IIIT Pet names them
PET_CLASSES = (("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("great_pyrenees", 23, 2))
TASKS = "finegrained:stanford_dogs,finegrained:oxford_pets"


def _jpeg(rng) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_dogs(root, rng, list_format="mat") -> list[tuple[str, str, bytes]]:
    """Stanford Dogs' layout: 4 images per class, the first 3 on the test list. Returns the test items in list
    order: (path under Images/, class folder, jpeg bytes)."""
    folder = root / "stanford_dogs"
    test = []
    for cls in DOG_CLASSES:
        for i in range(4):
            relative = f"{cls}/{cls.split('-')[0]}_{i}.jpg"
            data = _jpeg(rng)
            (folder / "Images" / cls).mkdir(parents=True, exist_ok=True)
            (folder / "Images" / relative).write_bytes(data)
            if i < 3:
                test.append((relative, cls, data))
    (folder / "lists").mkdir(parents=True, exist_ok=True)
    paths = [t[0] for t in test]
    if list_format == "mat":
        from scipy.io import savemat

        labels = np.array([[DOG_CLASSES.index(t[1]) + 1] for t in test])  # 1-based, as the dataset's lists
        savemat(folder / "lists" / "test_list.mat", {"file_list": np.array(paths, dtype=object).reshape(-1, 1), "labels": labels})
    else:
        (folder / "lists" / "test_list.txt").write_text("\n".join(paths) + "\n")
    return test


def write_pets(root, rng) -> list[tuple[str, int, bytes]]:
    """Oxford-IIIT Pet's layout: 4 images per class, the first 3 in annotations/test.txt (after a comment line, as
    the dataset's list.txt has). Returns the test items in list order: (file name, class id, jpeg bytes)."""
    folder = root / "oxford_pets"
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    lines, test = ["#Image CLASS-ID SPECIES BREED ID"], []
    for stem, class_id, species in PET_CLASSES:
        for i in range(1, 5):
            data = _jpeg(rng)
            (folder / "images" / f"{stem}_{i}.jpg").write_bytes(data)
            if i <= 3:
                lines.append(f"{stem}_{i} {class_id} {species} {class_id}")
                test.append((f"{stem}_{i}.jpg", class_id, data))
    (folder / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")
    return test


def write_metadata_layout(root, name, items) -> None:
    """The same images in the benchmarks' layout: <root>/<name>/test/metadata.jsonl with file + label."""
    folder = root / name / "test"
    folder.mkdir(parents=True)
    with open(folder / "metadata.jsonl", "w") as out:
        for i, (_, label, data) in enumerate(items):
            (folder / f"{i}.jpg").write_bytes(data)
            out.write(json.dumps({"file": f"{i}.jpg", "label": label}) + "\n")


def write_hub(folder, items, class_label: bool, split: str) -> None:
    """The same images as a Hugging Face dataset (parquet): an image column and a label column."""
    import datasets

    labels = sorted({str(label) for _, label, _ in items})
    label_feature = datasets.ClassLabel(names=labels) if class_label else datasets.Value("string")
    features = datasets.Features({"image": datasets.Image(), "label": label_feature})
    rows = {"image": [{"bytes": data, "path": name} for name, _, data in items],
            "label": [labels.index(str(label)) if class_label else str(label) for _, label, _ in items]}
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))


# ---------------------------------------------------------------------------------------------- readers
@pytest.mark.parametrize("list_format", ["mat", "txt"])
def test_stanford_dogs_reader_takes_the_test_list_and_class_folders(tmp_path, list_format):
    test = write_dogs(tmp_path, np.random.default_rng(0), list_format)
    items = read_stanford_dogs(tmp_path / "stanford_dogs")
    assert [item["record"]["file"] for item in items] == [t[0] for t in test]  # the list's 9 of the 12 images, in order
    assert [item["record"]["label"] for item in items] == [t[1] for t in test]
    assert items[3]["record"]["breed"] == "Shih-Tzu"  # the breed keeps its own hyphen
    assert all(item["paths"][0].read_bytes() == t[2] for item, t in zip(items, test))


def test_oxford_pets_reader_takes_class_ids_breeds_and_species(tmp_path):
    test = write_pets(tmp_path, np.random.default_rng(0))
    items = read_oxford_pets(tmp_path / "oxford_pets")
    assert [(i["record"]["file"], i["record"]["label"]) for i in items] == [(t[0], t[1]) for t in test]
    assert items[6]["record"] == {"file": "great_pyrenees_1.jpg", "label": 23, "breed": "great_pyrenees", "species": "dog"}
    assert items[0]["record"]["species"] == "cat"
    assert all(item["paths"][0].read_bytes() == t[2] for item, t in zip(items, test))


def test_reader_errors_name_the_file_and_the_layout(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    write_dogs(tmp_path, rng, "txt")
    dogs = tmp_path / "stanford_dogs"
    (dogs / "Images" / DOG_CLASSES[0] / "n02085620_1.jpg").unlink()
    with pytest.raises(BenchmarkDataError, match=r"test_list\.txt:2: file .*n02085620_1\.jpg not found"):
        read_stanford_dogs(dogs)
    (dogs / "lists" / "test_list.txt").write_text("../../secret.jpg\n")
    with pytest.raises(BenchmarkDataError, match="not a path inside"):
        read_stanford_dogs(dogs)
    (dogs / "lists" / "test_list.txt").unlink()
    with pytest.raises(BenchmarkDataError, match=r"neither .*test_list\.mat nor .*test_list\.txt"):
        read_stanford_dogs(dogs)
    (dogs / "lists" / "test_list.mat").write_bytes(b"MATLAB 5.0")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # scipy missing: the error says what to install or write
    with pytest.raises(BenchmarkDataError, match=r"needs scipy .*test_list\.txt"):
        read_stanford_dogs(dogs)
    write_pets(tmp_path, rng)
    (tmp_path / "oxford_pets" / "annotations" / "test.txt").write_text("Abyssinian_1 one 1 1\n")
    with pytest.raises(BenchmarkDataError, match=r"test\.txt:1: .* is not '<name> <class id>"):
        read_oxford_pets(tmp_path / "oxford_pets")


def test_a_named_set_missing_everywhere_says_where_it_looked(tmp_path):
    with pytest.raises(BenchmarkDataError) as caught:
        read_items(parse_analysis("finegrained:oxford_pets"), tmp_path)
    message = str(caught.value)
    assert "oxford_pets/test/metadata.jsonl" in message and "annotations/test.txt" in message
    assert "--use-hub-sources" in message and "pcuenq/oxford-pets" in message
    # a folder of one's own under the same name is the generic layout only: no native reader, no Hub
    with pytest.raises(BenchmarkDataError, match="no folder") as caught:
        read_items(parse_analysis("finegrained:image:oxford_pets"), tmp_path)
    assert "use-hub-sources" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- codebind-bench
def _bench(root, out, *extra) -> dict:
    code = main(["--model", str(root / "model"), "--benchmarks", TASKS, "--output-dir", str(out), "--batch-size", "5", *extra])
    assert code == 0
    return json.loads((out / "results.json").read_text())["results"]


def test_every_source_gives_the_same_retrieval_numbers(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    model, processor = tiny_bench_model()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    dogs, pets = write_dogs(tmp_path / "own", rng), write_pets(tmp_path / "own", rng)
    write_metadata_layout(tmp_path / "metadata", "stanford_dogs", dogs)
    write_metadata_layout(tmp_path / "metadata", "oxford_pets", pets)
    own = _bench(tmp_path, tmp_path / "from-own", "--data-root", str(tmp_path / "own"))
    reference = _bench(tmp_path, tmp_path / "from-metadata", "--data-root", str(tmp_path / "metadata"))
    for name in TASKS.split(","):
        assert set(own[name]) == {f"{p}/{m}" for p in ("shared", "concat") for m in ("recall@1", "recall@5", "mAP")}
        assert own[name] == pytest.approx(reference[name], abs=1e-12), name
    # From the Hub: Stanford Dogs' labels as a ClassLabel, Oxford Pets' as breed names (pcuenq/oxford-pets' strings).
    write_hub(tmp_path / "hub" / "dogs", dogs, class_label=True, split="test")
    write_hub(tmp_path / "hub" / "pets", [(n, n.rsplit("_", 1)[0], d) for n, _, d in pets], class_label=False, split="train")
    for name, folder in (("stanford_dogs", "dogs"), ("oxford_pets", "pets")):
        spec = FINEGRAINED_SETS[name]
        hub = HFSource(str(tmp_path / "hub" / folder), spec.hub.split, "image", "label")
        monkeypatch.setitem(FINEGRAINED_SETS, name, dataclasses.replace(spec, hub=hub))
    from_hub = _bench(tmp_path, tmp_path / "from-hub", "--use-hub-sources")
    for name in TASKS.split(","):
        assert from_hub[name] == pytest.approx(reference[name], abs=1e-12), name
    assert len(read_items(parse_analysis("finegrained:stanford_dogs"), None, use_hub=True)) == 9
