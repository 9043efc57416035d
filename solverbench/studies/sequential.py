"""Sequential sample sizes, ``num_samples: {start: S, max: M, until: separated, on: [COLUMN, ...]}``: the test of
one look at a column of cells.

A sweep with them runs each column (the cells that share backbone, NFE, schedule, guidance and seed: the
solvers of one NFE block of a table, seed by seed) as one unit, in looks of ``n_k = S 2^k`` samples while below
``M``, then ``M`` (``SequentialSamples.looks``).  At each look every cell still running samples only its new
indices ``n_{k-1} .. n_k - 1`` (noise is drawn per index, so its samples are those of a plain run of ``n_k``)
and measures every metric on all ``n_k``; then ``judge_look`` compares, on those samples, each ranked solver with
the column's best in every deciding column, with the paired comparison of the report (``solverbench.paired``:
the paired bootstrap of a per-sample metric on the draws of the seed and labels, the replicates' difference of a
distribution metric).  The comparisons of a look are corrected by Holm's step-down over all of them, each look at
level ``ALPHA / K`` for the ``K`` planned looks: intervals valid at every look (a union bound over the K looks).
The column stops when every comparison is rejected (every solver but the best is shown worse than it in every
deciding column: ``separated``), or at ``M`` (``max reached``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from solverbench.metric_columns import KNOWN_BY_NAME
from solverbench.paired import ALPHA, KEPT_ENTRIES, RESAMPLES, Difference, bootstrap_means, draw_chunks, holm, \
    mean_difference, replicate_difference, sample_draws
from solverbench.paired_arrays import KINDS

MAX_REACHED = "max reached"  # a row's stop_reason where the column took its max samples (else until's "separated")


def look_level(looks: int) -> float:
    """The family level of each look's comparisons: ``ALPHA / K`` for ``K`` planned looks."""
    return ALPHA / looks


@dataclass(frozen=True)
class Measured:
    """One cell of a column at a look: its solver's label, whether it is ranked (not analysis-only), its metric
    values and the arrays it keeps for paired comparisons (``MetricContext.kept``)."""

    label: str
    ranked: bool
    values: Mapping[str, Any]
    kept: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Comparison:
    """A solver against the column's best in one deciding column; ``difference`` None where the two cannot be
    paired (a metric it did not keep, or values that are not finite): never rejected."""

    column: str
    solver: str
    best: str
    difference: Optional[Difference]
    level: float = 1.0  # the Holm level it faced
    rejected: bool = False  # shown worse than the best


@dataclass(frozen=True)
class Look:
    """The test of one look: every comparison, and whether the column is separated (it stops)."""

    samples: int
    comparisons: tuple[Comparison, ...]
    separated: bool


class SharedDraws:
    """The paired bootstrap's draws of a look's samples (``paired.sample_draws`` of the seed and labels, as the
    report draws them), drawn when a per-sample metric first asks and reused by every comparison of the look."""

    def __init__(self, n: int, seed: int, labels: Optional[np.ndarray]):
        self.n, self.seed, self.labels = n, seed, labels
        self._draws: Optional[np.ndarray] = None

    def means(self, values: np.ndarray) -> np.ndarray:
        """The bootstrap means of per-sample ``values`` over the draws (drawn again block by block where the whole
        array would be too large to keep, as the report does)."""
        if self.n * RESAMPLES > KEPT_ENTRIES:
            return bootstrap_means(values, draw_chunks(self.n, self.seed, self.labels))
        if self._draws is None:
            self._draws = sample_draws(self.n, self.seed, self.labels)
        return bootstrap_means(values, self._draws)


def difference(a: Measured, best: Measured, column: str, lower_is_better: bool, draws: SharedDraws
               ) -> Optional[Difference]:
    """``a - best`` in ``column`` on the same samples, as the report computes it; None where they cannot be paired."""
    for kind in KINDS:
        key = f"{kind}/{column}"
        if key not in a.kept or key not in best.kept:
            continue
        x, y = a.kept[key], best.kept[key]
        if len(x) != len(y) or not (np.isfinite(x).all() and np.isfinite(y).all()):
            return None
        if kind == "per_sample":
            return mean_difference(float(np.mean(x)) - float(np.mean(y)), draws.means(x) - draws.means(y),
                                   lower_is_better, len(x))
        return replicate_difference(a.values[column], best.values[column], x, y, lower_is_better, draws.n)
    return None


def finite(value: Any) -> bool:
    """A number that is not NaN or infinite (a metric value a column can be ranked on)."""
    return isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and bool(np.isfinite(value))


def column_comparisons(cells: Sequence[Measured], column: str, draws: SharedDraws) -> list[Comparison]:
    """Each ranked cell but the best against the best in ``column`` (the best value, the first cell on ties, as
    the report picks it); none where no ranked cell measured the column (a metric that does not apply here)."""
    lower_is_better = KNOWN_BY_NAME[column].lower_is_better is not False
    ranked = [cell for cell in cells if cell.ranked]
    scored = [cell for cell in ranked if finite(cell.values.get(column))]
    if not scored:
        return []
    pick: Callable[..., Measured] = min if lower_is_better else max
    best = pick(scored, key=lambda cell: cell.values[column])  # the first of equal values
    return [Comparison(column, cell.label, best.label, difference(cell, best, column, lower_is_better, draws))
            for cell in ranked if cell is not best]


def judge_look(cells: Sequence[Measured], deciding: Sequence[str], *, samples: int, seed: int,
               labels: Optional[np.ndarray], level: float) -> Look:
    """Compare the column's ranked cells with its best in every ``deciding`` column on their ``samples`` samples
    (of ``seed``, with class ``labels`` or None), Holm's correction over all the look's comparisons at family
    ``level``.  Separated: every comparison rejected, or fewer than two ranked cells (nothing to separate); a
    column of two or more whose deciding metrics measured nothing is never separated."""
    draws = SharedDraws(samples, seed, labels)
    comparisons = [c for column in deciding for c in column_comparisons(cells, column, draws)]
    rejected, levels = holm([1.0 if c.difference is None else c.difference.p_worse for c in comparisons], level)
    tested = tuple(Comparison(c.column, c.solver, c.best, c.difference, faced, worse)
                   for c, worse, faced in zip(comparisons, rejected, levels))
    ranked = sum(cell.ranked for cell in cells)
    separated = ranked < 2 or (bool(tested) and all(rejected))
    return Look(samples, tested, separated)
