"""Training hyper-parameters, read from a params.yaml section (``train.<dataset>`` or ``qat.<dataset>``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: Shards per batch unless a schedule says otherwise: two threads share a batch, and shards of a
#: 64-example batch stay large enough for efficient kernels.
DEFAULT_SHARDS = 2


@dataclass(kw_only=True)
class TrainConfig:
    """SGD with momentum and weight decay, MultiStepLR(milestones, gamma), mixup (alpha 0 disables).

    ``shards``: each batch's gradient is the fixed-order sum of this many shards' gradients (part of
    the numerics, like ``batch_size``); ``num_threads``: how many of them are computed at once
    (None: torch's thread count). The result never depends on ``num_threads``.
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    mixup_alpha: float = 0.0
    shards: int = DEFAULT_SHARDS
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_number("lr", self.lr, low=0.0, low_inclusive=False)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        _check_number("weight_decay", self.weight_decay, low=0.0)
        _check_number("gamma", self.gamma, low=0.0, low_inclusive=False)
        _check_number("mixup_alpha", self.mixup_alpha, low=0.0)
        _check_int("shards", self.shards, minimum=1)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, minimum=1)
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"training option 'milestones' must be a list of epochs, "
                             f"got {self.milestones!r}")
        for m in self.milestones:
            _check_int("milestones", m, minimum=1)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"training option 'milestones' must be strictly increasing, "
                             f"got {self.milestones}")
        self.milestones = list(self.milestones)
        for name in ("lr", "momentum", "weight_decay", "gamma", "mixup_alpha"):
            setattr(self, name, float(getattr(self, name)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a params section; unknown or missing keys raise ``ValueError`` naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"training options must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; accepted: {', '.join(sorted(known))}")
        required = ("epochs", "batch_size", "lr", "milestones", "gamma", "mixup_alpha")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"missing training option(s) {missing}")
        return cls(**d)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"training option '{name}' must be an int >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, low: float, high: float | None = None,
                  low_inclusive: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (high is None or value < high)
    if not ok:
        bounds = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"training option '{name}' must be a number {bounds}, got {value!r}")
