"""Every ranked solver against every other on the same samples, per NFE block and ranked metric.

``PairwiseBlock.differences[r][c]`` is the paired difference row minus column (``pairing``,
``paired``), None on the diagonal and where the two cannot be paired; ``marks`` are the block's
bold values (``tables.best``), whose ties say how many samples would separate them.  The
pairwise tables (``tables.pairwise``) and figure (``figures.pairwise``) show these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from solverbench.metric_columns import MetricColumn
from solverbench.paired import Difference
from solverbench.report.pairing import CellArrays, PairedComparison, Unpaired
from solverbench.report.tables.aggregate import aggregate, block_order
from solverbench.report.tables.best import BestMarks, best_marks


@dataclass
class PairwiseBlock:
    block: str  # the NFE block
    metric: MetricColumn
    labels: list[str]  # the ranked solvers with a value, in the table's order
    differences: list[list[Optional[Difference]]]  # [row][column]: row minus column
    unpaired: list[str]  # why some pairs could not be paired
    marks: BestMarks

    @property
    def any_paired(self) -> bool:
        return any(d is not None for row in self.differences for d in row)

    def advantage(self, row: int, column: int) -> Optional[float]:
        """How many paired standard errors the row is better than the column; None where not paired; 0 for two
        cells that agree sample by sample, infinite for a difference that does not vary."""
        d = self.differences[row][column]
        if d is None:
            return None
        better = -d.value if self.metric.lower_is_better else d.value
        if d.se > 0:
            return better / d.se
        return math.copysign(math.inf, better) if better else 0.0


def pairwise_blocks(rows: pd.DataFrame, metrics: list[MetricColumn], arrays: CellArrays) -> list[PairwiseBlock]:
    """One block per (ranked metric, NFE block with two or more ranked solvers that have the metric), in
    metric then NFE order; blocks where no pair could be paired are left out."""
    ranked = [m for m in metrics if m.lower_is_better is not None]
    records = aggregate(rows, ranked)
    if records.empty:
        return []
    records = records[~records["analysis_only"]]
    blocks = []
    for metric in ranked:
        comparison = PairedComparison(arrays, metric)
        for block in sorted(records["nfe_block"].unique(), key=block_order):
            group = records[(records["nfe_block"] == block) & records[metric.name].notna()]
            if len(group) < 2:
                continue
            found = _block(block, metric, group, comparison)
            if found.any_paired:
                blocks.append(found)
    return blocks


def _block(block: str, metric: MetricColumn, group: pd.DataFrame, comparison: PairedComparison) -> PairwiseBlock:
    cells = list(group["cells"])
    differences: list[list[Optional[Difference]]] = [[None] * len(cells) for _ in cells]
    why: dict[str, None] = {}
    for r, row in enumerate(cells):
        for c, column in enumerate(cells):
            if r == c:
                continue
            try:
                differences[r][c] = comparison.difference(row, column)
            except Unpaired as reason:
                why[str(reason)] = None
    marks = best_marks(group, pd.Series(True, index=group.index), metric, comparison)
    return PairwiseBlock(block, metric, list(group["solver_label"]), differences, list(why), marks)
