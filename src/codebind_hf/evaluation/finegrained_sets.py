"""The paper's fine-grained retrieval sets, read in their own folder layouts or from the Hugging Face Hub.

``codebind-bench --benchmarks finegrained:stanford_dogs`` (or ``finegrained:oxford_pets``) looks, in this order, for

1. the benchmarks' layout ``<data-root>/<name>/test/metadata.jsonl`` (``file`` + ``label``: the analysis tasks' own,
   `codebind_hf.evaluation.analysis`);
2. the dataset's own layout, as its archives unpack into ``<data-root>/<name>/``:

   - **Stanford Dogs**: ``Images/<synset>-<breed>/<image>.jpg`` and the split list ``lists/test_list.mat`` (its
     ``file_list``: paths relative to ``Images/``; read with scipy) or ``lists/test_list.txt`` (the same paths, one a
     line, for those without scipy); the label is the class folder, ``<synset>-<breed>``;
   - **Oxford-IIIT Pet**: ``images/<name>.jpg`` and ``annotations/test.txt`` (``<name> <class id> <species> <breed
     id>`` per line, ``#`` lines skipped); the label is the class id (1-37), ``breed`` the name without its number;

3. with ``--use-hub-sources``, the set's Hugging Face dataset (`FineGrainedSet.hub`: its id, split and columns).

Each reader returns the analysis tasks' items: ``{"where", "record", "paths"}`` (``record`` holds ``label``), and a
Hub item a ``load`` callable giving its image instead of a path.

Example:

```python
>>> from codebind_hf.evaluation.finegrained_sets import FINEGRAINED_SETS, oxford_pets_line
>>> FINEGRAINED_SETS["oxford_pets"].hub.dataset_id
'pcuenq/oxford-pets'
>>> oxford_pets_line("great_pyrenees_173 23 2 13", "annotations/test.txt:1")
{'file': 'great_pyrenees_173.jpg', 'label': 23, 'breed': 'great_pyrenees', 'species': 'dog'}

```
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .datasets import BenchmarkDataError
from .suite import HFSource


@dataclass(frozen=True)
class FineGrainedSet:
    """A fine-grained retrieval set: where its own layout puts things, how to read it, and its Hub dataset.

    Attributes:
        name (`str`): the ``finegrained:<name>`` of the command line and the folder under ``--data-root``.
        display_name (`str`): the dataset's name.
        marker (`str`): the sub-folder whose presence says the dataset's own layout is there.
        schema (`str`): that layout, in words (for errors), ``{split}`` standing for the split.
        read (`Callable[[Path, str], list[dict]]`): ``(folder, split) -> items`` of that layout.
        hub (`HFSource`): the Hugging Face dataset, its split and its image and label columns.
    """

    name: str
    display_name: str
    marker: str
    schema: str
    read: Callable[[Path, str], list[dict]]
    hub: HFSource


# ---------------------------------------------------------------------------------------------- helpers
def _inside(base: Path, relative: str, where: str) -> Path:
    """``base / relative``, refusing a path that leaves ``base`` (a list file names files inside the set)."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise BenchmarkDataError(f"{where}: {relative!r} is not a path inside {base}")
    return base.joinpath(*parts)


def _item(path: Path, record: dict, where: str, schema: str) -> dict:
    if not path.is_file():
        raise BenchmarkDataError(f"{where}: file {path} not found. Expected: {schema}")
    return {"where": where, "record": record, "paths": [path]}


# ---------------------------------------------------------------------------------------------- Stanford Dogs
DOGS_SCHEMA = ("<root>/stanford_dogs/Images/<synset>-<breed>/<image>.jpg with lists/{split}_list.mat (file_list, "
               "read with scipy) or lists/{split}_list.txt (one path relative to Images/ per line)")


