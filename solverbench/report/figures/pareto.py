"""Quality against cost: one metric against NFE, wall time and FLOPs per sample, the Pareto front marked.

One panel per cost the rows record (``tables.pareto.COST_AXES``; gmm has no FLOPs), log axes.
Each solver is a line through its NFE budgets with 95% intervals as bars; high-NFE and
adaptive runs are points like any other.  The front is a thick grey staircase behind the
lines, its points ringed in black: to the lower left of it nothing was reached.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from solverbench.report.figures.style import SolverStyles, legend_below, plain_log_ticks, report_figure, value_ticks
from solverbench.metric_columns import MetricColumn
from solverbench.report.tables.pareto import NFE, CostAxis, available_axes, on_front, operating_points
from solverbench.uncertainty import ci_columns

PANEL = (4.6, 4.2)  # inches per panel
LEGEND_ROW = 0.22  # inches per legend row
FRONT_STYLE = {"color": "0.55", "linewidth": 5, "alpha": 0.45, "solid_capstyle": "round", "zorder": 0}


def draw_costs(ax, points: pd.DataFrame, axis: CostAxis, metric: MetricColumn, styles: SolverStyles) -> dict:
    """Every solver's line over ``axis`` with its bars, then the front; returns {label: handle}."""
    low, high = ci_columns(metric.name)
    handles = {}
    for label, line in points.groupby("solver_label", sort=False):
        line = line.sort_values(axis.column)
        color = styles.color(label)
        handles[label] = ax.plot(line[axis.column], line[metric.name], marker=styles.marker(label), color=color,
                                 linestyle=styles.linestyle(label), markersize=6)[0]
        bars = line[line[low].notna() & line[high].notna()]
        if len(bars):
            ax.errorbar(bars[axis.column], bars[metric.name],
                        yerr=[(bars[metric.name] - bars[low]).clip(lower=0), (bars[high] - bars[metric.name]).clip(lower=0)],
                        fmt="none", ecolor=color, elinewidth=1.0, capsize=2.5, alpha=0.8)
    front = points[on_front(points, axis, metric)].sort_values(axis.column)
    ax.step(front[axis.column], front[metric.name], where="post", **FRONT_STYLE)
    ax.plot(front[axis.column], front[metric.name], linestyle="none", marker="o", markersize=11,
            markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.3, zorder=5)
    ax.set_xscale("log")
    if axis is NFE:
        value_ticks(ax.xaxis, points[axis.column].round(1))
    else:
        plain_log_ticks(ax.xaxis)
    if (points[metric.name] > 0).all():
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel(axis.axis_label)
    return handles


def plot_pareto(rows: pd.DataFrame, metric: MetricColumn, title: str, path: Path,
                styles: SolverStyles) -> Optional[Path]:
    """The figure, or None when fewer than two operating points have the metric and a cost."""
    points = operating_points(rows, metric)
    axes_used = available_axes(points)
    if len(points) < 2 or not axes_used:
        return None
    labels = list(dict.fromkeys(points["solver_label"]))
    legend_rows = -(-len(labels) // 3) + 1
    size = (PANEL[0] * len(axes_used), PANEL[1] + LEGEND_ROW * legend_rows)
    with report_figure(path, size=size, ncols=len(axes_used), constrained=True, grid=True) as (fig, axes):
        handles = {}
        for ax, axis in zip(axes[0], axes_used):
            handles.update(draw_costs(ax, points, axis, metric, styles))
            ax.set_title(f"against {axis.label}")
        axes[0][0].set_ylabel(metric.axis_label)
        fig.suptitle(f"{metric.label} against cost, Pareto front ringed\n{title}")
        front = axes[0][0].plot([], [], **{**FRONT_STYLE, "zorder": 1})[0]
        bars = axes[0][0].plot([], [], linestyle="none", marker="|", markersize=12, color="0.3")[0]
        legend_below(fig, [handles[label] for label in labels] + [front, bars],
                     labels + ["Pareto front (ringed points: nothing cheaper is better)",
                               "bars: 95% confidence intervals"])
    return path
