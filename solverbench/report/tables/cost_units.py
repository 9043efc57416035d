"""A cost column in one unit and one fixed format: ms, MFLOPs, KB per sample (larger units for large values).

The results store costs in seconds, FLOPs and bytes; a table shows each cost column in the
smallest of its display units (``MetricColumn.units``) in which its largest value stays below
``LARGEST``, every value with the same number of decimals: enough for three significant
digits of the column's smallest value.  No scientific notation, and 0 is printed as ``0``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from solverbench.metric_columns import DisplayUnit, MetricColumn

LARGEST = 1e4  # a column moves to its next unit where its largest value would reach this
MAX_DECIMALS = 6


@dataclass(frozen=True)
class CostFormat:
    metric: MetricColumn
    unit: DisplayUnit
    decimals: int

    @property
    def header(self) -> str:
        """``wall time per sample (ms)``."""
        return f"{self.metric.label} ({self.unit.name})"

    def text(self, value: Optional[float]) -> str:
        if value is None or math.isnan(float(value)):
            return "–"
        if value == 0:
            return "0"
        return f"{float(value) / self.unit.size:.{self.decimals}f}"


def cost_format(metric: MetricColumn, values: Iterable[Optional[float]]) -> CostFormat:
    """The unit and decimals of ``metric``'s column holding ``values`` (in the stored unit)."""
    positive = [abs(float(v)) for v in values if v is not None and not math.isnan(float(v)) and v != 0]
    for unit in metric.units:
        if not positive or max(positive) / unit.size < LARGEST:
            break
    smallest = min(positive) / unit.size if positive else 1.0
    decimals = min(max(2 - math.floor(math.log10(smallest)), 0), MAX_DECIMALS)
    return CostFormat(metric, unit, decimals)


def units_note(formats: list[CostFormat]) -> str:
    """One note on a table's cost columns: what each counts and in which unit; the CSV's stored units."""
    parts = [f"{f.metric.label} in {f.unit.name} ({f.unit.meaning}), {f.metric.unit}" for f in formats]
    return "Costs, never ranked: " + "; ".join(parts) + ". The CSV holds them in seconds, FLOPs and bytes."
