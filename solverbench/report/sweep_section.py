"""The report section of ``kind: sweep``: per setting Table 1, ablations, convergence, quality-against-cost
(Pareto) and global-order plots, the training-cost table, the pairwise comparisons, samples."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from solverbench.report.figures.convergence import plot_convergence
from solverbench.report.figures.order_curves import plot_order_curves
from solverbench.report.figures.pairwise import plot_pairwise
from solverbench.report.figures.pareto import plot_pareto
from solverbench.report.figures.samples import plot_samples, why_no_figure
from solverbench.report.figures.training_cost import plot_training_cost
from solverbench.report.figures.style import SolverStyles
from solverbench.report.items import Item, Section, figure_item, write_table, write_tables
from solverbench.metric_columns import SHAPE_SUFFIXES, MetricColumn, cost_columns, metric_columns
from solverbench.report.order_fit import global_error_curves
from solverbench.report.pairing import CellArrays
from solverbench.report.tables.pairwise_blocks import pairwise_blocks
from solverbench.report.sections import ReportContext, ReportSection, register_report_section
from solverbench.report.settings import Setting, compares_schedules
from solverbench.report.tables.ablation import ablation_tables
from solverbench.report.tables.pairwise import pairwise_table
from solverbench.report.tables.pareto import budget_table
from solverbench.report.tables.shape import shape_table
from solverbench.report.tables.slopes import slope_table
from solverbench.report.tables.table1 import table1
from solverbench.report.tables.training_cost import has_training_costs, training_cost_table

GLOBAL_X = "NFE (network evaluations per sample)"
GLOBAL_Y = "trajectory error (RMS to reference endpoint, data units)"


@register_report_section("sweep")
class SweepSection(ReportSection):
    """One setting per backbone, time grid and guidance; a grid that samples on learned time grids compares
    its schedules in one ranking instead (``settings.labelled_with_schedules`` names them)."""

    def setting_keys(self, rows: pd.DataFrame) -> list[str]:
        keys = super().setting_keys(rows)
        return [key for key in keys if key != "schedule"] if compares_schedules(rows) else keys

    def render(self, setting: Setting, context: ReportContext) -> Section:
        return sweep_section(setting, context.out_dir, context.results_dir, context.styles)


def sweep_section(setting: Setting, out_dir: Path, results_dir: Path, styles: SolverStyles) -> Section:
    rows, where, section = setting.rows, setting.directory, Section(setting.title)
    arrays = CellArrays(results_dir)
    metrics = metric_columns(rows[rows["status"] == "ok"])
    ranked, analysis = table1(rows, metrics + cost_columns(rows[rows["status"] == "ok"]), setting.title, arrays)
    if ranked is not None:
        section.items.append(write_table(ranked, out_dir, where / "table1",
                                         "Table 1 layout: every metric by NFE budget (blocks) and solver, then "
                                         "what each cell cost (wall time, FLOPs); bold marks the best in each "
                                         "block and every value not shown worse than it."))
    if analysis is not None:
        section.items.append(write_table(analysis, out_dir, where / "table1_analysis_only",
                                         "Analysis-only solvers (oracles) by NFE, kept apart and never ranked."))
    primary = next((m for m in metrics if m.lower_is_better is not None), None)
    for family, table in (ablation_tables(rows, primary, setting.title, arrays).items() if primary else ()):
        section.items.append(write_table(table, out_dir, where / f"ablation_{family}",
                                         f"Table 3 layout: the {family} variants' {primary.label} (the first ranked "
                                         "metric) by NFE; bold marks the best at each NFE."))
    for metric in metrics:
        figure = plot_convergence(rows, metric, setting.title, out_dir / where / f"convergence_{metric.name}.png",
                                  styles)
        section.items.append(figure_item(
            figure, out_dir, f"Convergence: {metric.label} against NFE, one line per solver; grey lines are "
            "high-NFE and adaptive runs for reference.",
            f"No convergence plot of {metric.label}: no finished run with an NFE budget has it."))
    for metric in metrics:
        if metric.lower_is_better is not None and metric.in_table1:
            section.items += _pareto(setting, metric, out_dir, styles, arrays)
    section.items += _shape(setting, metrics, out_dir)
    if primary is not None and has_training_costs(rows):
        section.items += _training_cost(setting, primary, out_dir, styles, arrays)
    section.items += _pairwise(setting, metrics, out_dir, arrays)
    section.items += _global_order(setting, out_dir, styles)
    section.items.append(_samples(setting, out_dir, results_dir))
    return section


def _shape(setting: Setting, metrics: list[MetricColumn], out_dir: Path) -> list[Item]:
    """Per per-sample metric that records its quantiles, the table of its shape (``tables.shape``)."""
    items = []
    for metric in metrics:
        shapes = [m for m in metrics if m.name in {f"{metric.name}{suffix}" for suffix in SHAPE_SUFFIXES}]
        table = shape_table(setting.rows, metric, shapes, setting.title) if shapes else None
        if table is not None:
            items.append(write_table(table, out_dir, setting.directory / f"shape_{metric.name}",
                                     f"The shape behind the mean of {metric.label}: median, 90% and 99% quantiles "
                                     "over each cell's samples (and the fraction above a threshold the grid sets)."))
    return items


def _global_order(setting: Setting, out_dir: Path, styles: SolverStyles) -> list[Item]:
    rows = setting.rows
    if "trajectory_error" not in rows or not rows["trajectory_error"].notna().any():
        return []
    curves = [c for c in global_error_curves(rows) if len(c.x) >= 2 or c.problem]
    if not curves:
        return []
    figure = plot_order_curves(curves, out_dir / setting.directory / "global_order.png",
                               title=f"Global error order: trajectory error vs NFE (log-log)\n{setting.title}",
                               x_label=GLOBAL_X, y_label=GLOBAL_Y, styles=styles)
    table = slope_table(curves, f"Global-error slopes (error ~ NFE^slope; theory: -order). {setting.title}.", "NFE")
    return [figure_item(figure, out_dir, "Global-error order curves: trajectory error against NFE on log-log axes, "
                        "fitted slope beside the theoretical -order in the legend.",
                        "No global-error order figure: no solver finished two NFE budgets."),
            write_table(table, out_dir, setting.directory / "global_order_slopes",
                        "Fitted global-error slopes against theory (-order), with the points each fit used.")]


def _pairwise(setting: Setting, metrics: list[MetricColumn], out_dir: Path, arrays: CellArrays) -> list[Item]:
    """Per ranked metric, the solver x solver tables of its NFE blocks (linked), and the setting's figure."""
    blocks = pairwise_blocks(setting.rows[setting.rows["status"] == "ok"], metrics, arrays)
    where = setting.directory / "pairwise"
    items = []
    for metric in dict.fromkeys(b.metric for b in blocks):
        tables = {where / f"{metric.name}_nfe{b.block}": pairwise_table(b, setting.title)
                  for b in blocks if b.metric == metric}
        items.append(write_tables(tables, out_dir, f"Pairwise comparisons in {metric.label}, one table per NFE "
                                  "block: row minus column on the same samples with its 95% interval (— where not "
                                  "paired), and the samples that would separate each tie from the best."))
    figure = plot_pairwise(blocks, setting.title, out_dir / where / "pairwise.png")
    items.append(figure_item(figure, out_dir, "Pairwise comparisons: per ranked metric and NFE block, how many paired "
                             "standard errors the row solver is better (blue) or worse (red) than the column solver "
                             "on the same samples; grey where not paired.",
                             "No pairwise comparisons: no two ranked solvers of an NFE block kept paired arrays "
                             "(cells run before they were kept, or no per-sample or bootstrap metric)."))
    return items


