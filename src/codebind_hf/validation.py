"""Checks of user inputs, run before any computation: each refusal says what was wrong, what was expected and,
for files, which file.

The model, the processors, the config, the artifact readers and the trainer call these; each helper covers one
class of bad input (token ids, masks, batches, sampling rates, sensor windows, config keys and types, non-finite
weights, JSON schemas, empty datasets, diverging losses).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping

import torch

MIN_SAMPLING_RATE = 1000  # Hz; below this a rate is almost surely given in kHz


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or an empty string.

    Example:

    ```python
    >>> did_you_mean("embed_dims", ["embed_dim", "specific_dim"])
    " (did you mean 'embed_dim'?)"

    ```
    """
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------- tensors
def check_finite_tensors(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse NaN or infinite values in any floating tensor of ``tensors``, naming the first few.

    Example:

    ```python
    >>> check_finite_tensors({"w": torch.tensor([1.0, float("nan")])}, "path.safetensors")
    Traceback (most recent call last):
    ...
    ValueError: path.safetensors holds non-finite values (NaN or inf) in w (1 of 2 values); refusing them, since every embedding computed with them would be NaN

    ```
    """
    bad = []
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex()) and tensor.numel():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append(f"{name} ({count} of {tensor.numel()} values)")
    if bad:
        more = f" and {len(bad) - 5} more tensors" if len(bad) > 5 else ""
        raise ValueError(
            f"{where} holds non-finite values (NaN or inf) in {', '.join(bad[:5])}{more}; refusing them, since every "
            "embedding computed with them would be NaN"
        )


def check_token_ids(input_ids: torch.Tensor, vocab_size: int | None, max_length: int | None, what: str = "text") -> None:
    """Token ids must be integers in ``[0, vocab_size)`` and sequences at most ``max_length`` long."""
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids ({what}) must be integer token ids, got dtype {input_ids.dtype}")
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids ({what}) must have shape (batch, length), got {tuple(input_ids.shape)}")
    if max_length is not None and input_ids.shape[1] > max_length:
        raise ValueError(
            f"input_ids ({what}) has length {input_ids.shape[1]}, more than the {max_length} positions of the {what} "
            "tower; truncate the text (the processor's truncation=True)"
        )
    # The value checks read the data: done eagerly, left out of a traced/exported graph (shapes are checked there too).
    if vocab_size is not None and input_ids.numel() and not torch.compiler.is_compiling():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= vocab_size:
            row, col = [int(i) for i in torch.nonzero((input_ids < 0) | (input_ids >= vocab_size))[0]]
            raise ValueError(
                f"input_ids ({what}) must lie in [0, {vocab_size}) (the {what} tower's vocabulary); got values in "
                f"[{low}, {high}], e.g. {int(input_ids[row, col])} at row {row}, position {col} (a tokenizer of "
                "another model?)"
            )


def check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> None:
    """An attention mask must have the shape of ``input_ids`` and hold only 0 and 1."""
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, but input_ids has {tuple(input_ids.shape)}; "
            "expected the same (batch, length)"
        )
    if attention_mask.numel() and not torch.compiler.is_compiling() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")


def check_batch(modality: str, inputs: torch.Tensor) -> None:
    """A batch needs at least one sample."""
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError(f"{modality} inputs are an empty batch (shape {tuple(inputs.shape)}); give at least one sample")


def check_batch_sizes(sizes: Mapping[str, int], why: str) -> None:
    """Every modality of a paired batch must have the same batch size; the message names each."""
    if torch.compiler.is_compiling():  # symbolic sizes under export: the graph's own shape checks apply
        return
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{m} {n}" for m, n in sizes.items())
        raise ValueError(f"batch sizes differ between modalities ({listed}); {why}")


# ---------------------------------------------------------------------------------------------- signals
def check_sampling_rate(rate, what: str = "audio") -> None:
    """A sampling rate must be a positive number of Hz, at least `MIN_SAMPLING_RATE`.

    Example:

    ```python
    >>> check_sampling_rate(16)
    Traceback (most recent call last):
    ...
    ValueError: sampling_rate=16 for audio is implausible (below 1000 Hz); sampling rates are in Hz: 16 kHz is 16000

    ```
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"sampling_rate for {what} must be a positive number of Hz, got {rate!r}")
    if rate < MIN_SAMPLING_RATE:
        hint = f": {rate:g} kHz is {rate * 1000:g}" if rate >= 1 else ""
        raise ValueError(
            f"sampling_rate={rate:g} for {what} is implausible (below {MIN_SAMPLING_RATE} Hz); sampling rates are in Hz{hint}"
        )


