"""The training settings of a Bespoke transformation, checked once when the solver is made.

Every setting is part of the cache key of what it trains (``cache.py``); those that differ
from the defaults name the solver (its label).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingSettings:
    trajectories: int = 256  # ground-truth trajectories from training noise (streams no evaluated sample uses)
    iterations: int = 1000  # Adam steps
    batch_size: int = 64  # trajectories per step (at most ``trajectories``)
    lr: float = 1e-2  # Adam's learning rate on the raw parameters of theta
    seed: int = 0  # of the training noise and labels (solverbench.noise.training_draws) and the batches
    lipschitz: float = 1.0  # the fixed estimate L_u of the velocity's Lipschitz constant in the loss's bound
    reference_times: int = 200  # intervals of the fine uniform t grid the ground truth is stored on
    reference_tolerance: float = 1e-6  # rtol = atol of the float64 dopri5 ground-truth solve

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (0 if f.name == "seed"
                                                                                                 else 1):
                    least = 0 if f.name == "seed" else 1
                    raise ValueError(f"bespoke: {f.name} must be a whole number >= {least}, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            else:
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                        or not value > 0:
                    raise ValueError(f"bespoke: {f.name} must be a positive number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
        if self.reference_tolerance >= 1e-2:
            raise ValueError(f"bespoke: reference_tolerance must be below 1e-2 (a ground truth), "
                             f"got {self.reference_tolerance!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_default(self) -> dict[str, Any]:
        """The settings that differ from the defaults (for the solver's label)."""
        default = TrainingSettings()
        return {k: v for k, v in self.as_dict().items() if v != getattr(default, k)}
