"""A learnable toy pairing for the ``tiny`` training config: a processor and a dataset, so that
``codebind-train --config tiny`` runs anywhere in seconds (smoke runs, tests, the documentation's examples).

Every row belongs to one of ``CLASSES``; its depth map ``(1, 16, 16)`` and image ``(3, 16, 16)`` are the class's
fixed random pattern plus noise, and its text is a prompt of the class name, which `ToyProcessor` hashes into the
tiny BERT's 100 ids.

    python -m codebind_hf.training.toy ./toy            # writes the dataset with save_to_disk
    codebind-train --config tiny --dataset ./toy --output_dir runs/tiny

Example:

```python
>>> from codebind_hf.training.toy import ToyProcessor, toy_dataset_dict
>>> data = toy_dataset_dict(train_rows=8, eval_rows=4)
>>> {split: len(rows) for split, rows in data.items()}
{'train': 8, 'validation': 4}
>>> ToyProcessor()(text=["apple photo"])["input_ids"].shape
torch.Size([1, 8])

```
"""

from __future__ import annotations

import argparse

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


def main(argv: list[str] | None = None) -> int:
    """``python -m codebind_hf.training.toy OUTPUT_DIR [--train-rows N] [--eval-rows N]``."""
    parser = argparse.ArgumentParser(prog="python -m codebind_hf.training.toy",
                                     description="Write the toy dataset of the tiny training config (save_to_disk).")
    parser.add_argument("output_dir")
    parser.add_argument("--train-rows", type=int, default=64)
    parser.add_argument("--eval-rows", type=int, default=16)
    args = parser.parse_args(argv)
    toy_dataset_dict(args.train_rows, args.eval_rows).save_to_disk(args.output_dir)
    print(f"wrote the toy dataset ({args.train_rows} train / {args.eval_rows} validation rows) to {args.output_dir}")
    return 0


__all__ = ["CLASSES", "ToyProcessor", "toy_columns", "toy_dataset_dict", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