def check_window(length: int, expected: int, what: str) -> None:
    """A sensor recording shorter than the tower's window is refused (it would be stretched or padded into
    something else)."""
    if length < expected:
        raise ValueError(
            f"{what} has {length} time steps, fewer than the {expected} the tower's window takes; give at least "
            f"{expected} steps (or pad the recording yourself, e.g. with zeros, if that is what you mean)"
        )


def check_sample_shapes(modality: str, shapes: Mapping[str, Iterable[int] | None]) -> None:
    """The shapes of one sample that the parts of a modality declare (its spec's ``sample_shape``, its processor's
    output, its tower's input) must agree; ``None`` where a part does not say.

    Example:

    ```python
    >>> check_sample_shapes("radar", {"spec": [2, 64, 64], "processor output": [2, 64, 32], "tower input": None})
    Traceback (most recent call last):
    ...
    ValueError: radar: the shapes of one sample disagree: spec (2, 64, 64), processor output (2, 64, 32); the processor must produce what the tower takes

    ```
    """
    given = {what: tuple(shape) for what, shape in shapes.items() if shape is not None}
    if len(set(given.values())) > 1:
        listed = ", ".join(f"{what} {shape}" for what, shape in given.items())
        raise ValueError(f"{modality}: the shapes of one sample disagree: {listed}; the processor must produce what the "
                         "tower takes")


