"""A run's new sensor: the ``modality`` block of a training config (docs/new-sensor.md).

Before the path is set up, `add_run_modality` gives the base model the block's modality (its tower freshly
initialised, its processor component with the statistics of the training split when ``compute_statistics``); the
path the run trains then carries that tower, spec and component (`codebind_hf.adapters.path_towers`).
`with_modality_processors` makes the run's processor take the new modality's arrays: a `CodeBindProcessor` gets the
component (and saves it with the model), any other processor is wrapped in `SensorProcessors`.
"""

from __future__ import annotations

import logging

from ..feature_extraction_array_sensor import CodeBindArraySensorFeatureExtractor
from ..modalities import canonical_modality, is_known

from .batching import processor_fingerprint
from .config import DataArguments, ModalityArguments, TrainConfig
from .data import get_split, load_dataset_dict
from .decoding import decode_value

logger = logging.getLogger("codebind_hf.training")


def sensor_component(args: ModalityArguments, data: DataArguments | None = None) -> CodeBindArraySensorFeatureExtractor:
    """The block's processor component; with ``compute_statistics``, fitted to the first ``statistics_rows`` rows of
    the training split (``data``)."""
    name = canonical_modality(args.name)
    settings = {"modality": name, "shape": list(args.sample_shape), **({"input_key": args.input_key} if args.input_key else {}),
                **args.processor}
    component = CodeBindArraySensorFeatureExtractor(**settings)
    if args.compute_statistics:
        split = get_split(load_dataset_dict(data), data.train_split)
        column = (data.columns or {}).get(name) or name
        if column not in split.column_names:
            raise ValueError(f"modality.compute_statistics: the training split has no column {column!r} (set "
                             f"modality.column); its columns are {split.column_names}")
        values = split.select(range(min(args.statistics_rows, len(split))))[column]
        component.fit([decode_value(name, value, row, column) for row, value in enumerate(values)])
        logger.info("%s statistics from %d rows: mean %s, std %s", name, len(values), component.mean, component.std)
    return component


def run_modality_spec(args: ModalityArguments, data: DataArguments | None = None) -> dict:
    """The spec `CodeBindModel.add_modality` takes, from the block."""
    spec = {"tower": dict(args.tower), "sample_shape": list(args.sample_shape), "has_specific": args.has_specific,
            "processor": sensor_component(args, data)}
    if args.input_key:
        spec["input_key"] = args.input_key
    if args.description:
        spec["description"] = args.description
    return spec


def add_run_modality(model, config: TrainConfig) -> str | None:
    """Add the block's modality to ``model`` unless it has one of that name already (a base that brings it, e.g. a
    run continued from its full model); returns the name, or None without a block."""
    args = config.modality
    if args.name is None:
        return None
    name = canonical_modality(args.name)
    if name in model.towers:
        logger.info("the model already has a %s modality; the modality block adds nothing", name)
        return name
    return model.add_modality(name, run_modality_spec(args, config.data))


class SensorProcessors:
    """A processor of the known modalities plus the components of new ones: ``<name>=arrays`` goes to that
    modality's component, everything else to ``processor``.

    Args:
        processor: any callable with `CodeBindProcessor`'s keywords.
        components (`dict`): new modality -> its processor component.
    """

    def __init__(self, processor, components: dict):
        self.processor, self.components = processor, dict(components)

    def __call__(self, **kwargs) -> dict:
        mine = {name: kwargs.pop(name) for name in list(kwargs) if name in self.components}
        out = dict(self.processor(**kwargs)) if any(v is not None for v in kwargs.values()) else {}
        for name, arrays in mine.items():
            if arrays is not None:
                out.update(self.components[name](arrays, return_tensors="pt"))
        return out

    def to_dict(self) -> dict:
        """What identifies the output (the feature cache's key): the processor and every component's settings."""
        return {"processor": processor_fingerprint(self.processor),
                "components": {name: c.to_dict() for name, c in sorted(self.components.items())}}


def with_modality_processors(processor, model, modalities: list[str]):
    """``processor`` taking the arrays of the run's new modalities too (see the module docstring)."""
    components = {m: model.modality_processor(m) for m in modalities if not is_known(m)}
    components = {m: c for m, c in components.items() if c is not None}
    if not components:
        return processor
    if callable(getattr(processor, "add_modality", None)) and isinstance(getattr(processor, "modality_processors", None), dict):
        for name, component in components.items():
            processor.add_modality(name, component)
        return processor
    return SensorProcessors(processor, components)


__all__ = ["add_run_modality", "run_modality_spec", "sensor_component", "SensorProcessors", "with_modality_processors"]