def _pareto(setting: Setting, metric, out_dir: Path, styles: SolverStyles, arrays: CellArrays) -> list[Item]:
    where = setting.directory
    figure = plot_pareto(setting.rows, metric, setting.title, out_dir / where / f"pareto_{metric.name}.png", styles)
    if figure is None:
        return [Item(f"No quality-against-cost figure of {metric.label}: fewer than two finished operating points "
                     "record it with their costs.")]
    table = budget_table(setting.rows, metric, setting.title, arrays)
    return [figure_item(figure, out_dir, f"Quality against cost: {metric.label} against NFE, wall time and FLOPs "
                        "per sample, one line per solver through its NFE budgets; the Pareto front is ringed.", ""),
            write_table(table, out_dir, where / f"budgets_{metric.name}",
                        f"Best solver per wall-time and FLOPs budget ({metric.label}): the front of the figure "
                        "above read as budgets, with the points not shown worse than the best.")]


def _training_cost(setting: Setting, metric, out_dir: Path, styles: SolverStyles, arrays: CellArrays) -> list[Item]:
    where = setting.directory
    table = training_cost_table(setting.rows, metric, setting.title, arrays)
    figure = plot_training_cost(setting.rows, metric, setting.title, out_dir / where / "training_cost.png", styles)
    return [write_table(table, out_dir, where / "training_cost",
                        f"{metric.label} (the first ranked metric) by NFE beside each sampler's training or "
                        "optimisation wall time and trainable parameters; bold marks the best at each NFE."),
            figure_item(figure, out_dir, f"Error against training cost: {metric.label} against the wall time each "
                        "sampler cost to make, one panel per NFE (training-free samplers at 0).",
                        "No error-against-training-cost figure: no finished cell with an NFE budget.")]


def _samples(setting: Setting, out_dir: Path, results_dir: Path) -> Item:
    samples_dir = results_dir / setting.grid / "samples"
    figure = plot_samples(setting.rows, samples_dir, setting.title, out_dir / setting.directory / "samples.png")
    return figure_item(figure, out_dir, "Samples: the same saved noise through every solver (rows) and NFE (columns).",
                       "" if figure else f"No sample figure: {why_no_figure(setting.rows, samples_dir)}.")