def _mat_file_list(path: Path) -> list[str]:
    """The ``file_list`` cell array of a Stanford Dogs list file, as strings (scipy, imported only here)."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise BenchmarkDataError(
            f"{path} is a MATLAB file and reading it needs scipy (pip install scipy, or the demo extra: "
            f"pip install 'codebind-hf[demo]'); or write its paths to {path.with_suffix('.txt')}, one per line"
        ) from err
    try:
        cells = loadmat(str(path))["file_list"]
    except (KeyError, ValueError, OSError) as err:
        raise BenchmarkDataError(f"{path}: not a Stanford Dogs list (a .mat file with a 'file_list' cell array): {err!r}") from err
    return [str(np.asarray(cell).reshape(-1)[0]).strip() for cell in np.asarray(cells, dtype=object).reshape(-1)]


def read_stanford_dogs(folder: str | Path, split: str = "test") -> list[dict]:
    """Stanford Dogs in its own layout (`DOGS_SCHEMA`): one item per path of the split's list, labelled with its class
    folder (``record``: ``file``, ``label`` = ``<synset>-<breed>``, ``breed``)."""
    folder = Path(folder)
    schema = DOGS_SCHEMA.format(split=split)
    mat, txt = folder / "lists" / f"{split}_list.mat", folder / "lists" / f"{split}_list.txt"
    if mat.is_file():
        listed, where = _mat_file_list(mat), str(mat)
    elif txt.is_file():
        listed, where = [line.strip() for line in txt.read_text(encoding="utf-8").splitlines()], str(txt)
    else:
        raise BenchmarkDataError(f"stanford_dogs: neither {mat} nor {txt} exists. Expected: {schema}")
    images, items = folder / "Images", []
    for number, relative in enumerate(listed, 1):
        if not relative:
            continue
        at = f"{where}:{number}"
        path = _inside(images, relative, at)
        if len(path.relative_to(images).parts) != 2:
            raise BenchmarkDataError(f"{at}: {relative!r} is not <synset>-<breed>/<image>. Expected: {schema}")
        label = path.parent.name
        breed = label.split("-", 1)[1] if "-" in label else label
        items.append(_item(path, {"file": relative, "label": label, "breed": breed}, at, schema))
    if not items:
        raise BenchmarkDataError(f"{where} lists no images. Expected: {schema}")
    return items


# ---------------------------------------------------------------------------------------------- Oxford-IIIT Pet
PETS_SCHEMA = ("<root>/oxford_pets/images/<name>.jpg with annotations/{split}.txt ('<name> <class id> <species> "
               "<breed id>' per line)")


def oxford_pets_line(line: str, where: str) -> dict:
    """One line of an Oxford-IIIT Pet list: ``{"file", "label" (class id), "breed", "species"}``."""
    fields = line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise BenchmarkDataError(f"{where}: {line!r} is not '<name> <class id> <species> <breed id>'")
    name = fields[0]
    record = {"file": f"{name}.jpg", "label": int(fields[1]), "breed": name.rsplit("_", 1)[0]}
    if len(fields) > 2:
        record["species"] = {"1": "cat", "2": "dog"}.get(fields[2], fields[2])
    return record


def read_oxford_pets(folder: str | Path, split: str = "test") -> list[dict]:
    """Oxford-IIIT Pet in its own layout (`PETS_SCHEMA`): one item per line of ``annotations/<split>.txt``."""
    folder = Path(folder)
    schema = PETS_SCHEMA.format(split=split)
    listing = folder / "annotations" / f"{split}.txt"
    if not listing.is_file():
        raise BenchmarkDataError(f"oxford_pets: no {listing}. Expected: {schema}")
    items = []
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        at = f"{listing}:{number}"
        record = oxford_pets_line(line, at)
        items.append(_item(_inside(folder / "images", record["file"], at), record, at, schema))
    if not items:
        raise BenchmarkDataError(f"{listing} lists no images. Expected: {schema}")
    return items


FINEGRAINED_SETS = {
    "stanford_dogs": FineGrainedSet("stanford_dogs", "Stanford Dogs", "Images", DOGS_SCHEMA, read_stanford_dogs,
                                    HFSource("Donghyun99/Stanford-Dogs", "test", "image", "label")),
    # One split of all 7,390 images (trainval and test together): the retrieval gallery is the whole set.
    "oxford_pets": FineGrainedSet("oxford_pets", "Oxford-IIIT Pet", "images", PETS_SCHEMA, read_oxford_pets,
                                  HFSource("pcuenq/oxford-pets", "train", "image", "label",
                                           notes="one 'train' split of all 7,390 images")),
}


# ---------------------------------------------------------------------------------------------- the Hub
def _hub_image(dataset, column: str, index: int):
    return dataset[int(index)][column]


def read_hub(spec: FineGrainedSet, **load_kwargs) -> list[dict]:
    """The set's items from its Hugging Face dataset (``datasets.load_dataset``; a local dataset folder works too):
    labels read from the label column alone, each image decoded when its item's ``load`` is called."""
    import datasets

    source = spec.hub
    dataset = datasets.load_dataset(source.dataset_id, source.config, split=source.split, **load_kwargs)
    missing = [c for c in (source.input_column, source.label_column) if c not in dataset.column_names]
    if missing:
        raise BenchmarkDataError(f"{source.dataset_id} ({source.split}) lacks column(s) {missing}; it has "
                                 f"{dataset.column_names}; expected an image column {source.input_column!r} and a "
                                 f"label column {source.label_column!r}")
    feature = dataset.features[source.label_column]
    labels = dataset.select_columns([source.label_column])[source.label_column]  # one column, not the images
    if isinstance(feature, datasets.ClassLabel):
        labels = [feature.int2str(int(v)) for v in labels]
    where = f"{source.dataset_id}[{source.split}]"
    return [{"where": f"{where}[{i}]", "record": {"label": str(label), "id": str(i)}, "paths": [None],
             "load": functools.partial(_hub_image, dataset, source.input_column, i)} for i, label in enumerate(labels)]


def read_finegrained(name: str, data_root, split: str = "test", use_hub: bool = False) -> list[dict] | None:
    """The items of the set ``name`` in its own layout under ``data_root``, else (``use_hub``) from the Hub, else
    ``None`` (the caller then reports every layout it looked for: `describe_sources`)."""
    spec = FINEGRAINED_SETS[name]
    folder = Path(data_root) / name if data_root else None
    if folder is not None and (folder / spec.marker).is_dir():
        return spec.read(folder, split)
    return read_hub(spec) if use_hub else None


def describe_sources(name: str, split: str = "test") -> str:
    """Where ``name`` may be read from, for an error: its own layout and its Hub dataset."""
    spec = FINEGRAINED_SETS[name]
    return (f"or its own layout {spec.schema.format(split=split)}; or pass --use-hub-sources to read "
            f"{spec.hub.dataset_id} ({spec.hub.split} split)")


__all__ = ["FineGrainedSet", "FINEGRAINED_SETS", "DOGS_SCHEMA", "PETS_SCHEMA", "read_stanford_dogs", "read_oxford_pets",
           "oxford_pets_line", "read_hub", "read_finegrained", "describe_sources"]
