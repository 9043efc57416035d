"""Convergence plot: one metric against NFE, one line per solver.

Points beyond the NFE range the solvers share (Euler at 50-200 NFE, typically) and
adaptive solvers (no NFE budget) are drawn as horizontal grey reference lines: what a
solver at a few NFE has to match.  An adaptive run far below every other value is
named in the legend instead of stretching the axis.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from solverbench.report.figures.style import SolverStyles, legend_outside, report_figure
from solverbench.report.metric_columns import MetricColumn
from solverbench.report.tables.model import format_number

REFERENCE_DASHES = ((6, 2), (3, 2), (8, 2, 2, 2), (2, 2), (10, 3))
OFF_AXIS_DECADES = 1.0  # an adaptive line more than this far below the lowest other value is not drawn


def shared_nfe_range(rows: pd.DataFrame) -> list[int]:
    """NFE budgets at which two or more solvers ran (all budgets when only one solver did)."""
    fixed = rows[rows["nfe"].notna()]
    counts = fixed.groupby("nfe")["solver_label"].nunique()
    shared = counts[counts >= 2].index if (counts >= 2).any() else counts.index
    return sorted(int(n) for n in shared)


def _reference_lines(ok: pd.DataFrame, means: pd.DataFrame, metric: MetricColumn, top_nfe: int) -> list[dict]:
    """High-NFE and adaptive runs as {label, value, adaptive}, the high-NFE ones first."""
    adaptive_nfe = ok[ok["nfe"].isna()].groupby("solver_label")["nfe_measured"].mean()
    lines = []
    for _, ref in means[means["nfe"].isna() | (means["nfe"] > top_nfe)].iterrows():
        adaptive = pd.isna(ref["nfe"])
        nfe = adaptive_nfe[ref["solver_label"]] if adaptive else ref["nfe"]
        lines.append({"label": f"{ref['solver_label']} at {nfe:.0f} NFE" + (" (adaptive)" if adaptive else ""),
                      "value": ref[metric.name], "adaptive": adaptive})
    return sorted(lines, key=lambda line: line["adaptive"])


def plot_convergence(rows: pd.DataFrame, metric: MetricColumn, title: str, path: Path,
                     styles: SolverStyles) -> Optional[Path]:
    """The plot, or None when no finished run with an NFE budget has the metric."""
    ok = rows[(rows["status"] == "ok") & rows[metric.name].notna()]
    nfe_range = shared_nfe_range(ok)
    if not nfe_range:
        return None
    means = ok.groupby(["solver_label", "nfe"], dropna=False, sort=False)[metric.name].mean().reset_index()
    analysis = set(ok.loc[ok["analysis_only"].fillna(False).astype(bool), "solver_label"])
    log_y = metric.lower_is_better is True and (means[metric.name] > 0).all()
    lines = means[means["nfe"].notna() & (means["nfe"] <= max(nfe_range))]
    references = _reference_lines(ok, means, metric, max(nfe_range))
    lowest = min([lines[metric.name].min()] + [r["value"] for r in references if not r["adaptive"]])
    missing = rows[(rows["status"] != "ok") & rows["nfe"].notna()].groupby("solver_label")["nfe"].unique()
    with report_figure(path, size=(9.0, 5.2)) as (fig, ax):
        for label, line in lines.groupby("solver_label", sort=False):
            dashed = label in analysis
            note = " (analysis only)" if dashed else ""
            if label in missing:
                note += f" ({', '.join(f'{n:.0f}' for n in sorted(missing[label]))} NFE: did not finish)"
            ax.plot(line["nfe"], line[metric.name], marker=styles.marker(label), color=styles.color(label),
                    linestyle="--" if dashed else "-", markerfacecolor="none" if dashed else styles.color(label),
                    label=label + note)
        for i, ref in enumerate(references):
            text = f"{ref['label']}: {format_number(ref['value'], 3)}"
            if ref["adaptive"] and log_y and np.log10(lowest / ref["value"]) > OFF_AXIS_DECADES:
                ax.plot([], [], linestyle="none", label=text + " (off the axis, below)")
                continue
            shade = str(0.2 + 0.5 * i / max(1, len(references) - 1))
            ax.axhline(ref["value"], color=shade, linewidth=1.3, label=text,
                       dashes=(1, 2) if ref["adaptive"] else REFERENCE_DASHES[i % len(REFERENCE_DASHES)])
        if log_y:
            ax.set_yscale("log")
        ax.set_xticks(nfe_range)
        ax.set_xlabel("NFE (network evaluations per sample)")
        ax.set_ylabel(metric.axis_label + ("" if log_y else ", linear scale"))
        ax.set_title(f"{metric.label} vs NFE\n{title}")
        legend_outside(ax)
    return path