# ---------------------------------------------------------------------------------------------- documents
def check_keys(given: Iterable[str], known: Iterable[str], where: str, shown: Iterable[str] | None = None) -> None:
    """Refuse keys of ``given`` that are not in ``known``, each with a "did you mean" (the message lists ``shown``,
    default ``known``, as the expected keys).

    Example:

    ```python
    >>> check_keys({"embed_dims": 32}, ["embed_dim", "specific_dim"], "CodeBindConfig")
    Traceback (most recent call last):
    ...
    ValueError: Unknown CodeBindConfig keys 'embed_dims' (did you mean 'embed_dim'?); expected some of ['embed_dim', 'specific_dim']

    ```
    """
    known = list(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = "; ".join(f"{key!r}{did_you_mean(key, known)}" for key in unknown)
        raise ValueError(f"Unknown {where} keys {listed}; expected some of {sorted(known if shown is None else shown)}")


def check_fields(document: Mapping, schema: Mapping[str, type | tuple[type, ...]], where: str,
                 required: Iterable[str] | None = None) -> None:
    """Every ``required`` key (default: all of ``schema``) must be present, and every key of ``schema`` present
    must have one of its types (``bool`` is not an ``int``; an ``int`` is a valid ``float``)."""
    missing = sorted(set(schema if required is None else required) - set(document))
    if missing:
        raise ValueError(f"{where} lacks the required keys {missing}")
    for key, types in schema.items():
        if key not in document:
            continue
        types = types if isinstance(types, tuple) else (types,)
        value = document[key]
        ok = any(_is_a(value, t) for t in types)
        if not ok:
            names = " or ".join(t.__name__ if t is not type(None) else "null" for t in types)
            raise TypeError(f"{where}: {key!r} must be {names}, got {type(value).__name__} {value!r:.60}")


def _is_a(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


# ---------------------------------------------------------------------------------------------- runs
def check_output_dir_free(output_dir, finished_marker: str, what: str, overwrite: bool = False,
                          resume: bool = False, resumable: bool = True) -> bool:
    """Refuse an output folder holding a finished run (it has ``finished_marker``), unless ``overwrite`` (replace it)
    or ``resume`` (continue it; ``resumable=False`` for runs that cannot be continued). Returns whether a finished
    run is there.

    Raises:
        FileExistsError: naming the folder, the file that marks the run finished, and both flags.
    """
    from pathlib import Path

    marker = Path(output_dir) / finished_marker
    finished = marker.exists()
    if finished and not (overwrite or resume):
        resume_hint = ", --resume_from_checkpoint to continue it" if resumable else ""
        raise FileExistsError(
            f"{output_dir} holds a finished {what} ({marker.name} is there); refusing to overwrite it. Pass "
            f"--overwrite_output_dir to replace it{resume_hint}, or choose another output dir"
        )
    return finished


# ---------------------------------------------------------------------------------------------- training
def check_dataset_not_empty(num_rows: int | None, source: str, split: str | None = None) -> None:
    """An empty training or evaluation split is refused, naming where it came from."""
    if num_rows == 0:
        where = f" split {split!r}" if split else ""
        raise ValueError(f"the dataset{where} from {source} has no rows; check the path, the split and any filters")


def check_finite_losses(losses: Mapping[str, torch.Tensor], step: int, lrs: Mapping[str, float]) -> None:
    """Stop a diverging run at the first non-finite loss, naming the step, the learning rates and the losses."""
    values = {name: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for name, v in losses.items()}
    bad = {name: value for name, value in values.items() if not math.isfinite(value)}
    if bad:
        rates = ", ".join(f"{group} {lr:.3g}" for group, lr in lrs.items())
        raise FloatingPointError(
            f"training diverged at step {step} (learning rate {rates}): the loss term(s) "
            f"{', '.join(f'{k}={v}' for k, v in sorted(bad.items()))} went non-finite; lower the learning rate or "
            "that loss's weight, or enable training.max_grad_norm"
        )


def divergence_error(step: int, lrs: Mapping[str, float], cause: Exception, parameters, recent: Mapping[str, list]) -> FloatingPointError:
    """The error for a run whose forward pass met NaN/inf (``cause``): the step, the learning rates, the trainable
    tensors that went non-finite and the last value of each loss (the one that grew is the suspect)."""
    rates = ", ".join(f"{group} {lr:.3g}" for group, lr in lrs.items())
    trainable = [(name, p.detach()) for name, p in parameters if p.requires_grad and p.numel()]
    broken = [name for name, p in trainable if not bool(torch.isfinite(p).all())]
    if broken:
        weights = f"non-finite trainable tensors: {broken[:5]}"
    else:  # finite but huge weights overflow in the forward pass
        largest = sorted(((float(p.abs().max()), name) for name, p in trainable), reverse=True)[:3]
        weights = "largest trainable weights: " + ", ".join(f"{name} (max |w| {value:.3g})" for value, name in largest)
    last = ", ".join(f"{name}={values[-1]:.4g}" for name, values in sorted(recent.items()) if values)
    return FloatingPointError(
        f"training diverged at step {step} (learning rate {rates}): the forward pass met non-finite values ({cause}); "
        f"{weights}; last losses: {last or 'none yet'}; lower the learning rate or a loss weight, or enable "
        "training.max_grad_norm"
    )


__all__ = [
    "divergence_error",
    "did_you_mean",
    "check_finite_tensors",
    "check_token_ids",
    "check_attention_mask",
    "check_batch",
    "check_batch_sizes",
    "check_sampling_rate",
    "check_window",
    "check_sample_shapes",
    "check_keys",
    "check_fields",
    "check_output_dir_free",
    "check_dataset_not_empty",
    "check_finite_losses",
    "MIN_SAMPLING_RATE",
]
