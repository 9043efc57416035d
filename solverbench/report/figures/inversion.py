"""Inversion errors against NFE: round-trip and inversion error side by side, one line per solver
(``draw_convergence`` on each panel: its error bars, adaptive reference lines and legend rules)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from solverbench.report.figures.convergence import AXES_HEIGHT, LEGEND_ROW, draw_convergence, shared_nfe_range
from solverbench.report.figures.style import SolverStyles, legend_below, report_figure
from solverbench.metric_columns import MetricColumn


def plot_inversion_errors(rows: pd.DataFrame, metrics: list[MetricColumn], title: str, path: Path,
                          styles: SolverStyles) -> Optional[Path]:
    """One panel per metric (round trip, inversion), or None when no finished cell with an NFE budget has one."""
    ok = rows[rows["status"] == "ok"]
    shown = [m for m in metrics if m.name in ok and shared_nfe_range(ok[ok[m.name].notna()])]
    if not shown:
        return None
    with report_figure(path, size=(7.0 * len(shown), AXES_HEIGHT), ncols=len(shown), constrained=True,
                       grid=True) as (fig, axes):
        for ax, metric in zip(axes[0], shown):
            draw_convergence(ax, rows, metric, styles)
            ax.set_title(f"{metric.label}: {metric.unit}", fontsize=10)
            ax.set_ylabel(metric.label)  # the unit is in the panel's title: side by side, long labels collide
        handles, labels = axes[0][0].get_legend_handles_labels()
        for ax in axes[0][1:]:  # lines the first panel lacks (a reference line of its own)
            for handle, label in zip(*ax.get_legend_handles_labels()):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        fig.suptitle(f"Invert data, regenerate it: errors vs NFE\n{title}")
        fig.set_figheight(AXES_HEIGHT + LEGEND_ROW * legend_below(fig, handles, labels, wrap=70))
    return path
