"""The paper's Table 1 layout: rows grouped by NFE, one row per solver, one column per metric.

Each value is ``mean ± half its 95% interval`` (``solverbench.uncertainty``).  Within an NFE
block the best value of each ranked metric is bold, and so is every value not shown worse than
it: compared on the same samples where the cells kept paired arrays, with Holm's correction over
the block, else by overlapping intervals (``tables.best``): ties are shown as ties (lower is
better for errors and distances, higher for precision, recall and IS).  The CSV gives each tie
compared on the same samples the samples that would separate it (``<metric>_samples_to_separate``).
A last block gives each distribution metric's data-versus-data value, the noise floor no
sampler can beat.  Analysis-only solvers (oracles)
go to a table of their own and are never ranked.
"""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd

from solverbench.report.learned_grids import NOTE, marked
from solverbench.metric_columns import SHAPE_SUFFIXES, MetricColumn
from solverbench.report.pairing import CellArrays, PairedComparison
from solverbench.report.tables.aggregate import aggregate, noise_floor
from solverbench.report.tables.best import BestMarks, best_marks, bold_note, rule_notes
from solverbench.report.tables.cost_units import cost_format, units_note
from solverbench.report.tables.model import Cell, Row, Table, format_with_interval
from solverbench.uncertainty import ci_columns

FLOOR_LABEL = "data vs. data (noise floor)"
SAMPLES_NOTE = ("Ties compared on the same samples: the CSV's <metric>_samples_to_separate holds the samples that "
                "would separate each from its block's best (80% power at the Holm level it faced); the pairwise "
                "tables say it in words.")


def _nfe_text(record: pd.Series) -> str:
    if record["nfe_block"] == "adaptive":
        return "adaptive" if pd.isna(record["nfe_measured"]) else f"{record['nfe_measured']:.4g} (adaptive)"
    return record["nfe_block"]


def _value_text(values: dict | pd.Series, name: str) -> str:
    low, high = ci_columns(name)
    return format_with_interval(values.get(name), values.get(low), values.get(high))


def _interval_record(values: dict | pd.Series, name: str) -> dict:
    low, high = ci_columns(name)
    return {name: values.get(name), low: values.get(low), high: values.get(high)}


def samples_column(metric: MetricColumn) -> str:
    """The CSV column with the samples that would separate a tie from the best (``best.Tie.samples_needed``)."""
    return f"{metric.name}_samples_to_separate"


def block_marks(records: pd.DataFrame, metrics: list[MetricColumn], arrays: Optional[CellArrays]
                ) -> list[tuple[MetricColumn, str, BestMarks]]:
    """(metric, ``at NFE b``, its bold values) per NFE block and ranked metric, analysis-only records unranked."""
    marks = []
    for m in metrics:
        if m.lower_is_better is None:
            continue
        comparison = PairedComparison(arrays, m) if arrays is not None else None
        for block, group in records.groupby("nfe_block", sort=False):
            marks.append((m, f"at NFE {block}", best_marks(group, ~group["analysis_only"], m, comparison)))
    return marks


def _build(records: pd.DataFrame, metrics: list[MetricColumn], caption: str, marks: list) -> Table:
    costs = {m.name: cost_format(m, records[m.name]) for m in metrics if m.units}
    table = Table(caption, ["NFE", "solver"] + [costs[m.name].header if m.name in costs else m.label + m.arrow
                                                for m in metrics], text_columns=(0, 1))
    bold = {m.name: pd.Series(False, index=records.index) for m in metrics}
    paired = dict.fromkeys(m for m, _, mark in marks if mark.paired)
    needed = {m.name: pd.Series(float("nan"), index=records.index) for m in paired}
    for m, _, mark in marks:
        bold[m.name].loc[mark.bold.index] = mark.bold
        for tie in mark.ties:
            tied = mark.bold.index[records.loc[mark.bold.index, "solver_label"] == tie.solver]
            needed[m.name].loc[tied] = tie.samples_needed or float("nan")
    previous_block = None
    for i, record in records.iterrows():
        first = record["nfe_block"] != previous_block
        previous_block = record["nfe_block"]
        label = marked(record["solver_label"], record["learned_uniform"])
        cells = [Cell(_nfe_text(record) if first else ""), Cell(label)]
        for m in metrics:
            if not record["seeds_ok"]:
                text = record["problem"].split(":")[0]
            else:
                text = costs[m.name].text(record[m.name]) if m.name in costs else _value_text(record, m.name)
            cells.append(Cell(text, bool(bold[m.name][i])))
        best = [m.name for m in metrics if bold[m.name][i]]
        values = {k: v for m in metrics for k, v in _interval_record(record, m.name).items()}
        table.rows.append(Row(cells, {
            "nfe": None if record["nfe_block"] == "adaptive" else int(record["nfe_block"]),
            "nfe_measured": record["nfe_measured"], "solver": record["solver_label"],
            "analysis_only": record["analysis_only"], "learned_grid_uniform": record["learned_uniform"], **values,
            "best": ";".join(best), **{samples_column(m): needed[m.name][i] for m in paired},
            "seeds": record["seeds"], "seeds_ok": record["seeds_ok"], "problem": record["problem"],
        }, rule_above=first))
        failed = record["seeds"] - record["seeds_ok"]
        if record["problem"] and failed:
            where = f"{record['solver_label']} at NFE {record['nfe_block']}"
            table.notes.append(f"{where}: {failed} of {record['seeds']} seed(s) did not finish ({record['problem']}).")
    if costs:
        table.notes.insert(0, units_note(list(costs.values())))
    if records["learned_uniform"].any():
        table.notes.insert(0, NOTE)
    return table


