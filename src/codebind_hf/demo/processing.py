"""The demo's processor: what the path trainer calls to turn dataset rows into model inputs.

The demo's text tower is a table of frozen MiniLM prompt embeddings, so "tokenising" a prompt means finding
its row; audio arrives as raw 16 kHz waveforms (float sequences plus a sampling rate, the schema any user
dataset has) and becomes the normalised log-mel spectrogram the audio ViT takes; images are already
`(1, size, size)` arrays in `[-1, 1]`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from .data import DemoData, audio_features


def _clip_key(clip) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(clip, dtype=np.float32).tobytes(), digest_size=16).digest()


class RowTrace:
    """The rows a processor was given, call by call, recognised by a hash of their waveform.

    The trainer's collator hands the processor waveforms, not row numbers; every demo clip is unique (seeded noise),
    so the hash of its samples names its row in ``waves`` (the training split the subsets index).

    Example:

    ```python
    >>> import numpy as np
    >>> trace = RowTrace(np.arange(12, dtype=np.float32).reshape(4, 3))
    >>> trace.record([np.array([6.0, 7.0, 8.0]), np.array([0.0, 1.0, 2.0])])
    >>> trace.batches
    [[2, 0]]

    ```
    """

    def __init__(self, waves):
        waves = np.asarray(waves, dtype=np.float32)
        self.index = {_clip_key(clip): row for row, clip in enumerate(waves)}
        if len(self.index) != len(waves):
            raise ValueError(f"{len(waves) - len(self.index)} clips are exact duplicates: rows cannot be told apart")
        self.batches: list[list[int]] = []

    def record(self, audio, keys: list[bytes] | None = None) -> None:
        """Record one batch of clips (``keys``: their [`_clip_key`]s, when the caller has them already)."""
        rows = [self.index.get(key) for key in (keys if keys is not None else map(_clip_key, audio))]
        if None in rows:
            raise KeyError(f"{rows.count(None)} clips of this batch are not rows of the traced split")
        self.batches.append(rows)


class DemoProcessor:
    """Callable processor for [`codebind_hf.training.train_path.train`] on the demo data.

    Args:
        prompts (`list[str]`): the prompt table of the text tower; a prompt's id is its index.
        spec ([`DemoDataSpec`]): audio geometry (sample rate, clip length, log-mel settings).
        audio_stats (`torch.Tensor` of shape `(2,)`): log-mel mean and std of the training clips.
        trace ([`RowTrace`], *optional*): records the rows of every audio batch (what the sweep's check reads).
        memoize (`bool`, *optional*, defaults to `False`): keep each clip's log-mel, keyed by a hash of its samples,
            and reuse it when the same clip comes again (a training run sees each clip many times; the features are
            a deterministic function of the samples, so the output is unchanged).

    Example:

    ```python
    >>> import numpy as np
    >>> import torch
    >>> from codebind_hf.demo.data import DemoDataSpec
    >>> from codebind_hf.demo.processing import DemoProcessor
    >>> spec = DemoDataSpec()
    >>> processor = DemoProcessor(["the digit one", "the digit two"], spec, torch.tensor([0.0, 1.0]))
    >>> out = processor(text=["the digit two"], audio=[np.zeros(spec.num_samples)], sampling_rate=16000)
    >>> out["input_ids"].tolist(), tuple(out["audio_values"].shape)
    ([[1]], (1, 1, 32, 48))

    ```
    """

    def __init__(self, prompts: Sequence[str], spec, audio_stats: torch.Tensor, trace: RowTrace | None = None,
                 memoize: bool = False):  # fmt: skip
        self.prompts = list(prompts)
        self.trace = trace
        self.memo: dict[bytes, torch.Tensor] | None = {} if memoize else None
        self.index = {prompt: i for i, prompt in enumerate(self.prompts)}
        self.spec = spec
        self.audio_stats = torch.as_tensor(audio_stats, dtype=torch.float32)

    @classmethod
    def from_data(cls, data: DemoData, trace: RowTrace | None = None, memoize: bool = False) -> DemoProcessor:
        return cls(data.prompts, data.spec, data.audio_stats, trace, memoize)

    def __call__(self, text=None, images=None, audio=None, sampling_rate=None, **unsupported) -> dict[str, torch.Tensor]:
        if unsupported:
            raise TypeError(f"DemoProcessor takes text, images and audio; got {sorted(unsupported)}")
        out: dict[str, torch.Tensor] = {}
        if text is not None:
            missing = [t for t in text if t not in self.index]
            if missing:
                raise ValueError(f"prompt {missing[0]!r} is not in the demo's prompt table ({len(self.prompts)} prompts)")
            out["input_ids"] = torch.tensor([[self.index[t]] for t in text], dtype=torch.long)
            out["attention_mask"] = torch.ones_like(out["input_ids"])
        if images is not None:
            arrays = [np.asarray(image, dtype=np.float32) for image in images]
            expected = (1, self.spec.image_size, self.spec.image_size)
            bad = [a.shape for a in arrays if a.shape != expected]
            if bad:
                raise ValueError(f"images must be arrays of shape {expected}, got {bad[0]}")
            out["pixel_values"] = torch.from_numpy(np.stack(arrays))
        if audio is not None:
            if sampling_rate != self.spec.sample_rate:
                raise ValueError(f"audio must be sampled at {self.spec.sample_rate} Hz, got sampling_rate={sampling_rate}")
            clips = [np.asarray(a, dtype=np.float32) for a in audio]
            keys = [_clip_key(clip) for clip in clips] if self.trace is not None or self.memo is not None else None
            if self.trace is not None:
                self.trace.record(clips, keys)
            out["audio_values"] = self._audio_values(clips, keys)
        return out

    def _audio_values(self, clips: list[np.ndarray], keys: list[bytes] | None) -> torch.Tensor:
        if self.memo is None:
            return audio_features(np.stack(clips), self.spec, self.audio_stats)
        new = {key: clip for key, clip in zip(keys, clips) if key not in self.memo}
        if new:
            self.memo.update(zip(new, audio_features(np.stack(list(new.values())), self.spec, self.audio_stats)))
        return torch.stack([self.memo[key] for key in keys])

    def to_dict(self) -> dict:
        """What identifies this processor's output (the trainer's feature-cache key)."""
        return {"processor_class": "DemoProcessor", "prompts": self.prompts, "stats": self.audio_stats.tolist(),
                "spec": self.spec.fingerprint()}


__all__ = ["RowTrace", "DemoProcessor"]
