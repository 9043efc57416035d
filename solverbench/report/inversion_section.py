"""The report section of ``kind: inversion`` (docs/inversion.md): per setting (backbone, time grid and
guidance) round-trip and inversion errors against NFE, their table, and where the grid class-edited, the
edit table and source -> edit image grids.  A grid that inverts to several times t0 gets these once per
t0 (their files named ``..._t0-0p5``), after the figure of what its edits keep and change against t0."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from solverbench.report.figures.edit_tradeoff import plot_edit_tradeoff
from solverbench.report.figures.edits import EDIT_FIGURE_NFE, plot_edits
from solverbench.report.figures.inversion import plot_inversion_errors
from solverbench.report.figures.style import SolverStyles
from solverbench.report.items import Item, Section, figure_item, write_table
from solverbench.metric_columns import EDIT_METRICS, INVERSION_METRICS, KNOWN_BY_NAME
from solverbench.report.pairing import CellArrays
from solverbench.report.sections import ReportContext, ReportSection, register_report_section
from solverbench.report.settings import Setting
from solverbench.report.tables.table1 import table1


@register_report_section("inversion")
class InversionSection(ReportSection):
    def render(self, setting: Setting, context: ReportContext) -> Section:
        return inversion_section(setting, context.out_dir, context.results_dir, context.styles)


WHOLE_WAY = 1.0  # the t0 of rows that record none: they inverted all the way to noise


def inversion_section(setting: Setting, out_dir: Path, results_dir: Path, styles: SolverStyles) -> Section:
    rows, section = with_t0(setting.rows), Section(setting.title)
    times = sorted(rows["t0"].unique(), reverse=True)
    if len(times) == 1:
        section.items += t0_items(Setting(setting.grid, setting.kind, setting.title, setting.directory, rows), None,
                                  out_dir, results_dir, styles)
        return section
    edited = rows[edited_rows(rows)]
    if not edited.empty:
        figure = plot_edit_tradeoff(edited, setting.title, out_dir / setting.directory / "edit_tradeoff.png", styles)
        section.items.append(figure_item(
            figure, out_dir, "What the edits keep and change against the time t0 they invert to, one column per NFE, "
            "one line per solver: the classifier's accuracy on the target class (top), the RMS distance of the edit "
            "to its source (middle), and the two against each other (bottom; up and to the left is better); 95% "
            "intervals as bars.", "No edit trade-off figure: fewer than two t0 values hold finished edits."))
    for t0 in times:
        part = Setting(setting.grid, setting.kind, f"{setting.title}, t0 = {t0:g}", setting.directory,
                       rows[rows["t0"] == t0].reset_index(drop=True))
        section.items += t0_items(part, t0, out_dir, results_dir, styles)
    return section


def with_t0(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with the time each inverted to (``t0``), 1 for rows that record none (they went all the way)."""
    t0 = rows["t0"].fillna(WHOLE_WAY) if "t0" in rows else pd.Series(WHOLE_WAY, index=rows.index)
    return rows.assign(t0=t0.astype(float))


def edited_rows(rows: pd.DataFrame) -> pd.Series:
    return rows["edits"].fillna(False).astype(bool) if "edits" in rows else pd.Series(False, index=rows.index)


def t0_tag(t0: float) -> str:
    """``t0-0p5``: a time in a file name, without the dot a suffix would be read from."""
    return "t0-" + f"{t0:g}".replace(".", "p")


def t0_items(setting: Setting, t0: Optional[float], out_dir: Path, results_dir: Path, styles: SolverStyles
             ) -> list[Item]:
    """The error table and figure and, where the rows edited, the edit table and image grids of rows that all
    inverted to one time: ``t0`` where the setting holds several (it ends their file names), else None."""
    rows, where, items = setting.rows, setting.directory, []
    suffix = "" if t0 is None else f"_{t0_tag(t0)}"
    way, back = ("", "") if t0 is None else (f" to t0 = {t0:g}", " from there")
    errors = [KNOWN_BY_NAME[name] for name in INVERSION_METRICS]
    items += _tables(setting, errors, out_dir, results_dir, f"inversion{suffix}",
                     f"Round trip and inversion by NFE (blocks) and solver: invert the data{way}, regenerate it{back} "
                     "with the same solver and NFE", "bold marks the best in each block.")
    figure = plot_inversion_errors(rows, errors, setting.title, out_dir / where / f"inversion_errors{suffix}.png",
                                   styles)
    items.append(figure_item(
        figure, out_dir, "Round-trip error (left) and inversion error (right) against NFE, one line per solver, "
        "95% intervals as bars; the adaptive reference as a grey line.",
        "No inversion figure: no finished cell with an NFE budget."))
    if edited_rows(rows).any():
        edited = rows[edited_rows(rows)]
        edits = [KNOWN_BY_NAME[name] for name in EDIT_METRICS]
        items += _tables(Setting(setting.grid, setting.kind, setting.title, where, edited), edits, out_dir,
                         results_dir, f"edits{suffix}", f"Class edits by NFE and solver: inverted{way} unguided under "
                         f"the source label, regenerated{back} under another label with the setting's guidance",
                         "bold marks the best in each block.")
        for nfe in EDIT_FIGURE_NFE:
            figure, missing = plot_edits(edited, results_dir / setting.grid / "edits", nfe, setting.title,
                                         out_dir / where / f"edits{suffix}_nfe{nfe}.png")
            note = f" No saved edits for {', '.join(missing)}." if missing else ""
            items.append(figure_item(
                figure, out_dir, f"Class edits at NFE {nfe}: the sources (top row) and each solver's edits of them "
                "(source -> target label above each column)." + note,
                f"No edit figure at NFE {nfe}: no finished cell at that budget saved its edits." + note))
    return items


def _tables(setting: Setting, metrics: list, out_dir: Path, results_dir: Path, stem: str, what: str, bold: str
            ) -> list[Item]:
    ranked, analysis = table1(setting.rows, metrics, setting.title, CellArrays(results_dir))
    items = []
    for table, suffix, note in ((ranked, "", bold), (analysis, "_analysis_only", "analysis-only, never ranked.")):
        if table is not None:
            table.caption = f"{what}. {setting.title}."
            items.append(write_table(table, out_dir, setting.directory / f"{stem}{suffix}", f"{what}; {note}"))
    return items
