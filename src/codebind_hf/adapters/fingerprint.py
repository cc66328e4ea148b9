"""An honest fingerprint of frozen weights: every value counts, at half precision.

A fingerprint is ``"v2:<bf16>:<fp16>"``: two sha256, over the names and shapes of the tensors and *every* value
rounded to bfloat16, then to float16 (integer and bool buffers bit-exactly). So

- any change of a weight larger than half-precision rounding (one bf16 step, or one fp16 step) changes both
  digests: a changed base is detected, whichever weight changed;
- the same base cast to bfloat16 has the same bf16 digest (rounding a bf16 value to bf16 is exact), and cast to
  float16 the same fp16 digest (likewise), while fp32 -> fp16 -> bf16 double rounding is never involved;
- a fingerprint recorded on a half-precision copy matches the float32 original the same way.

A model matches a recorded fingerprint when either digest agrees. Checking computes only the digest it needs
first (bf16 for float32/bfloat16 weights, fp16 for float16 weights) and the other one only on a mismatch.
Fingerprints of the earlier sampled form (64 hex digits, 64 values per tensor) are still checked, in that form,
with a warning that they cannot see most weights.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import torch

logger = logging.getLogger(__name__)

PREFIX = "v2"
_VIEWS = {"bf16": torch.bfloat16, "fp16": torch.float16}
_LEGACY_SAMPLE = 64


class WeightsFingerprint:
    """The fingerprint of named tensors (computed lazily, each digest once).

    Args:
        named (`Iterable[tuple[str, torch.Tensor]]`): the tensors, under the names that identify them.

    Example:

    ```python
    >>> import torch
    >>> w = {"a": torch.randn(4, 4), "b": torch.arange(3)}
    >>> recorded = WeightsFingerprint(w.items()).record()
    >>> recorded.startswith("v2:")
    True
    >>> WeightsFingerprint({k: v.half() if v.is_floating_point() else v for k, v in w.items()}.items()).matches(recorded)
    True
    >>> w["a"][1, 2] += 0.1
    >>> WeightsFingerprint(w.items()).matches(recorded)
    False

    ```
    """

    def __init__(self, named: Iterable[tuple[str, torch.Tensor]]):
        self.named = sorted(named, key=lambda item: item[0])
        self._digests: dict[str, str] = {}

    def digest(self, view: str) -> str:
        """sha256 of the names, shapes and values rounded to ``view`` (``"bf16"`` or ``"fp16"``)."""
        if view not in self._digests:
            dtype, digest = _VIEWS[view], hashlib.sha256()
            for name, tensor in self.named:
                tensor = tensor.detach()
                kind = "float" if tensor.is_floating_point() else str(tensor.dtype)
                digest.update(f"{name}|{tuple(tensor.shape)}|{kind}|".encode())
                if not tensor.numel():
                    continue
                values = tensor.to(dtype) if tensor.is_floating_point() else tensor
                digest.update(values.contiguous().reshape(-1).view(torch.uint8).cpu().numpy())
            self._digests[view] = digest.hexdigest()
        return self._digests[view]

    def record(self) -> str:
        """The fingerprint to store: ``"v2:<bf16 digest>:<fp16 digest>"``."""
        return f"{PREFIX}:{self.digest('bf16')}:{self.digest('fp16')}"

    def _preferred_view(self) -> str:
        sizes = {"fp16": 0, "other": 0}
        for _, tensor in self.named:
            if tensor.is_floating_point():
                sizes["fp16" if tensor.dtype == torch.float16 else "other"] += tensor.numel()
        return "fp16" if sizes["fp16"] > sizes["other"] else "bf16"

    def matches(self, recorded: str) -> bool:
        """Whether these tensors are the base ``recorded`` was computed on (up to a half-precision cast)."""
        if ":" not in recorded:
            logger.warning(
                "this artifact records a base-model fingerprint of the earlier sampled form (64 values per tensor), "
                "which cannot see most weights; save it again to record an exact one"
            )
            return _legacy_fingerprint(self.named) == recorded
        prefix, *digests = recorded.split(":")
        if prefix != PREFIX or len(digests) != 2:
            raise ValueError(f"unknown base-model fingerprint format {recorded[:20]!r}… (expected {PREFIX}:<bf16>:<fp16>)")
        wanted = dict(zip(_VIEWS, digests))
        first = self._preferred_view()
        return any(self.digest(view) == wanted[view] for view in (first, *(v for v in _VIEWS if v != first)))

    def short(self) -> str:
        """12 hex digits for messages (of the digest computed so far, bf16 preferred)."""
        view = "bf16" if "bf16" in self._digests or "fp16" not in self._digests else "fp16"
        return self.digest(view)[:12]


def short_fingerprint(recorded: str) -> str:
    """12 hex digits of a recorded fingerprint, for messages and cards."""
    return recorded.split(":")[1][:12] if recorded.startswith(PREFIX + ":") else recorded[:12]


def _legacy_fingerprint(named) -> str:
    """The fingerprint of codebind_hf <= 0.1: names, shapes and 64 evenly spaced values per tensor at bf16."""
    digest = hashlib.sha256()
    for name, tensor in named:
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _LEGACY_SAMPLE)][:_LEGACY_SAMPLE].to(torch.bfloat16).float().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


__all__ = ["WeightsFingerprint", "short_fingerprint", "PREFIX"]
