"""Toy data and processor for the training tests (no tests here; also imported by subprocess runs): the package's
toy pairing (`codebind_hf.training.toy`) and the tests' working folders built on it."""

import torch

from codebind_hf.training.toy import CLASSES, ToyProcessor, toy_columns, toy_dataset_dict  # noqa: F401


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
