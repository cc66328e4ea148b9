"""The model side of an index: running it (`inference`, shared by `codebind_hf.index.core` and
`codebind_hf.index.build`), and which of its paths and codebooks an index uses (`model_path`, `codebook_of`)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def inference(model):
    """Eval mode and no grad for the duration; the model's train/eval state is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def is_batch(inputs) -> bool:
    """Whether ``inputs`` is one batch (a tensor or a processor's mapping) rather than an iterable of batches."""
    return isinstance(inputs, torch.Tensor) or hasattr(inputs, "keys")


def model_path(model, modality: str | None, path: str | None) -> str:
    """The path whose shared codebook an index over ``model`` uses."""
    if path is not None or modality is not None:
        return model.resolve_path(modality or path, path)
    if len(model.quantizers) != 1:
        raise ValueError(f"the model has paths {sorted(model.quantizers)}; pass modality= or path= to choose a codebook")
    return next(iter(model.quantizers))


def codebook_of(source, path: str | None) -> tuple[torch.Tensor, str]:
    """``(codebook, description)`` of a codebook tensor, a quantizer, or a model's path."""
    if isinstance(source, torch.Tensor):
        return source, "the given codebook"
    if hasattr(source, "quantizers"):
        if path is None:
            path = model_path(source, None, None)
        if path not in source.quantizers:
            raise ValueError(
                f"codebook mismatch: the index uses path {path!r}, but the model has paths {sorted(source.quantizers)}"
            )
        return source.quantizers[path].shared.codebook, f"the model's path {path!r}"
    if hasattr(source, "codebook"):
        return source.codebook, "the given quantizer"
    raise TypeError(f"expected a codebook tensor, a CompositionalQuantizer or a CodeBindModel, got {type(source).__name__}")
