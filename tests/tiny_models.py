"""Tiny random CodeBind configurations shared by the tests."""

from codebind_hf import CodeBindConfig

VIT = {
    "model_type": "vit",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 16,
    "patch_size": 8,
}
BERT = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "vocab_size": 100,
    "max_position_embeddings": 32,
}


def tiny_config(decoder: bool = True, **overrides) -> CodeBindConfig:
    """text (BERT) + vision (ViT) bridges and a depth target (1-channel ViT); dims 32, codebooks 64/32."""
    kwargs = dict(
        modalities={
            "text": {"family": "hf", "backbone": BERT},
            "vision": {"family": "hf", "backbone": VIT},
            "depth": {"family": "hf", "backbone": {**VIT, "num_channels": 1}},
        },
        paths={"depth": {"bridges": ["text", "vision"]}},
        embed_dim=32,
        specific_dim=32,
        quantizer={"shared_codebook_size": 64, "specific_codebook_size": 32},
        decoder={"enabled": decoder, "hidden_size": 32, "num_layers": 1, "num_heads": 4},
    )
    kwargs.update(overrides)
    return CodeBindConfig(**kwargs)


def load_script(relative_file: str):
    """Import a script of the repository (e.g. ``benchmarks/perf/index.py``) as a module, by its file path."""
    import importlib.util
    from pathlib import Path

    file = Path(__file__).resolve().parent.parent / relative_file
    spec = importlib.util.spec_from_file_location(file.stem + "_script", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mark_codebooks_trained(model):
    """Flag every codebook of ``model`` as trained, so its (random) codevectors quantise: tests of the quantisation
    mechanics on tiny random models (a real model gets there through k-means init and training). Returns the model."""
    from codebind_hf.quantization.quantizer import CompositionalQuantizer

    for module in model.modules():
        if isinstance(module, CompositionalQuantizer):
            module.initialized.fill_(True)
    return model


def save_depth_model_and_data(root, rows: int, labels: bool = False) -> None:
    """A tiny model with random codebooks flagged trained (``root/model``) and ``rows`` random 16x16 depth maps with
    names ``item<i>`` (and labels ``i % 3``) as a ``save_to_disk`` dataset (``root/data``): the inputs of the tests
    that check how embedding and index builds are split and stored, not training."""
    import datasets
    import torch

    from codebind_hf import CodeBindModel

    torch.manual_seed(0)
    mark_codebooks_trained(CodeBindModel(tiny_config(decoder=False))).eval().save_pretrained(root / "model")
    values = torch.randn(rows, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    columns = {"depth": values.tolist(), "name": [f"item{i}" for i in range(rows)]}
    if labels:
        columns["label"] = [i % 3 for i in range(rows)]
    datasets.Dataset.from_dict(columns).save_to_disk(str(root / "data"))
