"""Toy data and processor for the training tests (no tests here; also imported by subprocess runs).

The toy pairing is learnable: every row belongs to one of ``CLASSES``; its depth map and image are the class's
fixed random pattern plus noise, and its text is a prompt of the class name.
"""

import numpy as np
import torch

CLASSES = ["apple", "brick", "cloud", "drum"]


class ToyProcessor:
    """`CodeBindProcessor`-style callable: words hashed to ids in [2, 100), arrays stacked as float tensors."""

    max_length = 8

    def __call__(self, text=None, images=None, depth=None, sampling_rate=None, **unused):
        out = {}
        if text is not None:
            ids = torch.zeros(len(text), self.max_length, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, sentence in enumerate(text):
                tokens = [2 + sum(ord(c) * 31**k for k, c in enumerate(w)) % 98 for w in sentence.lower().split()]
                tokens = tokens[: self.max_length]
                ids[i, : len(tokens)] = torch.tensor(tokens)
                mask[i, : len(tokens)] = 1
            out["input_ids"], out["attention_mask"] = ids, mask
        if images is not None:
            out["pixel_values"] = torch.from_numpy(np.stack([np.asarray(x, np.float32) for x in images]))
        if depth is not None:
            out["depth_values"] = torch.from_numpy(np.stack([np.asarray(x, np.float32) for x in depth]))
        return out

    def to_dict(self):
        return {"processor_class": "ToyProcessor", "max_length": self.max_length}


def toy_columns(rows: int, seed: int = 0, noise: float = 0.3) -> dict:
    """Columns ``depth`` `(1, 16, 16)`, ``image`` `(3, 16, 16)` (float lists) and ``label`` (int)."""
    rng = np.random.default_rng(1234)  # class patterns are fixed; rows vary with ``seed``
    depth_patterns = rng.normal(size=(len(CLASSES), 1, 16, 16)).astype(np.float32)
    image_patterns = rng.normal(size=(len(CLASSES), 3, 16, 16)).astype(np.float32)
    rows_rng = np.random.default_rng(seed)
    labels = rows_rng.integers(0, len(CLASSES), rows)
    depth = depth_patterns[labels] + noise * rows_rng.normal(size=(rows, 1, 16, 16)).astype(np.float32)
    image = image_patterns[labels] + noise * rows_rng.normal(size=(rows, 3, 16, 16)).astype(np.float32)
    return {"depth": depth.tolist(), "image": image.tolist(), "label": labels.tolist()}


def toy_dataset_dict(train_rows: int = 64, eval_rows: int = 16):
    import datasets

    features = datasets.Features({
        "depth": datasets.Array3D((1, 16, 16), "float32"),
        "image": datasets.Array3D((3, 16, 16), "float32"),
        "label": datasets.ClassLabel(names=CLASSES),
    })
    return datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(toy_columns(train_rows, seed=1), features=features),
        "validation": datasets.Dataset.from_dict(toy_columns(eval_rows, seed=2), features=features),
    })


def tiny_training_workdir(root, data: str = "data"):
    """``root`` holding ``base/`` (the ``tiny`` training config's model without paths, drawn after seed 0) and, in
    ``root / data``, `toy_dataset_dict` saved with ``save_to_disk``: what the training tests train from."""
    from codebind_hf import CodeBindConfig, CodeBindModel
    from codebind_hf.training.config import load_config_file

    torch.manual_seed(0)
    config = load_config_file("tiny")["model"]["config"]
    CodeBindModel(CodeBindConfig(**{**config, "paths": {}})).save_pretrained(root / "base")
    toy_dataset_dict().save_to_disk(str(root / data))
    return root


def tiny_run_values(workdir, output_dir, dataset, **training) -> dict:
    """The ``tiny`` training config as a dict, set to train the base in ``workdir / "base"`` (see
    `tiny_training_workdir`) on ``dataset`` (a folder or a `datasets.DatasetDict`) into ``output_dir``;
    ``training`` updates its ``training`` section."""
    from codebind_hf.training.config import load_config_file

    values = load_config_file("tiny")
    values["model"] = {"name_or_path": str(workdir / "base")}
    values["data"]["dataset"] = dataset
    values["training"].update(output_dir=str(output_dir), **training)
    return values
