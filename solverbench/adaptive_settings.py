"""The adaptive schedule's settings (solverbench.adaptive), as a grid file or ``solverbench.sample`` names them:
``{name: adaptive, ...}``; each bad value is refused in one line naming the setting.

Two modes.  Budget mode (no ``tolerance``): the NFE budget is spent exactly, on intervals chosen from the
solver's embedded error estimates on the pilot over ``passes`` walks.  Error-target mode (``tolerance``
given): intervals are chosen until t = 0 with the estimated global error below ``tolerance``; the NFE is
the outcome, at most ``max_nfe``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

NAME = "adaptive"
REDUCTIONS = ("rms", "max")
MIN_INTERVALS = 3  # the first interval is taken before any estimate and the last lands on t = 0


@dataclass(frozen=True)
class AdaptiveSettings:
    """What decides an adaptive grid (docs/solvers/adaptive.md)."""

    tolerance: Optional[float] = None  # error-target mode: the estimated global error to stay below
    max_nfe: int = 100  # error-target mode: the most NFE its grid may spend
    samples: int = 64  # pilot trajectories (noise and labels of their own streams, never a sample's)
    seed: int = 0  # of the pilot's draws
    passes: int = 3  # budget mode: walks of the pilot, the first on the uniform grid
    reduce: str = "rms"  # the pilot's per-sample estimates to one per interval: rms or max
    min_factor: float = 0.25  # budget: the least interval, as a share of the uniform one; error target: most shrink
    max_factor: float = 4.0  # budget: the largest interval, in uniform ones; error target: the most a step grows
    safety: float = 0.9  # error target: the share of the allowed error a step aims at
    first_step: float = 0.05  # error target: the first interval's size
    order: Optional[int] = None  # the estimate's order in H (it shrinks as H^order); None: the solver's

    @property
    def budget_mode(self) -> bool:
        return self.tolerance is None

    def spec(self) -> dict[str, Any]:
        """The settings as a schedule spec (every one, defaults included)."""
        return {"name": NAME, **{f.name: getattr(self, f.name) for f in fields(self)}}


DEFAULTS = {f.name: f.default for f in fields(AdaptiveSettings)}


def is_adaptive(schedule: Any) -> bool:
    """Whether a schedule spec names the adaptive schedule (``"adaptive"`` or ``{name: adaptive, ...}``)."""
    name = schedule if isinstance(schedule, str) else schedule.get("name") if isinstance(schedule, Mapping) else None
    return name == NAME


def adaptive_settings(schedule: str | Mapping[str, Any]) -> AdaptiveSettings:
    """The settings of an adaptive schedule spec, checked."""
    spec = {} if isinstance(schedule, str) else {k: v for k, v in dict(schedule).items() if k != "name"}
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"schedule 'adaptive': unknown setting(s) {', '.join(unknown)}; its settings: "
                         + ", ".join(f"{k} (default {v!r})" for k, v in DEFAULTS.items()))
    values = {**DEFAULTS, **spec}
    for key in ("max_nfe", "samples", "passes"):
        values[key] = whole(key, values[key], least=1)
    values["seed"] = whole("seed", values["seed"], least=0)
    if values["tolerance"] is not None:
        values["tolerance"] = positive("tolerance", values["tolerance"])
    if values["order"] is not None:
        values["order"] = whole("order", values["order"], least=2)
    for key in ("min_factor", "max_factor", "safety", "first_step"):
        values[key] = positive(key, values[key])
    if values["reduce"] not in REDUCTIONS:
        raise ValueError(f"schedule 'adaptive': reduce must be one of {', '.join(REDUCTIONS)}, got "
                         f"{values['reduce']!r}")
    if not values["min_factor"] <= 1 <= values["max_factor"]:
        raise ValueError(f"schedule 'adaptive': min_factor <= 1 <= max_factor is needed, got {values['min_factor']} "
                         f"and {values['max_factor']}")
    if values["safety"] > 1 or values["first_step"] >= 1:
        raise ValueError(f"schedule 'adaptive': safety must lie in (0, 1] and first_step in (0, 1), got "
                         f"{values['safety']} and {values['first_step']}")
    return AdaptiveSettings(**values)


def whole(key: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) and not (
            isinstance(value, float) and value.is_integer()):
        raise ValueError(f"schedule 'adaptive': {key} must be a whole number >= {least}, got {value!r}")
    if int(value) < least:
        raise ValueError(f"schedule 'adaptive': {key} must be a whole number >= {least}, got {value!r}")
    return int(value)


def positive(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"schedule 'adaptive': {key} must be a number > 0, got {value!r}")
    return float(value)
