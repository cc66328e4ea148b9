"""Per-row decoding of dataset values into what a processor takes, with errors that name the row and column.

Images (PIL, ``{"bytes", "path"}`` dicts, file paths) are opened with PIL; audio is a float sequence plus a
sampling rate, a ``{"array", "sampling_rate"}`` dict, a WAV/``.npy`` path or WAV bytes (read with the standard
library's ``wave``: `datasets`' ``Audio`` feature needs torchcodec, which this project does not use); sensor
modalities are float arrays. Missing values, unreadable files, empty or non-finite arrays raise `BadRowError`.
"""

from __future__ import annotations

import io
import os
import wave

import numpy as np

IMAGE_LIKE = ("vision", "depth", "thermal", "tactile")


class BadRowError(ValueError):
    """A row that cannot be decoded; ``row`` is its index in the split, ``column`` the offending column."""

    def __init__(self, row: int, column: str, reason: str):
        super().__init__(f"row {row}, column {column!r}: {reason}")
        self.row, self.column, self.reason = row, column, reason


def read_wav(source) -> tuple[np.ndarray, int]:
    """PCM WAV (8/16/24/32-bit) from a path or bytes -> float32 `(samples,)` (mono) or `(channels, samples)`, rate."""
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with wave.open(handle, "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        data = np.where(ints >= 1 << 23, ints - (1 << 24), ints).astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - wave rejects other widths itself
        raise ValueError(f"unsupported WAV sample width {width} bytes")
    data = data.reshape(-1, channels).T
    return (data[0] if channels == 1 else data), rate


def _as_float_array(value, row: int, column: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise BadRowError(row, column, f"cannot convert {type(value).__name__} to a float array ({err})") from err
    if array.size == 0:
        raise BadRowError(row, column, f"empty array (shape {array.shape})")
    if not np.isfinite(array).all():
        raise BadRowError(row, column, "contains NaN or inf values")
    return array


def _open_image(value, row: int, column: str):
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                image = Image.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                image = Image.open(value["path"])
            else:
                raise BadRowError(row, column, "image dict has neither 'bytes' nor 'path'")
        else:
            image = Image.open(value)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise BadRowError(row, column, f"cannot decode the image ({err})") from err


def decode_image_like(value, row: int, column: str):
    """PIL image for image values and files, a float array for array values."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) or isinstance(value, (str, os.PathLike)):
        return _open_image(value, row, column)
    return _as_float_array(value, row, column)


def decode_audio(value, rate, row: int, column: str) -> tuple[np.ndarray, int]:
    """``(waveform, sampling_rate)`` from a float sequence (+ rate), an array dict, a WAV/.npy path or WAV bytes."""
    if isinstance(value, dict) and "array" in value:
        value, rate = value["array"], value.get("sampling_rate", rate)
    elif isinstance(value, dict) or isinstance(value, (str, os.PathLike, bytes)):
        source = value.get("bytes") or value.get("path") if isinstance(value, dict) else value
        if source is None:
            raise BadRowError(row, column, "audio dict has neither 'bytes' nor 'path'")
        try:
            if isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".npy"):
                value = np.load(source, allow_pickle=False)
            else:
                value, rate = read_wav(source)
        except (OSError, EOFError, wave.Error, ValueError) as err:
            reason = f"cannot read audio (PCM WAV or .npy expected; convert other formats to float arrays): {err}"
            raise BadRowError(row, column, reason) from err
    array = _as_float_array(value, row, column)
    if array.ndim not in (1, 2):
        raise BadRowError(row, column, f"audio must be (samples,) or (channels, samples), got shape {array.shape}")
    if rate is None:
        raise BadRowError(row, column, "no sampling rate: add a sampling_rate column or set data.sampling_rate")
    try:
        rate = int(rate)
    except (TypeError, ValueError) as err:
        raise BadRowError(row, column, f"sampling rate {rate!r} is not an integer") from err
    if rate <= 0:
        raise BadRowError(row, column, f"sampling rate must be positive, got {rate}")
    return array, rate


def decode_text(value, row: int, column: str) -> list[str]:
    """Caption candidates of a row: a string, or a non-empty list of strings."""
    candidates = [value] if isinstance(value, str) else value
    if not isinstance(candidates, (list, tuple)) or not candidates or not all(isinstance(c, str) and c.strip() for c in candidates):
        raise BadRowError(row, column, f"captions must be a non-empty string or list of strings, got {value!r:.80}")
    return list(candidates)


def decode_value(modality: str, value, row: int, column: str, rate=None):
    """Decode one value of ``modality``; audio returns ``(waveform, rate)``."""
    if value is None:
        raise BadRowError(row, column, "value is missing (None)")
    if modality == "audio":
        return decode_audio(value, rate, row, column)
    if modality == "text":
        return decode_text(value, row, column)
    if modality in IMAGE_LIKE:
        return decode_image_like(value, row, column)
    if isinstance(value, (str, os.PathLike)):  # a sensor recording saved as .npy (docs/new-sensor.md)
        return _as_float_array(_load_npy(value, row, column), row, column)
    return _as_float_array(value, row, column)


def _load_npy(path, row: int, column: str) -> np.ndarray:
    if not str(path).lower().endswith(".npy"):
        raise BadRowError(row, column, f"{path} is not a .npy file; sensor columns hold arrays or .npy paths")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BadRowError(row, column, f"cannot read {path} ({err})") from err


__all__ = ["BadRowError", "read_wav", "decode_value", "decode_audio", "decode_image_like", "decode_text", "IMAGE_LIKE"]
