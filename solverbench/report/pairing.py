"""Which cells of a table start from the same noise, what they kept, and their paired difference in a metric.

Two cells share their noise when they have the same grid, backbone (and parameters), seed, number of
samples and label rule: every solver of a table does, seed by seed.  Their paired difference
(``paired``) reads what each cell kept (``solverbench.paired_arrays``); cells run before those were
kept, or that do not share noise, cannot be paired (``Unpaired`` says why) and a table falls back to
comparing their unpaired intervals.

The cells keep no class labels, so the paired bootstrap of a per-sample metric is not stratified by
label here: resampling the labels too adds their between-class variation to its spread, so the
comparison errs on the safe side (it calls fewer solvers worse).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from solverbench.paired_arrays import read_paired_arrays
from solverbench.metric_columns import MetricColumn
from solverbench.paired import KEPT_ENTRIES, RESAMPLES, Difference, bootstrap_means, combine_seeds, \
    draw_chunks, mean_difference, replicate_difference, sample_draws

# what a cell's noise (and its labels) are drawn from: cells that agree on all of it start from the same noise
NOISE = ("grid", "backbone", "backbone_params", "seed", "num_samples", "label_rule")
NOT_KEPT = "no paired arrays (cells run before they were kept, or a metric that keeps none)"


class Unpaired(Exception):
    """Two records cannot be compared on the same samples; the message says why."""


@dataclass(frozen=True)
class SeedCell:
    """One finished cell of a table's record (one seed): where its arrays are, its noise, its metric values."""

    grid: str
    cell_id: str
    noise: tuple
    values: tuple[tuple[str, float], ...]

    @property
    def seed(self) -> int:
        return int(self.noise[NOISE.index("seed")])

    @property
    def samples(self) -> int:
        return int(self.noise[NOISE.index("num_samples")])


def seed_cells(rows: pd.DataFrame, columns: Sequence[str]) -> tuple[SeedCell, ...]:
    """The cells of ``rows`` (one record's finished seeds) with their values of metric ``columns``; none where
    the rows do not name their cells."""
    if "cell_id" not in rows or "grid" not in rows:
        return ()
    return tuple(SeedCell(str(row["grid"]), str(row["cell_id"]), tuple(_value(row.get(key)) for key in NOISE),
                          tuple((c, float(row[c])) for c in columns if c in row and pd.notna(row[c])))
                 for _, row in rows.iterrows())


def _value(value: object) -> object:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


class CellArrays:
    """What the cells of one results store kept, each file read once, and the paired bootstrap's draws."""

    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self._arrays: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self._draws: dict[tuple[int, int, bytes], np.ndarray] = {}
        self._means: dict[tuple[SeedCell, str], np.ndarray] = {}

    def __call__(self, cell: SeedCell) -> dict[str, np.ndarray]:
        key = (cell.grid, cell.cell_id)
        if key not in self._arrays:
            self._arrays[key] = read_paired_arrays(self.results_dir / cell.grid, cell.cell_id)
        return self._arrays[key]

    def bootstrap_means(self, cell: SeedCell, key: str) -> np.ndarray:
        """The means of the cell's per-sample array ``key`` over the paired bootstrap's draws: the same draws for
        every cell of a seed, so two cells' replicates differ as the bootstrap of their paired difference; stratified
        by the cell's labels where it kept them, as its interval was."""
        if (cell, key) not in self._means:
            values, labels = self(cell)[key], self(cell).get("labels")
            n = len(values)
            draws = (cell.seed, n, b"" if labels is None else labels.tobytes())
            if draws not in self._draws and n * RESAMPLES <= KEPT_ENTRIES:
                self._draws[draws] = sample_draws(n, cell.seed, labels)
            self._means[cell, key] = bootstrap_means(
                values, self._draws[draws] if draws in self._draws else draw_chunks(n, cell.seed, labels))
        return self._means[cell, key]


class PairedComparison:
    """Paired differences in one metric between records of a table (their ``SeedCell``s)."""

    def __init__(self, arrays: CellArrays, metric: MetricColumn):
        self.arrays, self.metric = arrays, metric
        self.lower_is_better = metric.lower_is_better is not False

    def difference(self, a: Sequence[SeedCell], b: Sequence[SeedCell]) -> Difference:
        """``a - b`` on the seeds both have, combined over seeds; raises ``Unpaired`` where it cannot be paired."""
        by_noise = {cell.noise: cell for cell in b}
        pairs = [(cell, by_noise[cell.noise]) for cell in a if cell.noise in by_noise]
        if not pairs:
            raise Unpaired("no seed in common" if a and b else NOT_KEPT)
        return combine_seeds([self._one_seed(x, y) for x, y in pairs], self.lower_is_better)

    def _one_seed(self, a: SeedCell, b: SeedCell) -> Difference:
        name = self.metric.name
        kept_a, kept_b = self.arrays(a), self.arrays(b)
        for kind in ("per_sample", "bootstrap"):
            key = f"{kind}/{name}"
            if key in kept_a and key in kept_b:
                x, y = kept_a[key], kept_b[key]
                if len(x) != len(y):
                    raise Unpaired(f"{kind.replace('_', '-')} arrays of different lengths")
                if not (np.isfinite(x).all() and np.isfinite(y).all()):
                    raise Unpaired("values that are not finite")
                if kind == "per_sample":
                    replicates = self.arrays.bootstrap_means(a, key) - self.arrays.bootstrap_means(b, key)
                    return mean_difference(float(np.mean(x)) - float(np.mean(y)), replicates, self.lower_is_better,
                                           len(x))
                values_a, values_b = dict(a.values), dict(b.values)
                if name not in values_a or name not in values_b:
                    raise Unpaired("no value")
                return replicate_difference(values_a[name], values_b[name], x, y, self.lower_is_better, a.samples)
        raise Unpaired(NOT_KEPT)
