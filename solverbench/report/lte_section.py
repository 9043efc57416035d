"""The report section of ``kind: lte``: per setting (backbone and guidance; its solvers and start times in
one figure) the LTE against H (log-log) and the fitted slopes as a table."""
from __future__ import annotations

from pathlib import Path

from solverbench.report.figures.order_curves import plot_order_curves
from solverbench.report.figures.style import SolverStyles
from solverbench.report.items import Section, figure_item, write_table
from solverbench.report.order_fit import lte_curves
from solverbench.report.sections import ReportContext, ReportSection, register_report_section
from solverbench.report.settings import Setting
from solverbench.report.tables.slopes import slope_table

LTE_X = "interval size H (time units; t runs from 1 = noise to 0 = data)"
LTE_Y = "local truncation error (RMS, data units)"


@register_report_section("lte")
class LTESection(ReportSection):
    def render(self, setting: Setting, context: ReportContext) -> Section:
        return lte_section(setting, context.out_dir, context.styles)


def lte_section(setting: Setting, out_dir: Path, styles: SolverStyles) -> Section:
    curves = lte_curves(setting.rows)
    starts = ", ".join(f"{t:g}" for t in sorted(setting.rows["t_start"].unique(), reverse=True))
    backwards = "direction" in setting.rows and (setting.rows["direction"] == "inversion").any()
    step = "one step [t, t + H] toward noise (inversion)" if backwards else "one step"
    figure = plot_order_curves(
        curves, out_dir / setting.directory / "lte_order.png",
        title=f"Local truncation error of {step} from exact states (start times t = {starts})\n{setting.title}",
        x_label=LTE_X, y_label=LTE_Y, styles=styles)
    table = slope_table(curves, f"LTE slopes (error of one step ~ H^slope; theory: order + 1). {setting.title}.", "H")
    return Section(setting.title, [
        figure_item(figure, out_dir, "Order curves: the error of one step from exact states against its size H on "
                    "log-log axes, fitted slope beside the theoretical order + 1 in the legend.",
                    "No order-curve figure: no solver finished a step (the table below says why)."),
        write_table(table, out_dir, setting.directory / "lte_slopes",
                    "Fitted LTE slopes against theory (order + 1), with the points each fit used."),
    ])
