"""Adaptive loss weights (App. B.2): every weighted loss follows the alignment loss's magnitude.

`AdaptiveLossBalancer` is the paper's description (EMAs every step, weights matching the alignment magnitude,
a linearly growing interval); `OfficialLossBalancer` is what the authors' ``main_lossbalance.py`` runs (per-loss
target ratios, EMAs only at update steps, a sine-shaped interval). `build_balancer` picks one by variant.
"""

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


class OfficialLossBalancer:
    """The authors' loss balancer (Visual-AI/CodeBind ``models/loss_balance.py``), on this project's loss names.

    Each balanced loss gets ``ratio * EMA(L_align) / (EMA|L| + 1e-8)`` with the target ratios ``vq`` 0.01, ``cm``
    0.1, ``ctr + cuni`` 0.1 (one weight for their sum, the authors' ``loss_vq_reg``), ``orth`` 0.1 and ``uni`` 1;
    ``align`` and ``recon`` keep weight 1 and only ``vq``'s weight is capped (at ``max_weight``). The first step
    sets the EMAs to the raw magnitudes; afterwards the EMAs and weights change only at update steps, which come
    every ``interval`` steps, ``interval = int(min + (max - min) sin(π/2 · step / max_steps))``.

    Example:

    ```python
    >>> from codebind_hf.losses.balancer import OfficialLossBalancer
    >>> balancer = OfficialLossBalancer(max_steps=100)
    >>> w = balancer.step({"align": 4.0, "vq": 0.02, "cm": 2.0, "ctr": 1.0, "cuni": -3.0})
    >>> round(w["vq"], 3), round(w["cm"], 3), round(w["ctr"], 3), w["ctr"] == w["cuni"], w["align"]
    (2.0, 0.2, 0.2, True, 1.0)

    ```
    """

    FIXED = ("align", "recon")
    RATIOS = {"vq": 0.01, "cm": 0.1, "vq_reg": 0.1, "orth": 0.1, "uni": 1.0}
    GROUPS = {"vq_reg": ("ctr", "cuni")}  # balanced as one term: the weight of their sum

    def __init__(self, momentum: float = 0.9, min_interval: int = 10, max_interval: int = 100, max_steps: int = 40000,
                 max_weight: float = 1e4):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if min_interval < 1 or max_interval < min_interval:
            raise ValueError(f"need 1 <= min_interval <= max_interval, got {min_interval}, {max_interval}")
        self.momentum, self.min_interval, self.max_interval = momentum, min_interval, max_interval
        self.max_steps, self.max_weight = max_steps, max_weight
        self.ema: dict[str, float] = {}
        self.weights: dict[str, float] = {name: 1.0 for name in (*self.FIXED, "vq", "cm", "ctr", "cuni", "orth", "uni")}
        self.global_step = 0
        self.last_update = 0
        self.current_interval = min_interval

    def _terms(self, losses: dict) -> dict[str, float]:
        """Raw values by balanced term (``vq_reg`` = ``ctr + cuni``), plus ``align``."""
        values = {n: float(v.detach() if isinstance(v, torch.Tensor) else v) for n, v in losses.items()}
        for name, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"loss {name!r} is not finite ({value}); refusing to update the balancer")
        terms = {n: v for n, v in values.items() if n in self.RATIOS or n == "align"}
        for group, members in self.GROUPS.items():
            if any(m in values for m in members):
                terms[group] = sum(values.get(m, 0.0) for m in members)
        return terms

    def _weight(self, name: str, base: float, magnitude: float) -> float:
        weight = base * self.RATIOS[name] / (magnitude + 1e-8)
        return min(self.max_weight, weight) if name == "vq" else weight

    def step(self, losses: dict[str, torch.Tensor | float]) -> dict[str, float]:
        """Record this step's losses (``"align"`` required) and return the weights to use."""
        if "align" not in losses:
            raise KeyError("OfficialLossBalancer.step needs the alignment loss under the key 'align'")
        terms = self._terms(losses)
        self.global_step += 1
        if not self.ema:
            self.ema = {name: (value if name == "align" else abs(value)) for name, value in terms.items()}
            base = terms["align"]
            refresh = True
        elif self.global_step - self.last_update >= self.current_interval:
            m = self.momentum
            for name, value in terms.items():
                value = value if name == "align" else abs(value)
                self.ema[name] = m * self.ema.get(name, value) + (1 - m) * value
            base = self.ema["align"]
            progress = min(1.0, self.global_step / max(1, self.max_steps))
            self.current_interval = int(self.min_interval + (self.max_interval - self.min_interval) * math.sin(progress * math.pi / 2))
            refresh = True
        else:
            refresh = False
        if refresh:
            self.last_update = self.global_step
            for name in terms:
                if name == "align":
                    continue
                weight = self._weight(name, base, self.ema[name])
                for member in self.GROUPS.get(name, (name,)):
                    self.weights[member] = weight
        return dict(self.weights)

    def state_dict(self) -> dict:
        return {"ema": dict(self.ema), "weights": dict(self.weights), "global_step": self.global_step,
                "last_update": self.last_update, "current_interval": self.current_interval}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.weights = dict(state["ema"]), dict(state["weights"])
        self.global_step, self.last_update = int(state["global_step"]), int(state["last_update"])
        self.current_interval = int(state["current_interval"])


def build_balancer(variant: str, balanced: list[str], max_steps: int):
    """The path's adaptive balancer: `AdaptiveLossBalancer` over ``balanced`` (``"paper"``) or `OfficialLossBalancer`."""
    if variant == "paper":
        return AdaptiveLossBalancer(list(balanced), max_steps=max_steps)
    if variant == "official":
        return OfficialLossBalancer(max_steps=max_steps)
    raise ValueError(f"balancer variant must be 'paper' or 'official', got {variant!r}")


__all__ = ["AdaptiveLossBalancer", "OfficialLossBalancer", "build_balancer"]
