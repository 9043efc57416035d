"""Classifier-free guidance as one checked value: ``v = v_u + w (v_c - v_u)`` for t in ``(t_lo, t_hi]``.

A ``Guidance`` is checked when it is made (a grid's ``guidance:`` section, or
``sample(cfg_scale=, cfg_interval=)``) and then carried unchanged to the velocity field,
the reference solve and the metrics.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Guidance:
    scale: float = 1.0  # w; 1 is no guidance
    interval: tuple[float, float] = (0.0, 1.0)  # (t_lo, t_hi]: where guidance is on

    def __post_init__(self):
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"cfg_scale must be a number >= 0 (1 means no guidance), got {scale!r} "
                            f"({type(scale).__name__})")
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"cfg_scale must be a number >= 0 (1 means no guidance), got {scale!r}")
        try:
            t_lo, t_hi = (float(v) for v in self.interval)
        except (TypeError, ValueError):
            raise ValueError(f"cfg_interval must be a pair (t_lo, t_hi), got {self.interval!r}") from None
        if not 0.0 <= t_lo < t_hi <= 1.0:
            raise ValueError(f"cfg_interval must satisfy 0 <= t_lo < t_hi <= 1, got {tuple(self.interval)}")
        object.__setattr__(self, "scale", float(scale))
        object.__setattr__(self, "interval", (t_lo, t_hi))

    @property
    def on(self) -> bool:
        """Whether the guided velocity ever differs from the conditional one."""
        return self.scale != 1.0

    def applies_at(self, t: float) -> bool:
        """Guidance is on at time ``t``: a scale other than 1 and ``t_lo < t <= t_hi``."""
        t_lo, t_hi = self.interval
        return self.on and t_lo < float(t) <= t_hi


NO_GUIDANCE = Guidance()
