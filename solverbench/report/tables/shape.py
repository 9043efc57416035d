"""The shape behind a per-sample metric's mean: per NFE block and solver, the mean beside the median,
the 90% and 99% quantiles and the fraction above the grid's threshold (``solverbench.metrics.shape``),
each with its 95% interval."""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from solverbench.metric_columns import MetricColumn
from solverbench.report.tables.aggregate import aggregate
from solverbench.report.tables.model import Cell, Row, Table, format_number, format_with_interval
from solverbench.uncertainty import ci_columns


def shape_table(rows: pd.DataFrame, metric: MetricColumn, shapes: list[MetricColumn], title: str) -> Optional[Table]:
    """One row per (NFE block, solver); None where no finished cell records the quantiles."""
    ok = rows[rows["status"] == "ok"]
    shapes = [s for s in shapes if s.name in ok and ok[s.name].notna().any()]
    if not shapes or ok.empty:
        return None
    records = aggregate(ok, [metric, *shapes])
    table = Table(f"The shape behind the mean of {metric.label}: quantiles over each cell's samples. {title}.",
                  ["NFE", "solver", f"mean{metric.arrow}", *(s.label.split(", ", 1)[-1] for s in shapes)],
                  text_columns=(0, 1))
    previous = None
    for _, record in records.iterrows():
        first = record["nfe_block"] != previous
        previous = record["nfe_block"]
        cells = [Cell(str(record["nfe_block"]) if first else ""), Cell(record["solver_label"]),
                 Cell(format_with_interval(*(record.get(c) for c in (metric.name, *ci_columns(metric.name)))))]
        cells += [Cell(interval_text(record, s.name)) for s in shapes]
        values = {c: record.get(c) for m in (metric, *shapes) for c in (m.name, *ci_columns(m.name))}
        table.rows.append(Row(cells, {"nfe": record["nfe_block"], "solver": record["solver_label"], **values},
                              rule_above=first and previous is not None))
    table.notes = [
        "Quantiles over each cell's samples, with distribution-free 95% intervals [low, high] from two order "
        "statistics (no resampling); inf: too few samples to bound that end. Where a mean ranks differently from "
        "the median, a few samples carry it.",
        *([] if not any(s.name.endswith("_above") for s in shapes) else
          ["fraction above: the share of samples above the grid's metric_options.exceedance threshold, with its "
           "Wilson interval."]),
        "Means over seeds where a cell group has several; their intervals are then the seeds' combined ones.",
    ]
    return table


def interval_text(record: pd.Series, name: str) -> str:
    """``value [low, high]``: quantile intervals are not symmetric, and an end may be unbounded."""
    value = record.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    low, high = (record.get(c) for c in ci_columns(name))
    ends = ", ".join("inf" if v is not None and math.isinf(v) else format_number(v, 3) for v in (low, high))
    return f"{format_number(value, 3)} [{ends}]"
