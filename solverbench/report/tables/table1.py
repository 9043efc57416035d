"""The paper's Table 1 layout: rows grouped by NFE, one row per solver, one column per metric.

The best value of each metric within an NFE block is bold (lower is better for errors
and distances, higher for log-likelihoods).  Analysis-only solvers (oracles) go to a
table of their own and are never ranked.
"""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd

from solverbench.report.metric_columns import MetricColumn
from solverbench.report.tables.aggregate import aggregate, best_flags
from solverbench.report.tables.model import Cell, Row, Table, format_number


def _nfe_text(record: pd.Series) -> str:
    if record["nfe_block"] == "adaptive":
        return "adaptive" if pd.isna(record["nfe_measured"]) else f"{record['nfe_measured']:.4g} (adaptive)"
    return record["nfe_block"]


def _build(records: pd.DataFrame, metrics: list[MetricColumn], caption: str, ranked: bool) -> Table:
    table = Table(caption, ["NFE", "solver"] + [m.label + m.arrow for m in metrics], text_columns=(0, 1))
    bold = {m.name: pd.Series(False, index=records.index) for m in metrics}
    if ranked:
        for _, group in records.groupby("nfe_block", sort=False):
            for m in metrics:
                bold[m.name].loc[group.index] = best_flags(group[m.name], ~group["analysis_only"], m)
    previous_block = None
    for i, record in records.iterrows():
        first = record["nfe_block"] != previous_block
        previous_block = record["nfe_block"]
        cells = [Cell(_nfe_text(record) if first else ""), Cell(record["solver_label"])]
        for m in metrics:
            text = format_number(record[m.name]) if record["seeds_ok"] else record["problem"].split(":")[0]
            cells.append(Cell(text, bool(bold[m.name][i])))
        best = [m.name for m in metrics if bold[m.name][i]]
        table.rows.append(Row(cells, {
            "nfe": None if record["nfe_block"] == "adaptive" else int(record["nfe_block"]),
            "nfe_measured": record["nfe_measured"], "solver": record["solver_label"],
            "analysis_only": record["analysis_only"], **{m.name: record[m.name] for m in metrics},
            "best": ";".join(best), "seeds": record["seeds"], "seeds_ok": record["seeds_ok"],
            "problem": record["problem"],
        }, rule_above=first))
        if record["problem"]:
            where = f"{record['solver_label']} at NFE {record['nfe_block']}"
            table.notes.append(f"{where}: {record['seeds'] - record['seeds_ok']} of {record['seeds']} seed(s) "
                               f"did not finish ({record['problem']})")
    return table


def _not_applicable(rows: pd.DataFrame) -> list[str]:
    """One note per metric a row skipped, with the reason it gave."""
    reasons: dict[str, str] = {}
    for skipped in rows.get("metrics_not_applicable", pd.Series(dtype=object)).dropna():
        for metric, why in json.loads(skipped).items():
            reasons.setdefault(metric, why)
    return [f"– : {metric} not applicable ({why})." for metric, why in reasons.items()]


def _common_notes(rows: pd.DataFrame, metrics: list[MetricColumn], ranked: bool) -> list[str]:
    seeds, samples = rows["seed"].nunique(), int(rows["num_samples"].max())
    notes = [f"Mean over {seeds} seed(s) of {samples} samples each."] + _not_applicable(rows)
    if ranked:
        notes.insert(0, "Bold: the best value in each NFE block (↓ lower is better, ↑ higher is better).")
    unranked = [m.label for m in metrics if m.lower_is_better is None]
    if unranked:
        notes.append(f"Not ranked (direction unknown; declare it in solverbench/report/metric_columns.py): "
                     f"{', '.join(unranked)}.")
    return notes


def table1(rows: pd.DataFrame, metrics: list[MetricColumn], title: str) -> tuple[Optional[Table], Optional[Table]]:
    """(ranked table, analysis-only table) of one setting's sweep rows; either may be None."""
    records = aggregate(rows, metrics)
    tables = []
    for analysis, caption in ((False, f"Table 1 layout. {title}: each metric by NFE budget and solver."),
                              (True, f"Analysis-only solvers (oracles), not ranked. {title}.")):
        part = records[records["analysis_only"] == analysis].reset_index(drop=True) if len(records) else records
        if part.empty:
            tables.append(None)
            continue
        table = _build(part, metrics, caption, ranked=not analysis)
        table.notes = _common_notes(rows, metrics, ranked=not analysis) + table.notes
        tables.append(table)
    return tables[0], tables[1]
