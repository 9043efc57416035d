"""Quality against cost: every solver's operating points, the Pareto front, and the best solver per budget.

An operating point is one (solver, NFE budget) of a setting: the metric's mean over the
finished seeds with its 95% interval, and what a sample cost there, averaged over the
seeds: NFE, wall time and FLOPs (backbone and solver together).  A point is on the Pareto
front of a cost when no other point costs as little or less and is better; the front is the
answer to "what is the best I can get for this much?".  Analysis-only solvers (oracles) are
not operating points: they cannot be run for real.

The budget table reads the front as budgets: for each front point's cost (the budgets on the
grid at which the answer changes), the best solver among the points that cost no more, with
every point of that budget not shown worse than the best named as a tie (``tables.best``:
compared on the same samples with Holm's correction over the budget's points, or by
overlapping intervals where the cells kept no paired arrays).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from solverbench.report.learned_grids import marked
from solverbench.metric_columns import KNOWN_BY_NAME, MetricColumn
from solverbench.report.pairing import CellArrays, PairedComparison
from solverbench.report.tables.aggregate import BY, aggregate, block_means
from solverbench.report.tables.best import best_marks, not_shown_worse
from solverbench.report.tables.cost_units import cost_format
from solverbench.report.tables.model import Cell, Row, Table, format_with_interval
from solverbench.uncertainty import ci_columns


@dataclass(frozen=True)
class CostAxis:
    column: str  # the operating points' column
    label: str  # what a reader calls it
    unit: str

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit}, log scale)"


NFE = CostAxis("nfe_measured", "NFE per sample", "network evaluations")
WALL_TIME = CostAxis("wall_time_per_sample", "wall time per sample", "s")
FLOPS = CostAxis("flops_per_sample", "FLOPs per sample", "backbone + solver")
COST_AXES = (NFE, WALL_TIME, FLOPS)
BUDGET_AXES = (WALL_TIME, FLOPS)  # NFE budgets are Table 1's blocks


def operating_points(rows: pd.DataFrame, metric: MetricColumn) -> pd.DataFrame:
    """One record per (NFE block, solver label) that has the metric: the metric with its interval and the
    mean cost per sample of each ``COST_AXES`` column (NaN where the rows do not record it)."""
    records = aggregate(rows, [metric])
    if records.empty:
        return records
    records = records[~records["analysis_only"] & records[metric.name].notna()]
    costs = block_means(rows, [axis.column for axis in COST_AXES if axis is not NFE])
    return records.merge(costs, on=list(BY), how="left").reset_index(drop=True)


def available_axes(points: pd.DataFrame, axes=COST_AXES) -> list[CostAxis]:
    """The cost axes every operating point has a value on (gmm has no FLOPs: a closed form, not a network)."""
    return [axis for axis in axes if axis.column in points and len(points) and points[axis.column].notna().all()
            and (points[axis.column] > 0).all()]


def on_front(points: pd.DataFrame, axis: CostAxis, metric: MetricColumn) -> pd.Series:
    """True for the points on the Pareto front of ``axis``: better than every point that costs as little
    or less (of points of equal cost, only the best)."""
    sign = 1.0 if metric.lower_is_better else -1.0
    order = sorted(points.index, key=lambda i: (points.at[i, axis.column], sign * points.at[i, metric.name]))
    front, best = pd.Series(False, index=points.index), None
    for i in order:
        value = sign * points.at[i, metric.name]
        if best is None or value < best:
            front[i], best = True, value
    return front


def point_label(record: pd.Series) -> str:
    block = record["nfe_block"]
    budget = f"adaptive ({record['nfe_measured']:.0f} NFE)" if block == "adaptive" else f"NFE {block}"
    return f"{marked(record['solver_label'], record['learned_uniform'])} @ {budget}"


def budget_table(rows: pd.DataFrame, metric: MetricColumn, title: str, arrays: Optional[CellArrays] = None) -> Table:
    """For each wall-time and FLOPs budget on the front, the best solver within it and its ties; ``arrays`` (what
    the cells kept) to compare the points with the best on the same samples."""
    points = operating_points(rows, metric)
    comparison = PairedComparison(arrays, metric) if arrays is not None else None
    marks = []
    low, high = ci_columns(metric.name)
    table = Table(f"Best solver per budget. {title}: {metric.label}, the best operating point (solver, NFE) "
                  "that costs at most each budget, per sample.",
                  ["cost", "budget", "best within budget", metric.label + metric.arrow, "tied (not shown worse)"],
                  text_columns=(0, 2, 4))
    for axis in available_axes(points, BUDGET_AXES):
        front = points[on_front(points, axis, metric)].sort_values(axis.column)
        shown = cost_format(KNOWN_BY_NAME[axis.column], front[axis.column])
        first = True
        for _, best in front.iterrows():
            budget = best[axis.column]
            within = points[points[axis.column] <= budget]
            mark = best_marks(within, pd.Series(True, index=within.index), metric, comparison)
            marks.append(mark)
            ties = [point_label(r) for i, r in within.iterrows() if mark.bold[i] and i != best.name]
            table.rows.append(Row([
                Cell(axis.label if first else ""), Cell(f"≤ {shown.text(budget)} {shown.unit.name}"),
                Cell(point_label(best)),
                Cell(format_with_interval(best[metric.name], best[low], best[high]), True),
                Cell(", ".join(ties) if ties else "none"),
            ], {"cost": axis.column, "budget": budget, "solver": best["solver_label"], "nfe": best["nfe_block"],
                metric.name: best[metric.name], low: best[low], high: best[high], "ties": "; ".join(ties)},
                rule_above=first))
            first = False
    table.notes = [
        "Each budget is the cost of one point on the Pareto front: below it the best answer is the row above.",
        "Wall time per sample (ms, 10^-3 s): on the run's device, the cell's solve over its batches divided by its "
        "samples (with any network beside the backbone); FLOPs per sample (MFLOPs, 10^6 FLOPs, or GFLOPs, 10^9, "
        "where large): one sample's solve counted by torch's flop counter (matrix products and convolutions, "
        "backbone + solver).  The CSV holds the budgets in seconds and FLOPs.  Training costs are not included (the "
        "training cost table has them).",
        f"Tied: every point within the budget {not_shown_worse('the best')}.",
    ] + [f"Compared by {rule}: {count} budget(s)." for rule, count in
         Counter(mark.rule for mark in marks if mark.rule is not None).items()]
    return table
