"""Paired comparisons: one cell against another on the same samples, Holm's correction, planned sample sizes.

The statistics behind the report's bold marks (``solverbench.report.tables.best``) and behind a sweep's
sequential sample sizes (``num_samples: {start, max, until: separated}``, ``solverbench.studies.sequential``),
which stop a column once its solvers are separated: both compare on what the cells keep
(``solverbench.paired_arrays``) with the functions here.

The solvers of one table start from the same noise, so their per-sample results are paired and the
difference of two cells varies far less than either cell does.  Two kinds of pairing:

- a per-sample metric (``per_sample/COLUMN``): ``D_i = a_i - b_i`` sample by sample; the paired
  bootstrap resamples the indices ``i`` (the same draws for every comparison of a group, stratified
  by class label where the labels are given), its replicates are the means of ``D`` over each
  draw; the difference is ``mean(D)``, its 95% interval the replicates' 2.5% and 97.5% percentiles,
  ``se`` their standard deviation, and the one-sided p-value of "a is worse than b" the share of
  replicates on the not-worse side, ``(1 + #{s * D* <= 0}) / (1 + B)`` (``s = +1`` where lower is
  better, ``-1`` where higher is: the percentile bootstrap test);
- a distribution metric (``bootstrap/COLUMN``): both cells were resampled with the same indices, so
  ``a* - b*``, replicate by replicate, is the bootstrap of the paired difference: ``se`` is its
  standard deviation, the interval ``(a - b) +- 1.96 se`` and the p-value ``1 - Phi(s (a - b) / se)``.

Several seeds combine as the intervals do (``solverbench.uncertainty.combine_seeds``): the mean of the
seeds' differences, ``se^2 = max(sum_i se_i^2 / k^2, var(d_i) / k)``, normal interval and p-value.

Holm's step-down procedure keeps the chance of calling any tie of a group "worse" at most ``ALPHA``:
with the ``m`` p-values in ascending order, the ``j``-th (from 0) is rejected at level
``ALPHA / (m - j)`` while every smaller one was.  A comparison not rejected at ``alpha'`` would be,
with 80% power, at ``n_needed = n ((z_{1-alpha'} + z_{0.8}) se / d)^2`` samples (``se`` the paired
difference's standard error at ``n`` samples, ``d`` the observed difference: it shrinks as
``1 / sqrt(n)``).

Pure numpy: it reads what the cells kept, no model or torch.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from solverbench.uncertainty import LEVEL, Z
from solverbench.uncertainty import combine_seeds as combine_intervals

ALPHA = 0.05  # the family level of each group's comparisons with its best
POWER = 0.8  # of a planned sample size
RESAMPLES = 2000  # paired bootstrap draws of a per-sample metric (as its own interval's)
CHUNK_ENTRIES = 1 << 22  # sample indices drawn at once (16 MB of int32)
KEPT_ENTRIES = 1 << 24  # draws up to this size are kept for the whole report (64 MB); larger ones drawn again


@dataclass(frozen=True)
class Difference:
    """``value = a - b`` on the same samples, with its 95% interval, standard error and the one-sided p-value
    of "a is worse than b"; ``samples`` behind it (per seed, summed over the seeds)."""

    value: float
    low: float
    high: float
    se: float
    p_worse: float
    samples: int


def sample_draws(n: int, seed: int, strata: Optional[np.ndarray] = None, resamples: int = RESAMPLES) -> np.ndarray:
    """``(resamples, n)`` sample indices drawn with replacement, seeded by ``seed`` alone (every comparison of
    a group reuses them); with ``strata`` (a class label per sample) each class from its own samples."""
    return np.concatenate(list(draw_chunks(n, seed, strata, resamples)))


def draw_chunks(n: int, seed: int, strata: Optional[np.ndarray] = None, resamples: int = RESAMPLES
                ) -> Iterator[np.ndarray]:
    """``sample_draws`` a block of rows at a time (int32, about ``CHUNK_ENTRIES`` indices each), the same rows
    on every call: at 64k samples the whole ``(2000, n)`` array would take half a gigabyte."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(b"paired comparisons")]))
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == c) for c in np.unique(strata)]
    rows = max(1, CHUNK_ENTRIES // max(n, 1))
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        yield np.concatenate([g[rng.integers(len(g), size=(r, len(g)))] for g in groups], axis=1).astype(np.int32)


def normal_p_worse(excess: float, se: float) -> float:
    """One-sided p-value of ``excess > 0`` (``excess`` the difference signed so that worse is positive)."""
    if se > 0:
        return 1.0 - NormalDist().cdf(excess / se)
    return 0.0 if excess > 0 else 1.0


def bootstrap_means(values: np.ndarray, draws: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """The mean of per-sample ``values`` over each row of ``draws`` (an array, or its blocks of rows as
    ``draw_chunks`` yields them): the bootstrap replicates of their mean."""
    values = np.asarray(values, dtype=np.float64)
    blocks = [draws] if isinstance(draws, np.ndarray) else draws
    return np.concatenate([values[block].mean(axis=1) for block in blocks])


def per_sample_difference(a: np.ndarray, b: np.ndarray, draws: np.ndarray, lower_is_better: bool) -> Difference:
    """The paired bootstrap of ``mean(a - b)`` over ``draws`` (``sample_draws``), a and b one value per sample."""
    return mean_difference(float(np.mean(a)) - float(np.mean(b)), bootstrap_means(a, draws) - bootstrap_means(b, draws),
                           lower_is_better, len(a))


def mean_difference(value: float, replicates: np.ndarray, lower_is_better: bool, samples: int) -> Difference:
    """A mean per-sample difference ``value`` with its paired bootstrap ``replicates`` (the difference of the two
    cells' bootstrap means over the same draws): percentile interval, standard error, percentile p-value."""
    sign = 1.0 if lower_is_better else -1.0
    low, high = np.percentile(replicates, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    p = (1 + np.count_nonzero(sign * replicates <= 0)) / (1 + len(replicates))
    return Difference(float(value), float(low), float(high), float(np.std(replicates, ddof=1)), float(p), samples)


def replicate_difference(a: float, b: float, a_replicates: np.ndarray, b_replicates: np.ndarray,
                         lower_is_better: bool, samples: int) -> Difference:
    """``a - b`` of a distribution metric whose bootstrap replicates were drawn with the same indices: the
    replicates' difference is the bootstrap of the paired difference."""
    se = float(np.std(np.asarray(a_replicates, dtype=np.float64) - np.asarray(b_replicates, dtype=np.float64),
                      ddof=1))
    value = float(a) - float(b)
    return Difference(value, value - Z * se, value + Z * se, se,
                      normal_p_worse(value if lower_is_better else -value, se), samples)


def combine_seeds(differences: Sequence[Difference], lower_is_better: bool) -> Difference:
    """One seed's difference as it is; several combine as intervals do (``uncertainty.combine_seeds``: their
    mean, ``se^2 = max(sum se_i^2 / k^2, var(d_i) / k)``), with a normal interval and p-value."""
    if len(differences) == 1:
        return differences[0]
    value, low, high = combine_intervals([d.value for d in differences], [d.value - Z * d.se for d in differences],
                                         [d.value + Z * d.se for d in differences])
    se = (high - low) / (2 * Z)
    return Difference(value, low, high, se, normal_p_worse(value if lower_is_better else -value, se),
                      sum(d.samples for d in differences))


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[list[bool], list[float]]:
    """Holm's step-down procedure: (rejected, the level each p-value faced), in the input's order.

    The ``j``-th smallest of ``m`` p-values faces ``alpha / (m - j)`` and is rejected when it and every
    smaller one are below their levels."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected, levels = [False] * m, [alpha] * m
    still_rejecting = True
    for j, i in enumerate(order):
        levels[i] = alpha / (m - j)
        still_rejecting = still_rejecting and p_values[i] <= levels[i]
        rejected[i] = still_rejecting
    return rejected, levels


def samples_to_separate(samples: int, excess: float, se: float, level: float, power: float = POWER
                        ) -> Optional[float]:
    """``n ((z_{1-level} + z_power) se / d)^2``: the samples at which a one-sided test at ``level`` separates an
    observed difference ``d = excess`` (signed so that worse is positive; ``se`` its standard error at
    ``n = samples``) with probability ``power``; None where none was observed on the worse side (d <= 0) or
    nothing varies (se = 0)."""
    if excess <= 0 or se <= 0:
        return None
    z = NormalDist().inv_cdf(1 - level) + NormalDist().inv_cdf(power)
    return samples * (z * se / excess) ** 2
