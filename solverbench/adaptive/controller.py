"""How the adaptive schedule sizes intervals from embedded error estimates: pure arithmetic on floats.

An interval of size ``H`` whose estimate is ``e`` is taken to err as ``e = C H^q`` (``q`` the estimate's
order), ``C`` the trajectory's local hardness there.  An interval without an estimate of its own (UniPC's
final step, bh1's first) is taken to be as hard as the hardest estimated one: what is not measured is not
assumed easy.

Budget mode gives every interval the same estimated local error: it spreads its intervals by the density
``rho = C^(1/q)`` (an interval per equal share of its integral, ``rho H = e^(1/q)``), which makes the largest
interval error of a fixed number of intervals least.  Error-target mode keeps each interval's error per unit
time ``e / H`` below the tolerance, so that their sum, the estimated global error, stays below it:
``H_new = H (safety * tol / (e / H))^(1/(q - 1))``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

CELLS = 4096  # the density is kept on this many equal cells of [0, 1]
FLOOR = 1e-9  # the least density, as a share of the largest (an estimate of 0 still gets intervals)


def hardness(starts: Sequence[float], ends: Sequence[float], estimates: Sequence[Optional[float]],
             order: int) -> list[float]:
    """Each interval's hardness ``C = e / H^q``; an interval without an estimate gets the largest (0 where no
    interval has one)."""
    known = [float(e) / (starts[k] - ends[k]) ** order for k, e in enumerate(estimates) if e is not None]
    hardest = max(known, default=0.0)
    return [hardest if e is None else float(e) / (starts[k] - ends[k]) ** order for k, e in enumerate(estimates)]


def hardness_density(starts: Sequence[float], ends: Sequence[float], estimates: Sequence[Optional[float]],
                     order: int) -> np.ndarray:
    """The density ``rho = C^(1/q)`` on ``CELLS`` cells of [0, 1] from a walk's intervals (``starts[k] > ends[k]``)
    and their estimates (``hardness``); uniform where no interval has an estimate."""
    rho = [c ** (1.0 / order) for c in hardness(starts, ends, estimates, order)]
    top = max(rho, default=0.0)
    if top <= 0:
        return np.ones(CELLS)
    cells = np.empty(CELLS)
    centres = (np.arange(CELLS) + 0.5) / CELLS
    for k, value in enumerate(rho):
        cells[(centres <= starts[k]) & (centres > ends[k])] = value
    return np.maximum(cells, FLOOR * top)


def budget_grid(density: np.ndarray, intervals: int, min_factor: float, max_factor: float) -> list[float]:
    """``intervals`` intervals from 1 to exactly 0, chosen one after the other: each the share of ``density`` of
    what is left (``1 / left`` of its integral over ``[0, t]``), clipped to ``[min_factor, max_factor]`` times the
    uniform interval ``t / left`` (and short of ``t`` by room for the others), the last landing on 0."""
    edges = np.linspace(0.0, 1.0, len(density) + 1)
    mass = np.concatenate([[0.0], np.cumsum(density) / len(density)])  # F(s) = integral of rho over [0, s]
    times, t = [1.0], 1.0
    for left in range(intervals, 1, -1):
        share = (np.interp(t, edges, mass)) / left
        t_next = float(np.interp(np.interp(t, edges, mass) - share, mass, edges))
        uniform = t / left
        h = min(max(t - t_next, min_factor * uniform), max_factor * uniform, t - min_factor * uniform * (left - 1))
        t = t - h
        times.append(t)
    times.append(0.0)
    return times


def reduce_estimates(per_sample: np.ndarray, how: str) -> float:
    """The pilot's per-sample estimates of one interval as one number: their RMS or their largest."""
    return float(np.sqrt(np.mean(per_sample ** 2)) if how == "rms" else np.max(per_sample))


def tolerance_factor(estimate: float, h: float, tolerance: float, order: int, safety: float, min_factor: float,
                     max_factor: float) -> float:
    """The factor on ``h`` that brings the error per unit time ``estimate / h`` to ``safety * tolerance``,
    clipped to ``[min_factor, max_factor]``."""
    if estimate <= 0:
        return max_factor
    factor = safety * (tolerance * h / estimate) ** (1.0 / (order - 1))
    return min(max(factor, min_factor), max_factor) if math.isfinite(factor) else max_factor
