"""The keys of a grid of ``kind: lte``: interval sizes H and start times of the study.

    kind: lte
    lte:
      step_sizes: {largest: 0.1, smallest: 0.0015625, count: 13}   # a geometric range of H
      start_times: [0.7, 0.55, 0.4]                                 # t of the exact start states
      direction: sampling                                           # optional; or inversion

``step_sizes`` may also be an explicit list.  Every step ``[t, t - H]`` must stay inside
``(0, 1]``; a multistep solver's history ``t + H, t + 2 H, ...`` is checked when the study
knows its solvers.  ``direction: inversion`` runs the study backwards (docs/inversion.md):
steps ``[t, t + H]`` toward noise on the mirrored field, which must stay inside ``[0, 1]``,
with a multistep history at ``t - H, t - 2 H, ...``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solverbench.errors import grid_error

LTE_KEYS = {
    "step_sizes": "a list of interval sizes H in (0, 1), or {largest, smallest, count} for a geometric range",
    "start_times": "a list of start times t in (0, 1] of the exact states the steps start from",
}
OPTIONAL_KEYS = {"direction": "sampling (steps toward data, the default) or inversion (steps toward noise)"}
DIRECTIONS = ("sampling", "inversion")
SWEEP_ONLY_KEYS = ("nfe", "schedule", "metrics", "metric_options", "save_samples", "batch_size")  # unused by lte


@dataclass(frozen=True)
class LTESettings:
    step_sizes: tuple[float, ...]  # decreasing
    start_times: tuple[float, ...]
    direction: str = "sampling"  # or "inversion": steps [t, t + H] on the mirrored field

    @property
    def inverts(self) -> bool:
        return self.direction == "inversion"

    def end_time(self, t: float, step: float) -> float:
        """Where a step of size ``step`` from ``t`` ends: ``t - H`` when sampling, ``t + H`` when inverting."""
        return t + step if self.inverts else t - step

    def history_times(self, t: float, step: float, length: int) -> list[float]:
        """The path times of the ``length`` states a step from ``t`` uses, oldest first, ``t`` last:
        ``t + (length - 1) H, ..., t`` when sampling, ``t - (length - 1) H, ..., t`` when inverting."""
        sign = -1 if self.inverts else 1
        return [t + sign * j * step for j in reversed(range(length))]


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _step_sizes(value: Any) -> tuple[float, ...]:
    allowed = "allowed: " + LTE_KEYS["step_sizes"]
    if isinstance(value, dict):
        if set(value) != {"largest", "smallest", "count"}:
            grid_error("lte.step_sizes", value, allowed)
        largest, smallest, count = value["largest"], value["smallest"], value["count"]
        if not (isinstance(count, int) and count >= 2 and _numbers([largest, smallest])
                and 0 < smallest < largest < 1):
            grid_error("lte.step_sizes", value, "allowed: 0 < smallest < largest < 1 and an integer count >= 2")
        values = np.geomspace(largest, smallest, count).tolist()
    elif _numbers(value) and all(0 < v < 1 for v in value):
        values = [float(v) for v in value]
    else:
        grid_error("lte.step_sizes", value, allowed)
    if len(set(values)) < 2:
        grid_error("lte.step_sizes", value, "allowed: at least two different sizes (a slope needs two points)")
    return tuple(sorted(set(values), reverse=True))


def parse_lte_settings(raw_grid: dict[str, Any]) -> LTESettings:
    """The ``lte`` settings of a grid of kind lte, validated against the rest of the grid."""
    for i, solver in enumerate(raw_grid.get("solvers") or []):
        if isinstance(solver, dict) and "nfe" in solver:
            grid_error(f"solvers[{i}].nfe", solver["nfe"], "not used by a grid of kind lte")
    raw = raw_grid.get("lte")
    if not isinstance(raw, dict) or not set(LTE_KEYS) <= set(raw) <= set(LTE_KEYS) | set(OPTIONAL_KEYS):
        grid_error("lte", raw, "required for kind lte: a mapping with the keys " + "; ".join(
            f"{k}: {v}" for k, v in LTE_KEYS.items()) + "; optional: " + "; ".join(
            f"{k}: {v}" for k, v in OPTIONAL_KEYS.items()))
    direction = raw.get("direction", "sampling")
    if direction not in DIRECTIONS:
        grid_error("lte.direction", direction, "allowed: " + OPTIONAL_KEYS["direction"])
    steps = _step_sizes(raw["step_sizes"])
    starts = raw["start_times"]
    if not (_numbers(starts) and all(0 < t <= 1 for t in starts)):
        grid_error("lte.start_times", starts, "allowed: " + LTE_KEYS["start_times"])
    if direction == "sampling" and min(starts) - max(steps) <= 0:
        grid_error("lte", raw, f"the step of size {max(steps)} from t = {min(starts)} would reach t <= 0; "
                          "every t - H must stay above 0")
    if direction == "inversion" and max(starts) + max(steps) > 1:
        grid_error("lte", raw, f"the step of size {max(steps)} from t = {max(starts)} toward noise would pass t = 1; "
                          "every t + H must stay at most 1")
    return LTESettings(step_sizes=steps, start_times=tuple(sorted({float(t) for t in starts}, reverse=True)),
                       direction=direction)