def _floor_row(rows: pd.DataFrame, metrics: list[MetricColumn]) -> Optional[Row]:
    """The last block: each metric's value for a data draw in place of the samples, where it has one."""
    floors = {m.name: noise_floor(rows, m) for m in metrics}
    if not any(pd.notna(f[f"{name}_floor"]) for name, f in floors.items()):
        return None
    cells = [Cell("–"), Cell(FLOOR_LABEL)]
    record = {"nfe": None, "nfe_measured": None, "solver": FLOOR_LABEL, "analysis_only": False}
    for m in metrics:
        floor = floors[m.name]
        cells.append(Cell(_value_text(floor, f"{m.name}_floor") if pd.notna(floor[f"{m.name}_floor"]) else ""))
        record.update({k.replace("_floor", ""): v for k, v in floor.items()})
    record.update(best="", seeds=rows["seed"].nunique(), seeds_ok=None, problem=None)
    return Row(cells, record, rule_above=True)


def _not_applicable(rows: pd.DataFrame, metrics: list[MetricColumn]) -> list[str]:
    """One note per metric a row skipped, with the reason it gave; metrics no row has are named as left out."""
    reasons: dict[str, str] = {}
    for skipped in rows.get("metrics_not_applicable", pd.Series(dtype=object)).dropna():
        for metric, why in json.loads(skipped).items():
            reasons.setdefault(metric, why)
    shown = {m.name: m.label for m in metrics}
    notes = []
    for metric, why in reasons.items():
        if metric in shown:
            notes.append(f"– in {shown[metric]}: not applicable to that cell ({why}).")
        elif not any(name.startswith(metric) for name in shown):
            notes.append(f"{metric} is left out of this table: not applicable to any of its cells ({why}).")
    return notes


def samples_text(rows: pd.DataFrame) -> str:
    """The samples of each cell: ``1024``, or ``256 to 1024`` where the finished cells took different numbers
    (sequential sample sizes: each NFE block stops once its solvers are separated)."""
    finished = rows[rows["status"] == "ok"] if "status" in rows else rows
    most = int(rows["num_samples"].max())
    fewest = int(finished["num_samples"].min()) if len(finished) else most
    return f"{most}" if fewest == most else f"{fewest} to {most}"


def _common_notes(rows: pd.DataFrame, metrics: list[MetricColumn], marks: Optional[list], floor: bool) -> list[str]:
    seeds, samples = rows["seed"].nunique(), samples_text(rows)
    notes = [f"Mean over {seeds} seed(s) of {samples} samples each; ± is half the width of the 95% confidence "
             "interval (per-sample means: bootstrap over samples; distribution metrics: bootstrap over the "
             "cell's samples; several seeds: combined), the CSV holds both ends; an interval of a distance or "
             "error, cut at 0, is printed as its two ends [low, high] where ± would reach below 0."]
    if marks is not None:
        ties = [SAMPLES_NOTE] if any(mark.ties for _, _, mark in marks) else []
        notes[:0] = [bold_note("in each NFE block"), *rule_notes(marks), *ties]
    if floor:
        notes.append(f"{FLOOR_LABEL}: the metric for a fresh draw of as many data samples (same labels) in place "
                     "of the samples; a sampler within this of its competitors is not measurably different.")
    notes += _not_applicable(rows, metrics)
    for m in metrics:
        if m.lower_is_better is None and not m.units:  # the costs' note says they are never ranked
            notes.append(f"{m.label} is not ranked: {m.unranked_reason}.")
    return notes


def _left_out(metrics: list[MetricColumn]) -> list[str]:
    shapes = [m for m in metrics if not m.in_table1 and m.name.endswith(SHAPE_SUFFIXES)]
    notes = [f"{m.label} is left out of this table, whose columns read as rankings ({m.unranked_reason}); its "
             "convergence figure shows it against NFE, beside the reference runs."
             for m in metrics if not m.in_table1 and m not in shapes]
    if shapes:
        notes.append("The quantiles and exceedances of the per-sample metrics are in the shape tables beside this one, "
                     "and drawn against NFE in their convergence figures.")
    return notes


def table1(rows: pd.DataFrame, metrics: list[MetricColumn], title: str, arrays: Optional[CellArrays] = None
           ) -> tuple[Optional[Table], Optional[Table]]:
    """(ranked table, analysis-only table) of one setting's sweep rows; either may be None.  Metrics that do
    not rank (``MetricColumn.in_table1``) are left out, with a note saying why.  ``arrays``: what the cells
    kept, for comparing values with their block's best on the same samples (without, by intervals)."""
    left_out, metrics = _left_out(metrics), [m for m in metrics if m.in_table1]
    records = aggregate(rows, metrics)
    tables = []
    for analysis, caption in ((False, f"Table 1 layout. {title}: each metric by NFE budget and solver."),
                              (True, f"Analysis-only solvers (oracles), not ranked. {title}.")):
        part = records[records["analysis_only"] == analysis].reset_index(drop=True) if len(records) else records
        if part.empty:
            tables.append(None)
            continue
        marks = None if analysis else block_marks(part, metrics, arrays)
        table = _build(part, metrics, caption, marks or [])
        floor = None if analysis else _floor_row(rows[rows["status"] == "ok"], metrics)
        if floor is not None:
            table.rows.append(floor)
        table.notes = _common_notes(rows, metrics, marks, floor=floor is not None) + left_out + table.notes
        tables.append(table)
    return tables[0], tables[1]
