"""Error against training cost: one panel per NFE budget, one marker per sampler, 95% intervals as bars.

x is the wall time the sampler cost to make (its own training plus its learned time grid's),
on a log axis; training-free samplers sit on a marked strip at the left, "0".  y is the
metric (log axis).  A sampler up and to the right of another is beaten at less cost.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import pandas as pd

from solverbench.report.figures.style import SolverStyles, legend_below, plain_log_ticks, report_figure
from solverbench.metric_columns import MetricColumn
from solverbench.report.tables.aggregate import block_order
from solverbench.report.tables.training_cost import cost_records
from solverbench.uncertainty import ci_columns

PANEL = (4.2, 4.0)  # inches per panel


def plot_training_cost(rows: pd.DataFrame, metric: MetricColumn, title: str, path: Path,
                       styles: SolverStyles) -> Optional[Path]:
    records = cost_records(rows, metric)
    records = records[records["nfe_block"] != "adaptive"].dropna(subset=[metric.name])
    records = records[records[metric.name] > 0]
    if records.empty:
        return None
    blocks = sorted(records["nfe_block"].unique(), key=block_order)
    paid = records.loc[records["cost_seconds"] > 0, "cost_seconds"]
    zero = 10.0 ** (math.floor(math.log10(paid.min())) - 1) if len(paid) else 1.0  # where "0" is drawn
    low, high = ci_columns(metric.name)
    labels = list(dict.fromkeys(records["solver_label"]))
    rows_of_legend = -(-len(labels) // 2)
    size = (PANEL[0] * len(blocks), PANEL[1] + 0.25 * rows_of_legend)
    with report_figure(path, size=size, ncols=len(blocks), constrained=True, grid=True) as (fig, axes):
        handles = {}
        for ax, block in zip(axes[0], blocks):
            here = records[records["nfe_block"] == block]
            for _, r in here.iterrows():
                x = r["cost_seconds"] if r["cost_seconds"] > 0 else zero
                label = r["solver_label"]
                err = None
                if pd.notna(r.get(low)) and pd.notna(r.get(high)):
                    err = [[max(r[metric.name] - r[low], 0.0)], [max(r[high] - r[metric.name], 0.0)]]
                handle = ax.errorbar([x], [r[metric.name]], yerr=err, marker=styles.marker(label), linestyle="none",
                                     color=styles.color(label), markersize=7, capsize=3)
                handles.setdefault(label, handle)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.axvspan(zero / 2, zero * 2, color="0.9", zorder=0)
            ax.set_xlim(zero / 2, max(records["cost_seconds"].max(), zero) * 3)
            ax.set_title(f"NFE {block}")
            plain_log_ticks(ax.yaxis)
            ticks = [t for t in ax.get_xticks() if zero * 5 <= t <= ax.get_xlim()[1]]
            ax.set_xticks([zero] + ticks, ["0"] + [f"{t:g}" for t in ticks])
        axes[0][0].set_ylabel(metric.label)
        axes[0][len(blocks) // 2].set_xlabel("training / optimisation wall time (s; 0 = training-free)")
        fig.suptitle(f"Error against training cost\n{title}")
        legend_below(fig, [handles[label] for label in labels], labels)
    return path
