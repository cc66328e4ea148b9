"""Adaptive loss weights (App. B.2): every weighted loss follows the alignment loss's magnitude."""

from __future__ import annotations

import math

import torch


class AdaptiveLossBalancer:
    """Adaptive loss weights from EMAs of loss magnitudes (App. B.2).

    Every loss named in ``balanced`` gets weight ``ratio_name * EMA|L_align| / EMA|L_name|`` so that its
    weighted magnitude matches the alignment loss (times an optional ratio); ``align`` and ``recon`` keep
    weight 1. Weights are first set on the first step and then refreshed at intervals that grow linearly
    from ``min_interval`` to ``max_interval`` over ``max_steps``. The EMAs follow every step.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.losses import AdaptiveLossBalancer
    >>> balancer = AdaptiveLossBalancer(["vq", "cm"])
    >>> weights = balancer.step({"align": torch.tensor(4.0), "vq": torch.tensor(0.02), "cm": torch.tensor(2.0)})
    >>> round(weights["vq"], 3), round(weights["cm"], 3), weights["align"]
    (200.0, 2.0, 1.0)

    ```
    """

    FIXED = ("align", "recon")

    def __init__(
        self,
        balanced: list[str],
        momentum: float = 0.9,
        min_interval: int = 10,
        max_interval: int = 100,
        max_steps: int = 10000,
        ratios: dict[str, float] | None = None,
        max_weight: float = 1e4,
    ):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if min_interval < 1 or max_interval < min_interval:
            raise ValueError(f"need 1 <= min_interval <= max_interval, got {min_interval}, {max_interval}")
        clash = set(balanced) & set(self.FIXED)
        if clash:
            raise ValueError(f"{sorted(clash)} have fixed weight 1 and cannot be balanced")
        self.balanced = list(balanced)
        self.momentum = momentum
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.max_steps = max_steps
        self.ratios = dict(ratios or {})
        self.max_weight = max_weight
        self.ema: dict[str, float] = {}
        self.weights: dict[str, float] = {name: 1.0 for name in (*self.FIXED, *self.balanced)}
        self.global_step = 0
        self.next_update = 0

    def interval(self) -> int:
        """Steps until the next weight update, growing linearly with training progress."""
        progress = min(1.0, self.global_step / max(1, self.max_steps))
        return int(round(self.min_interval + (self.max_interval - self.min_interval) * progress))

    def step(self, losses: dict[str, torch.Tensor | float]) -> dict[str, float]:
        """Record this step's losses (``"align"`` required) and return the weights to use."""
        if "align" not in losses:
            raise KeyError("AdaptiveLossBalancer.step needs the alignment loss under the key 'align'")
        for name, value in losses.items():
            magnitude = abs(float(value.detach() if isinstance(value, torch.Tensor) else value))
            if not math.isfinite(magnitude):
                raise ValueError(f"loss {name!r} is not finite ({magnitude}); refusing to update the balancer")
            previous = self.ema.get(name)
            self.ema[name] = magnitude if previous is None else self.momentum * previous + (1 - self.momentum) * magnitude
        if self.global_step >= self.next_update:
            base = self.ema["align"]
            for name in self.balanced:
                if name in self.ema:
                    weight = self.ratios.get(name, 1.0) * base / (self.ema[name] + 1e-12)
                    self.weights[name] = min(self.max_weight, weight)
            self.next_update = self.global_step + self.interval()
        self.global_step += 1
        return dict(self.weights)

    def state_dict(self) -> dict:
        return {"ema": dict(self.ema), "weights": dict(self.weights), "global_step": self.global_step, "next_update": self.next_update}

    def load_state_dict(self, state: dict) -> None:
        self.ema = dict(state["ema"])
        self.weights = dict(state["weights"])
        self.global_step = int(state["global_step"])
        self.next_update = int(state["next_update"])


__all__ = [
    "info_nce",
    "cross_modal_code_matching",
    "orthogonality",
    "uniformity",
    "codevector_contrastive",
    "codevector_uniformity",
    "reconstruction",
    "AdaptiveLossBalancer",
]
