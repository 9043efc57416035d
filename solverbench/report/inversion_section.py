"""The report section of ``kind: inversion`` (docs/inversion.md): per setting (backbone, time grid and
guidance) round-trip and inversion errors against NFE, their table, and where the grid class-edited, the
edit table and source -> edit image grids."""
from __future__ import annotations

from pathlib import Path

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


def inversion_section(setting: Setting, out_dir: Path, results_dir: Path, styles: SolverStyles) -> Section:
    rows, where, section = setting.rows, setting.directory, Section(setting.title)
    errors = [KNOWN_BY_NAME[name] for name in INVERSION_METRICS]
    section.items += _tables(setting, errors, out_dir, results_dir, "inversion",
                             "Round trip and inversion by NFE (blocks) and solver: invert the data, regenerate it "
                             "with the same solver and NFE", "bold marks the best in each block.")
    figure = plot_inversion_errors(rows, errors, setting.title, out_dir / where / "inversion_errors.png", styles)
    section.items.append(figure_item(
        figure, out_dir, "Round-trip error (left) and inversion error (right) against NFE, one line per solver, "
        "95% intervals as bars; the adaptive reference as a grey line.",
        "No inversion figure: no finished cell with an NFE budget."))
    if "edits" in rows and rows["edits"].fillna(False).astype(bool).any():
        edited = rows[rows["edits"].fillna(False).astype(bool)]
        edits = [KNOWN_BY_NAME[name] for name in EDIT_METRICS]
        section.items += _tables(Setting(setting.grid, setting.kind, setting.title, where, edited), edits, out_dir,
                                 results_dir, "edits", "Class edits by NFE and solver: inverted unguided under the "
                                 "source label, regenerated under another label with the setting's guidance",
                                 "bold marks the best in each block.")
        for nfe in EDIT_FIGURE_NFE:
            figure, missing = plot_edits(edited, results_dir / setting.grid / "edits", nfe, setting.title,
                                         out_dir / where / f"edits_nfe{nfe}.png")
            note = f" No saved edits for {', '.join(missing)}." if missing else ""
            section.items.append(figure_item(
                figure, out_dir, f"Class edits at NFE {nfe}: the sources (top row) and each solver's edits of them "
                "(source -> target label above each column)." + note,
                f"No edit figure at NFE {nfe}: no finished cell at that budget saved its edits." + note))
    return section


def _tables(setting: Setting, metrics: list, out_dir: Path, results_dir: Path, stem: str, what: str, bold: str
            ) -> list[Item]:
    ranked, analysis = table1(setting.rows, metrics, setting.title, CellArrays(results_dir))
    items = []
    for table, suffix, note in ((ranked, "", bold), (analysis, "_analysis_only", "analysis-only, never ranked.")):
        if table is not None:
            table.caption = f"{what}. {setting.title}."
            items.append(write_table(table, out_dir, setting.directory / f"{stem}{suffix}", f"{what}; {note}"))
    return items
