"""The shape behind a per-sample metric's mean: its median and upper quantiles, and the fraction of
samples above a threshold.

A mean over samples can be carried by a few of them (on a mixture, the samples that switch
component late): a table of means with intervals cannot show it, the quantiles do.  For each
per-sample metric ``COLUMN`` a cell also records

- ``COLUMN_median``, ``COLUMN_q90``, ``COLUMN_q99``: the sample quantile (linear interpolation,
  numpy's default) with the distribution-free 95% interval of order statistics
  ``[x_(l), x_(u)]``: with ``B ~ Binomial(n, q)``, ``l`` the largest rank with ``P(B < l) <= 2.5%``
  and ``u`` the smallest with ``P(B >= u) <= 2.5%``, so that ``P(x_(l) <= xi_q <= x_(u)) >= 95%``
  whatever the distribution (no resampling).  Where ``n`` is too small to bound a side (the 99%
  quantile of 64 samples has no upper bound) that end is infinite;
- ``COLUMN_above``: where the grid sets a threshold (``metric_options: {exceedance: {COLUMN:
  value}}``), the fraction of samples whose value is above it, with the Wilson score interval
  (which stays inside [0, 1] and is honest near 0, where these fractions live).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
import torch

from solverbench.uncertainty import LEVEL, Z, with_interval

QUANTILES = {"median": 0.5, "q90": 0.9, "q99": 0.99}
OPTION = "exceedance"
OPTION_HELP = ("a mapping from a per-sample metric (trajectory_error, log_likelihood, ...) to a threshold: "
               "each cell also records the fraction of its samples above it (COLUMN_above)")


def binomial_cdf(n: int, q: float) -> np.ndarray:
    """``P(B <= k)`` for ``k = 0..n``, ``B ~ Binomial(n, q)``, in float64 (log-space terms, summed)."""
    k = torch.arange(n + 1, dtype=torch.float64)
    log_pmf = (torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1)
               - torch.lgamma(n - k + 1) + k * math.log(q) + (n - k) * math.log1p(-q))
    return torch.cumsum(torch.exp(log_pmf), 0).numpy()


def order_statistic_ranks(n: int, q: float, level: float = LEVEL) -> tuple[Optional[int], Optional[int]]:
    """1-based ranks ``(l, u)`` of the order statistics bounding the ``q`` quantile at ``level``; None for a
    side ``n`` samples cannot bound."""
    tail = (1 - level) / 2
    below = binomial_cdf(n, q)[:n]  # below[r - 1] = P(B <= r - 1) = P(B < r), for the ranks r = 1..n
    low = int(np.count_nonzero(below <= tail))  # the cdf grows: the ranks with P(B < r) <= tail come first
    high = np.flatnonzero(1 - below <= tail)  # P(B >= r) = 1 - P(B < r)
    return (low or None), (int(high[0]) + 1 if len(high) else None)


def quantile_interval(values: np.ndarray, q: float) -> tuple[float, tuple[float, float]]:
    """The ``q`` quantile of ``values`` and its distribution-free 95% interval."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    low, high = order_statistic_ranks(len(ordered), q)
    return (float(np.quantile(ordered, q)),
            (-math.inf if low is None else float(ordered[low - 1]), math.inf if high is None else float(ordered[high - 1])))


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a binomial fraction ``successes / n``."""
    p = successes / n
    centre = (p + Z ** 2 / (2 * n)) / (1 + Z ** 2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z ** 2 / (4 * n ** 2)) / (1 + Z ** 2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def shape_columns(column: str, values: Any, threshold: Optional[float] = None) -> dict[str, float]:
    """The quantile columns of per-sample metric ``column`` (and ``COLUMN_above`` where a threshold is set)."""
    values = values.detach().double().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    values = values.reshape(-1)
    out: dict[str, float] = {}
    if not np.isfinite(values).all():
        return out
    for suffix, q in QUANTILES.items():
        value, interval = quantile_interval(values, q)
        out.update(with_interval(f"{column}_{suffix}", value, interval))
    if threshold is not None:
        above = int((values > threshold).sum())
        out.update(with_interval(f"{column}_above", above / len(values), wilson_interval(above, len(values))))
    return out


def check_exceedance(value: Any, per_sample: set[str]) -> dict[str, float]:
    """The ``exceedance`` metric option, checked: a mapping from the grid's per-sample metrics to numbers."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"bad value {value!r}; allowed: {OPTION_HELP}")
    for name, threshold in value.items():
        if name not in per_sample:
            raise ValueError(f"{name!r} is not a per-sample metric of this grid; allowed: "
                             f"{', '.join(sorted(per_sample)) or 'none (the grid has no per-sample metric)'}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"threshold of {name}: bad value {threshold!r}; allowed: a finite number")
    return {name: float(threshold) for name, threshold in value.items()}
