"""Convergence plot: one metric against NFE (log axis, ticks at the budgets run), one line per solver.

Points beyond the NFE range the solvers share (Euler at 50-200 NFE, typically) and
adaptive solvers (no NFE budget) are drawn as horizontal grey reference lines: what a
solver at a few NFE has to match.  An adaptive run far below every other value is
named in the legend instead of stretching the axis.  Where the results hold a metric's
95% confidence interval (columns ``<metric>_ci_low`` and ``<metric>_ci_high``), every
point gets an error bar (the lines moved a little apart along NFE, so bars at one budget
stay visible) and every reference line a light grey band.  A metric that compares with
data also shows its noise floor (the same metric for a data draw in place of the samples)
as a black dotted line with its band.  The legend sits below the axes, in as many columns
as fit.

More than ``MAX_LINES`` solver lines do not fit one legend: the figure then draws one panel
per solver family (``families``), every panel with the same reference lines, noise floor and
value axis, each panel's solvers named below it and the reference lines once below all.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Collection, Optional

import numpy as np
import pandas as pd

from solverbench.report.figures.families import Panel, family_panels
from solverbench.report.figures.style import (ANALYSIS_LINE_STYLE, SolverStyles, legend_below, plain_log_ticks,
                                              report_figure, value_ticks)
from solverbench.report.learned_grids import uniform_budgets
from solverbench.metric_columns import MetricColumn
from solverbench.report.tables.aggregate import aggregate, nfe_block, noise_floor
from solverbench.report.tables.model import format_number, format_with_interval
from solverbench.uncertainty import ci_columns

REFERENCE_DASHES = ((6, 2), (3, 2), (8, 2, 2, 2), (2, 2), (10, 3))
OFF_AXIS_DECADES = 1.0  # an adaptive line more than this far below the lowest other value is not drawn
AXES_HEIGHT = 4.6  # inches of figure above the legend
LEGEND_ROW = 0.2  # inches per legend row
DODGE_STEP, DODGE_SPAN = 0.006, 0.07  # with error bars, lines are moved apart in log NFE by these
BAND_ALPHA = 0.08  # a reference line's interval: a light band (bands of several lines add up)
MAX_LINES = 10  # solver lines one panel and its legend hold; more are drawn one panel per family
PANEL_SIZE = (6.4, 3.6)  # inches of one family panel's axes
PANEL_LEGEND_WRAP = 52  # characters per line of a panel's legend
SOLVER_LINE = "solver line"  # the gid of a solver's line (its legend entry is its panel's, not shared)


def shared_nfe_range(rows: pd.DataFrame) -> list[int]:
    """NFE budgets at which two or more solvers ran (all budgets when only one solver did)."""
    fixed = rows[rows["nfe"].notna()]
    counts = fixed.groupby("nfe")["solver_label"].nunique()
    shared = counts[counts >= 2].index if (counts >= 2).any() else counts.index
    return sorted(int(n) for n in shared)


def cell_values(ok: pd.DataFrame, metric: MetricColumn) -> pd.DataFrame:
    """Per (solver label, NFE): the mean over seeds (``value``) and its 95% interval (``low``, ``high``).

    The interval is what ``aggregate`` gives for the mean where it gives one; else, for a
    cell of a single seed, that row's own interval; else NaN (no bar is drawn).
    """
    low, high = ci_columns(metric.name)
    means = (ok.groupby(["solver_label", "nfe"], dropna=False, sort=False)[metric.name].mean()
             .rename("value").reset_index())
    means["nfe_block"] = means["nfe"].map(nfe_block)
    intervals = _aggregated_intervals(ok, metric)
    if intervals is None and low in ok and high in ok:
        single = ok.groupby(["solver_label", "nfe"], dropna=False, sort=False).filter(lambda g: len(g) == 1)
        intervals = pd.DataFrame({"solver_label": single["solver_label"], "nfe_block": single["nfe"].map(nfe_block),
                                  "low": single[low], "high": single[high]})
    if intervals is None:
        return means.assign(low=np.nan, high=np.nan)
    return means.merge(intervals, on=["solver_label", "nfe_block"], how="left")


def _aggregated_intervals(ok: pd.DataFrame, metric: MetricColumn) -> Optional[pd.DataFrame]:
    """(solver label, NFE block, low, high) from the seed-averaged table; None where it has no intervals."""
    low, high = ci_columns(metric.name)
    table = aggregate(ok, [metric])
    if table.empty or low not in table or high not in table:
        return None
    return table[["solver_label", "nfe_block", low, high]].rename(columns={low: "low", high: "high"})


def _reference_lines(ok: pd.DataFrame, values: pd.DataFrame, top_nfe: int) -> list[dict]:
    """High-NFE and adaptive runs as {label, value, low, high, adaptive}, the high-NFE ones first."""
    adaptive_nfe = ok[ok["nfe"].isna()].groupby("solver_label")["nfe_measured"].mean()
    lines = []
    for _, ref in values[values["nfe"].isna() | (values["nfe"] > top_nfe)].iterrows():
        adaptive = pd.isna(ref["nfe"])
        nfe = adaptive_nfe[ref["solver_label"]] if adaptive else ref["nfe"]
        lines.append({"label": f"{ref['solver_label']} at {nfe:.0f} NFE" + (" (adaptive)" if adaptive else ""),
                      "value": ref["value"], "low": ref["low"], "high": ref["high"], "adaptive": adaptive})
    return sorted(lines, key=lambda line: line["adaptive"])


def _error_bars(ax, line: pd.DataFrame, color) -> bool:
    """Bars from ``low`` to ``high`` at each point that has an interval; whether any was drawn."""
    has = line[line["low"].notna() & line["high"].notna()]
    if has.empty:
        return False
    # drawn down from the top end, so that a low end of exactly 0 stays 0 (a log axis leaves it out of
    # its range; a centre minus half the width would leave a rounding residue of 1e-17 in it)
    style = dict(fmt="none", ecolor=color, elinewidth=1.1, capsize=3, capthick=1.1, alpha=0.85, label="_nolegend_")
    bounded = has[np.isfinite(has["low"]) & np.isfinite(has["high"])]
    ax.errorbar(bounded["nfe"], bounded["high"], yerr=[bounded["high"] - bounded["low"], 0 * bounded["high"]], **style)
    # too few samples to bound the top end (a 99% quantile of 64): an arrow up from the low end
    open_above = has[np.isfinite(has["low"]) & np.isinf(has["high"])]
    if not open_above.empty:
        ax.errorbar(open_above["nfe"], open_above["low"], yerr=[0 * open_above["low"], open_above["low"].abs()],
                    lolims=True, **style)
    return True


def _log_range_above_zero(ax, numbers: np.ndarray) -> None:
    """Where an interval reaches down to 0 (a distance's, cut there), the log y-axis spans the positive
    ``numbers`` drawn (with matplotlib's 5% margins) and its bars and bands run off the bottom: else a
    band from 0 would stretch the axis down to about 1e-17 (a rounding residue of 0)."""
    numbers = numbers[np.isfinite(numbers)]  # an unbounded end (inf) sets no limit
    positive = np.log10(numbers[numbers > 0])
    if (numbers > 0).all() or not len(positive):
        return
    margin = 0.05 * max(positive.max() - positive.min(), 0.1)
    ax.set_ylim(10 ** (positive.min() - margin), 10 ** (positive.max() + margin))


def _dodge(n: int) -> np.ndarray:
    """Factors that move n lines apart along the log NFE axis, by at most ``DODGE_SPAN`` in all."""
    step = min(DODGE_STEP, DODGE_SPAN / max(n - 1, 1))
    return np.exp(step * (np.arange(n) - (n - 1) / 2))


def line_labels(ok: pd.DataFrame) -> list[str]:
    """The solver labels drawn as lines (a budget within the shared NFE range), in the grid's order."""
    fixed = ok[ok["nfe"].notna() & (ok["nfe"] <= max(shared_nfe_range(ok)))]
    return list(dict.fromkeys(fixed["solver_label"]))


def draw_convergence(ax, rows: pd.DataFrame, metric: MetricColumn, styles: SolverStyles,
                     only: Optional[Collection[str]] = None) -> bool:
    """Every solver's line, bars and reference line on ``ax``, with log NFE ticks at the budgets run;
    with ``only``, the lines of those solver labels alone (the reference lines all the same).

    False (nothing drawn) when no finished run with an NFE budget has the metric.
    """
    ok = rows[(rows["status"] == "ok") & rows[metric.name].notna()]
    nfe_range = shared_nfe_range(ok)
    if not nfe_range:
        return False
    values = cell_values(ok, metric)
    analysis = set(ok.loc[ok["analysis_only"].fillna(False).astype(bool), "solver_label"])
    log_y = metric.lower_is_better is True and (values["value"] > 0).all()
    lines = values[values["nfe"].notna() & (values["nfe"] <= max(nfe_range))]
    references = _reference_lines(ok, values, max(nfe_range))
    lowest = min([lines["value"].min()] + [r["value"] for r in references if not r["adaptive"]])
    if only is not None:
        lines = lines[lines["solver_label"].isin(only)]
    missing = rows[(rows["status"] != "ok") & rows["nfe"].notna()].groupby("solver_label")["nfe"].unique()
    uniform = uniform_budgets(ok)
    bars = False
    groups = list(lines.groupby("solver_label", sort=False))
    dodge = _dodge(len(groups)) if (lines["low"].notna() & lines["high"].notna()).any() else np.ones(len(groups))
    for (label, line), shift in zip(groups, dodge):
        line = line.assign(nfe=line["nfe"] * shift)  # apart, so that their bars do not hide each other
        color = styles.color(label)
        dashed = label in analysis
        note = " (analysis only)" if dashed else ""
        if label in missing:
            note += f" ({', '.join(f'{n:.0f}' for n in sorted(missing[label]))} NFE: did not finish)"
        if label in uniform:
            note += f" (learned grid = uniform at NFE {', '.join(map(str, uniform[label]))})"
        ax.plot(line["nfe"], line["value"], marker=styles.marker(label), color=color,
                linestyle=ANALYSIS_LINE_STYLE if dashed else styles.linestyle(label),
                markerfacecolor="none" if dashed else color, label=label + note, gid=SOLVER_LINE)
        bars = _error_bars(ax, line, color) or bars
    drawn = [lines[["value", "low", "high"]]]  # the numbers on the y-axis
    for i, ref in enumerate(references):
        text = f"{ref['label']}: {format_number(ref['value'], 3)}"
        if ref["adaptive"] and log_y and np.log10(lowest / ref["value"]) > OFF_AXIS_DECADES:
            ax.plot([], [], linestyle="none", label=text + " (off the axis, below)")
            continue
        drawn.append(pd.DataFrame([{k: ref[k] for k in ("value", "low", "high")}]))
        shade = str(0.3 + 0.4 * i / max(1, len(references) - 1))
        ax.axhline(ref["value"], color=shade, linewidth=1.3, label=text,
                   dashes=(1, 2) if ref["adaptive"] else REFERENCE_DASHES[i % len(REFERENCE_DASHES)])
        if pd.notna(ref["low"]) and pd.notna(ref["high"]):
            ax.axhspan(ref["low"], ref["high"], color=shade, alpha=BAND_ALPHA, linewidth=0)
            bars = True
    floor = noise_floor(ok, metric)
    value, low, high = floor[f"{metric.name}_floor"], *(floor[c] for c in ci_columns(f"{metric.name}_floor"))
    if pd.notna(value):
        drawn.append(pd.DataFrame([{"value": value, "low": low, "high": high}]))
        ax.axhline(value, color="black", linestyle=":", linewidth=1.4,
                   label=f"data vs. data (noise floor): {format_with_interval(value, low, high)}")
        if pd.notna(low) and pd.notna(high):
            ax.axhspan(low, high, facecolor="none", edgecolor="0.5", hatch="///", linewidth=0, alpha=0.35)
    if bars:
        ax.plot([], [], linestyle="none", marker="|", markersize=12, markeredgewidth=1.2, color="0.3",
                label="bars (and grey bands): 95% confidence intervals")
    if log_y:
        ax.set_yscale("log")
        _log_range_above_zero(ax, pd.concat(drawn).to_numpy(float).ravel())
        plain_log_ticks(ax.yaxis)
    ax.set_xscale("log")
    value_ticks(ax.xaxis, lines["nfe"].unique())
    ax.set_xlabel("NFE (network evaluations per sample, log scale)")
    ax.set_ylabel(metric.axis_label + ("" if log_y else ", linear scale"))
    return True


def plot_convergence(rows: pd.DataFrame, metric: MetricColumn, title: str, path: Path,
                     styles: SolverStyles) -> Optional[Path]:
    """The plot (one panel per solver family where more than ``MAX_LINES`` solvers have lines), or None when no
    finished run with an NFE budget has the metric."""
    ok = rows[(rows["status"] == "ok") & rows[metric.name].notna()]
    if not shared_nfe_range(ok):
        return None
    labels = line_labels(ok)
    panels = family_panels(ok, labels) if len(labels) > MAX_LINES else []
    if len(panels) > 1:
        return _plot_panels(rows, metric, title, path, styles, panels)
    with report_figure(path, size=(9.0, AXES_HEIGHT), constrained=True) as (fig, ax):
        draw_convergence(ax, rows, metric, styles)
        ax.set_title(f"{metric.label} vs NFE\n{title}")
        handles, labels = ax.get_legend_handles_labels()
        rows_used = legend_below(fig, handles, labels)
        fig.set_figheight(AXES_HEIGHT + LEGEND_ROW * rows_used)
    return path


def _plot_panels(rows: pd.DataFrame, metric: MetricColumn, title: str, path: Path, styles: SolverStyles,
                 panels: list[Panel]) -> Path:
    """One panel per family, two to a row, on one value axis; each panel's solvers in a legend below it, the
    reference lines, noise floor and interval key once below all."""
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    width, height = PANEL_SIZE
    legend_rows = [max(_legend_lines(panel) for panel in panels[r * ncols:(r + 1) * ncols])
                   for r in range(nrows)]
    with report_figure(path, size=(ncols * width, nrows * height), nrows=nrows, ncols=ncols, constrained=True,
                       grid=True) as (fig, axes):
        shared: dict[str, object] = {}
        for i, (ax, panel) in enumerate(zip(axes.flat, panels)):
            draw_convergence(ax, rows, metric, styles, only=panel.labels)
            ax.set_title(panel.title, fontsize=10.5)
            ax.set_ylabel(textwrap.fill(ax.get_ylabel(), 40) if i % ncols == 0 else "")  # one value axis, named once
            handles, labels = ax.get_legend_handles_labels()
            own = [(h, textwrap.fill(label, PANEL_LEGEND_WRAP, break_long_words=False, subsequent_indent="  "))
                   for h, label in zip(handles, labels) if h.get_gid() == SOLVER_LINE]
            shared.update((label, h) for h, label in zip(handles, labels) if h.get_gid() != SOLVER_LINE)
            ax.legend(*zip(*own), loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, fontsize=8.5,
                      handlelength=2.6)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        lows, highs = zip(*(ax.get_ylim() for ax in axes.flat[:len(panels)]))
        for ax in axes.flat[:len(panels)]:  # one value axis: panels compare by eye
            ax.set_ylim(min(lows), max(highs))
        fig.suptitle(f"{metric.label} vs NFE, one panel per solver family\n{title}")
        shared_rows = legend_below(fig, list(shared.values()), list(shared.keys()), wrap=60)
        fig.set_figheight(nrows * height + LEGEND_ROW * (sum(legend_rows) + shared_rows) + 0.5 * nrows)
    return path


def _legend_lines(panel: Panel) -> int:
    """About how many text lines a panel's legend takes (its labels wrapped)."""
    return sum(len(textwrap.wrap(label, PANEL_LEGEND_WRAP, break_long_words=False)) for label in panel.labels)
