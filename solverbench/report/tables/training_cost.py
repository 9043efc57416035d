"""Error against what a sampler cost to make: each solver's metric beside its training or optimisation
wall time and its trainable parameters.

A row's cost is what its sampler needed before sampling: the solver's own training
(``train_seconds``, ``trainable_params``: a network beside the backbone, a Bespoke
transformation) plus its learned time grid's (``schedule_train_seconds``, ``schedule_params``).
Training-free samplers cost 0.  Costs are per (budget, solver); the metric is the mean over
seeds with its 95% interval, bold where it ties the best of its NFE block.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

from solverbench.report.learned_grids import NOTE, marked
from solverbench.metric_columns import MetricColumn
from solverbench.report.pairing import CellArrays, PairedComparison
from solverbench.report.tables.aggregate import BY, aggregate, block_means
from solverbench.report.tables.best import best_marks, bold_note, rule_notes
from solverbench.report.tables.model import Cell, Row, Table, format_number, format_with_interval
from solverbench.uncertainty import ci_columns

SECONDS = ("train_seconds", "schedule_train_seconds")
PARAMETERS = ("trainable_params", "schedule_params")


def has_training_costs(rows: pd.DataFrame) -> bool:
    """Whether any row of the setting records a training or optimisation cost."""
    return any(column in rows and rows[column].notna().any() for column in SECONDS)


def cost_records(rows: pd.DataFrame, metric: MetricColumn) -> pd.DataFrame:
    """One record per (NFE block, solver label): the metric with its interval, ``cost_seconds`` and
    ``cost_parameters`` (sums of the solver's and the schedule's; 0 for a training-free sampler)."""
    records = aggregate(rows, [metric])
    records = records[~records["analysis_only"]].reset_index(drop=True)
    totals = rows.assign(cost_seconds=sum(rows[c].fillna(0.0) if c in rows else 0.0 for c in SECONDS),
                         cost_parameters=sum(rows[c].fillna(0).astype(float) if c in rows else 0.0 for c in PARAMETERS))
    return records.merge(block_means(totals, ["cost_seconds", "cost_parameters"]), on=list(BY), how="left")


def training_cost_table(rows: pd.DataFrame, metric: MetricColumn, title: str, arrays: Optional[CellArrays] = None
                        ) -> Table:
    """``arrays``: what the cells kept, to compare each value with its block's best on the same samples."""
    records = cost_records(rows, metric)
    table = Table(f"Error against training cost. {title}: {metric.label} by NFE, with what each sampler cost "
                  "to make.", ["NFE", "solver", metric.label + metric.arrow, "training / optimisation (s)",
                               "trainable parameters"], text_columns=(0, 1))
    bold, marks = pd.Series(False, index=records.index), []
    comparison = PairedComparison(arrays, metric) if arrays is not None else None
    for block, group in records.groupby("nfe_block", sort=False):
        mark = best_marks(group, pd.Series(True, index=group.index), metric, comparison)
        bold.loc[group.index] = mark.bold
        marks.append((metric, f"at NFE {block}", mark))
    low, high = ci_columns(metric.name)
    previous = None
    for i, record in records.iterrows():
        first = record["nfe_block"] != previous
        previous = record["nfe_block"]
        seconds, parameters = record["cost_seconds"], record["cost_parameters"]
        table.rows.append(Row([
            Cell(record["nfe_block"] if first else ""),
            Cell(marked(record["solver_label"], record["learned_uniform"])),
            Cell(format_with_interval(record[metric.name], record[low], record[high]), bool(bold[i])),
            Cell("0 (training-free)" if not seconds else format_number(seconds, 3)),
            Cell(f"{int(parameters):,}"),
        ], {"nfe": record["nfe_block"], "solver": record["solver_label"], metric.name: record[metric.name],
            low: record[low], high: record[high], "learned_grid_uniform": record["learned_uniform"],
            "train_seconds": seconds, "trainable_params": int(parameters),
            "best": bool(bold[i])}, rule_above=first))
    table.notes = [
        bold_note("in each NFE block"), *rule_notes(marks),
        "Training / optimisation: wall time of the solver's own training (a network beside the backbone, a Bespoke "
        "transformation) plus its learned time grid's (teacher solves included), on the machine that ran the grid; "
        "a cached result keeps the time it took when it was made.  Trainable parameters: the same, summed (a "
        "learned grid counts its interior times).",
    ] + ([NOTE] if records["learned_uniform"].any() else [])
    return table
