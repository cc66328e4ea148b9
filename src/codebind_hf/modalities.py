"""Names of the modalities CodeBind knows, their processor keys and aliases, and the specs of new modalities.

The nine known modalities (`MODALITIES`) keep their names, aliases and input keys. Any other identifier names a
modality too once it comes with its *spec* (a radar, a lidar, a force sensor ...): the tower (family and settings),
the input key of its tensor (default ``<name>_values``), the shape of one sample, whether it has a specific part, and
its processor component. `modality_entry` turns a spec into the form ``CodeBindConfig.modalities`` stores (the
tower's dict with the spec's keys beside its settings, as the nine known modalities have always been stored), and
`modality_spec` gives the spec back.
"""

from __future__ import annotations

from collections.abc import Mapping

from .validation import check_keys, did_you_mean

# Canonical modality names. "vision" covers images and videos, as in ImageBind.
MODALITIES: tuple[str, ...] = ("text", "vision", "audio", "depth", "thermal", "imu", "tactile", "eeg", "point")

# The key each modality's processed tensor has in a `BatchFeature` / `CodeBindModel.forward` call.
INPUT_KEYS: dict[str, str] = {
    "text": "input_ids",
    "vision": "pixel_values",
    "audio": "audio_values",
    "depth": "depth_values",
    "thermal": "thermal_values",
    "imu": "imu_values",
    "tactile": "tactile_values",
    "eeg": "eeg_values",
    "point": "point_values",
}
# Videos are a second input key of the vision tower.
VIDEO_INPUT_KEY = "pixel_values_videos"

ALIASES: dict[str, str] = {
    "image": "vision",
    "images": "vision",
    "video": "vision",
    "videos": "vision",
    "point_cloud": "point",
    "point_clouds": "point",
    "pointcloud": "point",
    "3d": "point",
}

# What a spec holds besides its tower; ``tower`` is the nested form (`modality_entry` flattens it).
SPEC_KEYS = ("tower", "input_key", "sample_shape", "sample_ndim", "has_specific", "processor", "description")
# Names a new modality cannot take: keywords of `CodeBindProcessor.__call__` and of the trainer's ``data.columns``,
# which a modality name doubles as.
RESERVED_NAMES = ("sampling_rate", "return_tensors", "video_fps", "depth_input_type", "return_attention_mask", "padding",
                  "max_length", "truncation", "do_sample_frames", "label", "labels", "grade", "kwargs")
# `CodeBindModel.forward` arguments that are not a modality's tensor: no input key may take them.
RESERVED_INPUT_KEYS = ("attention_mask", VIDEO_INPUT_KEY, "return_loss", "path", "output_hidden_states",
                       "output_attentions", "return_dict", "kwargs")


def canonical_modality(name: str) -> str:
    """Map a user-facing modality name (``"image"``, ``"point_clouds"``, ``"Radar"``, ...) to its canonical name.

    Known names and their aliases map to one of `MODALITIES`; any other identifier is a (new) modality's name, in
    lower case. Whether a model has that modality is the model's to say.

    Example:

    ```python
    >>> canonical_modality("Images"), canonical_modality("point_clouds"), canonical_modality("radar")
    ('vision', 'point', 'radar')

    ```

    Raises:
        ValueError: when the name is no identifier (a new modality names a processor keyword and an input key).
    """
    if not isinstance(name, str):
        raise TypeError(f"modality must be a string, got {type(name).__name__}")
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in MODALITIES and not key.isidentifier():
        raise ValueError(f"Unknown modality {name!r}; expected one of {list(MODALITIES)} (or aliases {sorted(ALIASES)}), or "
                         "an identifier naming a new modality")
    return key


def is_known(modality: str) -> bool:
    """Whether ``modality`` (canonical) is one of the nine modalities this package knows by name."""
    return modality in MODALITIES


def check_new_modality_name(name: str) -> str:
    """The canonical name of a modality to add; refuses aliases, processor keywords and non-identifiers, naming them.

    Example:

    ```python
    >>> check_new_modality_name("image")
    Traceback (most recent call last):
    ...
    ValueError: 'image' is an alias of the vision modality; name the new modality otherwise
    >>> check_new_modality_name("Radar")
    'radar'

    ```
    """
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"a modality name must be an identifier not starting with '_' (it names a processor keyword "
                         f"and an input key), got {name!r}")
    if name.lower() in ALIASES:
        raise ValueError(f"{name!r} is an alias of the {ALIASES[name.lower()]} modality; name the new modality otherwise")
    if name.lower() in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a keyword of the processor or the trainer's data.columns; name the modality "
                         f"otherwise (reserved: {sorted(RESERVED_NAMES)})")
    return name.lower()


def _shape(value, where: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value):
        raise ValueError(f"{where}.sample_shape must be a non-empty list of positive ints (one sample, without the batch "
                         f"axis), got {value!r}")
    return list(value)


