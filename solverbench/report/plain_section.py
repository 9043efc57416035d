"""The report of a study kind that registers no report section: its rows listed as stored.

The report cannot know which of such a kind's columns are qualities, which way they are
better, or what to draw, so it ranks and draws nothing: one table lists every row with the
solver, the seed, the status and each column the kind wrote beside the columns every row
begins with (``engine.rows.row_head``: what the row is of and how it was made, which the
setting's title and the results file already hold).
"""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from solverbench.report.items import Section, write_table
from solverbench.report.sections import ReportContext, ReportSection
from solverbench.report.settings import Setting
from solverbench.report.tables.model import Cell, Row, Table, format_number

# engine.rows.row_head's columns (the solver shown by its label; the rest in the title or the results file)
HEAD_COLUMNS = frozenset({
    "grid", "kind", "cell_id", "backbone", "backbone_params", "solver", "solver_params", "solver_label",
    "solver_order", "analysis_only", "cfg_scale", "cfg_lo", "cfg_hi", "cfg_convention", "seed", "label_rule",
    "num_samples", "dtype", "tf32", "compiled", "device", "device_name", "config_hash", "grid_hash", "versions",
    "git_commit", "timestamp", "host", "pid",
})
FIRST = ("solver_label", "seed", "status")  # the listing's first columns
LEFT_OUT = frozenset({"error", "traceback"})  # a failed row's reason is a note below the table


def own_columns(rows: pd.DataFrame) -> list[str]:
    """The columns the kind wrote that hold a value in some row, in the rows' order."""
    return [c for c in rows.columns if c not in HEAD_COLUMNS | LEFT_OUT | set(FIRST) and rows[c].notna().any()]


def cell_text(value) -> str:
    """A number in four significant digits (a whole number whole), anything else as it is; '–' for none."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return str(value)
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else format_number(value)


def rows_table(setting: Setting) -> Table:
    rows = setting.rows
    columns = [c for c in FIRST if c in rows] + own_columns(rows)
    headers = ["solver" if c == "solver_label" else c for c in columns]
    table = Table(f"Rows of study kind {setting.kind!r}, as stored. {setting.title}.", headers,
                  text_columns=tuple(i for i, c in enumerate(columns) if not pd.api.types.is_numeric_dtype(rows[c])))
    for _, row in rows.iterrows():
        table.rows.append(Row([Cell(cell_text(row[c])) for c in columns], {c: row[c] for c in columns}))
        if "status" in row and row["status"] != "ok" and pd.notna(row.get("error")):
            table.notes.append(f"{row.get('solver_label', 'a row')} (seed {row.get('seed')}): {row['error']}")
    table.notes.insert(0, f"No report section is registered for study kind {setting.kind!r}, so its rows are "
                          "listed as the results file holds them, nothing ranked or drawn; a plugin registers one "
                          "with solverbench.report.register_report_section.")
    return table


class PlainSection(ReportSection):
    """The rows of a kind without a report section of its own, one setting per backbone and guidance."""

    def render(self, setting: Setting, context: ReportContext) -> Section:
        item = write_table(rows_table(setting), context.out_dir, setting.directory / "rows",
                           f"Every row of study kind '{setting.kind}' as stored (no report section is registered "
                           "for this kind: nothing is ranked or drawn).")
        return Section(f"{setting.title} (study kind '{setting.kind}')", [item])
