"""Names of the modalities CodeBind knows, their processor keys and their aliases."""

from __future__ import annotations

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


def canonical_modality(name: str) -> str:
    """Map a user-facing modality name (``"image"``, ``"point_clouds"``, ...) to its canonical name.

    Raises:
        ValueError: when the name is not a known modality.
    """
    if not isinstance(name, str):
        raise TypeError(f"modality must be a string, got {type(name).__name__}")
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in MODALITIES:
        raise ValueError(f"Unknown modality {name!r}; expected one of {list(MODALITIES)} (or aliases {sorted(ALIASES)}).")
    return key


__all__ = ["MODALITIES", "INPUT_KEYS", "VIDEO_INPUT_KEY", "ALIASES", "canonical_modality"]