def modality_entry(name: str, entry: Mapping) -> dict:
    """The stored form of ``modalities[name]``: a tower dict (``family`` and its settings), or a spec.

    A spec is ``{"tower": {...}, "input_key": ..., "sample_shape": [...], "has_specific": ..., "processor": {...},
    "description": ...}`` (all but ``tower`` optional for the nine known modalities; a new one needs ``sample_shape``
    or ``sample_ndim``). The stored form puts the spec's keys beside the tower's settings; a new modality's always
    has its ``input_key``, which is how a saved config tells it from a typo. A processor component object is stored
    as its ``to_dict()``.

    Example:

    ```python
    >>> vit = {"model_type": "vit", "num_channels": 2, "image_size": 64}
    >>> entry = modality_entry("radar", {"tower": {"family": "hf", "backbone": vit}, "sample_shape": [2, 64, 64]})
    >>> entry["input_key"], entry["sample_ndim"], modality_spec(entry)["tower"]["family"]
    ('radar_values', 3, 'hf')

    ```
    """
    where = f"modalities[{name!r}]"
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a dict (a tower config, or a spec with a 'tower'), got {type(entry).__name__}")
    entry = dict(entry)
    nested = "tower" in entry
    if nested:
        check_keys(entry, SPEC_KEYS, f"{where} spec")
        tower = entry.pop("tower")
        if not isinstance(tower, Mapping):
            raise TypeError(f"{where}['tower'] must be a dict with the tower's 'family' and settings, got {type(tower).__name__}")
        both = sorted(set(tower) & set(entry))
        if both:
            raise ValueError(f"{where}: {both} given both in the spec and in its tower; give each once")
        entry = {**tower, **entry}
    if not is_known(name) and not nested and "input_key" not in entry:
        raise ValueError(
            f"Unknown modality {name!r}{did_you_mean(name, MODALITIES)}: the known ones are {list(MODALITIES)} (aliases "
            f"{sorted(ALIASES)}); a new modality needs its spec, {{'tower': {{...}}, 'sample_shape': [...]}} (or "
            "CodeBindModel.add_modality)"
        )
    if "processor" in entry and entry["processor"] is not None and not isinstance(entry["processor"], Mapping):
        to_dict = getattr(entry["processor"], "to_dict", None)
        if not callable(to_dict):
            raise TypeError(f"{where}['processor'] must be a processor component or its dict, got {type(entry['processor']).__name__}")
        entry["processor"] = to_dict()
    if "sample_shape" in entry:
        entry["sample_shape"] = _shape(entry["sample_shape"], where)
        if entry.setdefault("sample_ndim", len(entry["sample_shape"])) != len(entry["sample_shape"]):
            raise ValueError(f"{where}: sample_ndim={entry['sample_ndim']} but sample_shape {entry['sample_shape']} has "
                             f"{len(entry['sample_shape'])} dims")
    if is_known(name):
        if entry.get("input_key", INPUT_KEYS[name]) != INPUT_KEYS[name]:
            raise ValueError(f"{where}: the {name} modality's input key is {INPUT_KEYS[name]!r}, got {entry['input_key']!r}")
        return entry
    if "sample_ndim" not in entry:
        raise ValueError(f"{where}: a new modality needs the shape of one sample, sample_shape (e.g. [2, 64, 64]), or at "
                         "least sample_ndim")
    key = entry.setdefault("input_key", f"{name}_values")
    if not isinstance(key, str) or not key.isidentifier() or key in RESERVED_INPUT_KEYS or key in INPUT_KEYS.values():
        raise ValueError(f"{where}: input_key {key!r} must be an identifier that is neither another modality's key "
                         f"({sorted(INPUT_KEYS.values())}) nor a forward() argument ({list(RESERVED_INPUT_KEYS)})")
    return entry


def modality_spec(entry: Mapping) -> dict:
    """The spec of a stored ``modalities[name]`` entry: ``{"tower": {...}, <spec keys given>}`` (the inverse of
    `modality_entry`)."""
    tower = {k: v for k, v in entry.items() if k not in SPEC_KEYS}
    return {"tower": tower, **{k: entry[k] for k in SPEC_KEYS if k in entry and k != "tower"}}


def check_input_keys(entries: Mapping[str, Mapping]) -> None:
    """No two modalities of one model may share an input key (the forward call could not tell them apart)."""
    seen: dict[str, str] = {}
    for name, entry in entries.items():
        key = INPUT_KEYS.get(name) or entry.get("input_key", f"{name}_values")
        if key in seen:
            raise ValueError(f"modalities {seen[key]!r} and {name!r} both take the input key {key!r}; give one another "
                             "input_key")
        seen[key] = name


__all__ = ["MODALITIES", "INPUT_KEYS", "VIDEO_INPUT_KEY", "ALIASES", "SPEC_KEYS", "RESERVED_NAMES", "RESERVED_INPUT_KEYS",
           "canonical_modality", "is_known", "check_new_modality_name", "modality_entry", "modality_spec",
           "check_input_keys"]
