"""What an edit keeps against what it changes, over the time t0 it inverts to: one column per NFE, one line per
solver through its t0 values.

Top row: the classifier's accuracy on the target class (what changed) against t0.  Middle row: the RMS
distance of the edit to its source (what was kept: lower keeps more) against t0.  Bottom row: the two
against each other, t0 written beside the first solver's points, so a line further up and to the left
changes the class while keeping more of the source.  Every point is the mean over seeds with its 95%
interval as bars (the lines moved a little apart along t0 so bars at one time stay visible).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from solverbench.metric_columns import KNOWN_BY_NAME
from solverbench.report.figures.convergence import cell_values
from solverbench.report.figures.style import SolverStyles, legend_below, report_figure, value_ticks

CHANGED, KEPT = "edit_accuracy", "edit_distance"
COLUMN_WIDTH, ROW_HEIGHT = 4.4, 3.3  # inches per panel
LEGEND_ROW = 0.2  # inches per legend row
DODGE = 0.006  # of the t0 range between neighbouring solvers' points
NAME_GAP = 0.1  # of the axes' spans: a t0 point nearer than this to the last one named is not named


def edit_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (solver label, NFE, t0): both measures (means over seeds) and their intervals, from the finished cells
    with an NFE budget that edited (``t0`` filled in: 1 where a row records none)."""
    ok = rows[(rows["status"] == "ok") & rows["nfe"].notna() & rows[CHANGED].notna() & rows[KEPT].notna()]
    frames = []
    for t0, at in ok.groupby("t0", sort=True):
        changed = cell_values(at, KNOWN_BY_NAME[CHANGED]).rename(
            columns={"value": CHANGED, "low": f"{CHANGED}_low", "high": f"{CHANGED}_high"})
        kept = cell_values(at, KNOWN_BY_NAME[KEPT]).rename(
            columns={"value": KEPT, "low": f"{KEPT}_low", "high": f"{KEPT}_high"})
        frames.append(changed.merge(kept[["solver_label", "nfe", KEPT, f"{KEPT}_low", f"{KEPT}_high"]],
                                    on=["solver_label", "nfe"]).assign(t0=t0))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_edit_tradeoff(rows: pd.DataFrame, title: str, path: Path, styles: SolverStyles) -> Optional[Path]:
    """The figure, or None where fewer than two t0 values hold finished edits."""
    points = edit_points(rows)
    if points.empty or points["t0"].nunique() < 2:
        return None
    budgets = sorted(int(n) for n in points["nfe"].unique())
    times = sorted(points["t0"].unique())
    labels = list(dict.fromkeys(rows.loc[rows["solver_label"].isin(points["solver_label"]), "solver_label"]))
    span = (times[-1] - times[0]) or 1.0
    shifts = {label: DODGE * span * (i - (len(labels) - 1) / 2) for i, label in enumerate(labels)}
    with report_figure(path, size=(COLUMN_WIDTH * len(budgets), 3 * ROW_HEIGHT), nrows=3, ncols=len(budgets),
                       constrained=True, grid=True) as (fig, axes):
        for c, nfe in enumerate(budgets):
            at = points[points["nfe"] == nfe]
            for label in labels:
                line = at[at["solver_label"] == label].sort_values("t0")
                if line.empty:
                    continue
                look = dict(color=styles.color(label), marker=styles.marker(label), linestyle=styles.linestyle(label))
                for r, measure in enumerate((CHANGED, KEPT)):
                    x = line["t0"] + shifts[label]
                    axes[r, c].plot(x, line[measure], label=label, **look)
                    _bars(axes[r, c], x, line[measure], line[f"{measure}_low"], line[f"{measure}_high"],
                          look["color"], vertical=True)
                axes[2, c].plot(line[KEPT], line[CHANGED], label=label, **look)
                _bars(axes[2, c], line[KEPT], line[CHANGED], line[f"{CHANGED}_low"], line[f"{CHANGED}_high"],
                      look["color"], vertical=True)
                _bars(axes[2, c], line[CHANGED], line[KEPT], line[f"{KEPT}_low"], line[f"{KEPT}_high"],
                      look["color"], vertical=False)
            first = next(label for label in labels if label in set(at["solver_label"]))
            _name_times(axes[2, c], at[at["solver_label"] == first], points[KEPT].max() - points[KEPT].min())
            axes[0, c].set_title(f"NFE {nfe}", fontsize=11)
            for r in (0, 1):
                value_ticks(axes[r, c].xaxis, times)
                axes[r, c].set_xlabel("t0 (inverted to, regenerated from)")
            axes[0, c].set_ylabel("edit accuracy (target class)")
            axes[1, c].set_ylabel("edit distance to the source (RMS)")
            axes[2, c].set_xlabel("edit distance to the source (RMS; lower keeps more)")
            axes[2, c].set_ylabel("edit accuracy (target class)")
            for r in (0, 2):
                axes[r, c].set_ylim(-0.03, 1.03)
        handles, names = axes[0, 0].get_legend_handles_labels()
        for ax in axes.flat[1:]:
            for handle, name in zip(*ax.get_legend_handles_labels()):
                if name not in names:
                    handles.append(handle)
                    names.append(name)
        fig.suptitle(f"Edits that keep their source: invert to t0, regenerate under the target class (bars: 95% "
                     f"intervals)\n{title}")
        fig.set_figheight(3 * ROW_HEIGHT + LEGEND_ROW * legend_below(fig, handles, names, wrap=70))
    return path


def _name_times(ax, line: pd.DataFrame, width: float) -> None:
    """``t0=...`` beside the points of ``line`` on the trade-off panel, leaving out a point too near the last one
    named (where the edits saturate, several times land on one spot)."""
    last = None
    for _, point in line.sort_values("t0").iterrows():
        here = np.array([point[KEPT] / (width or 1.0), point[CHANGED]])
        if last is not None and np.abs(here - last).max() < NAME_GAP:
            continue
        low = point[CHANGED] < 0.5  # named above the point low on the axis, below it high up: inside the axes
        ax.annotate(f"t0={point['t0']:g}", (point[KEPT], point[CHANGED]), textcoords="offset points",
                    xytext=(5, 7) if low else (5, -7), va="bottom" if low else "top", fontsize=8, color="0.25")
        last = here


def _bars(ax, at: pd.Series, value: pd.Series, low: pd.Series, high: pd.Series, color, vertical: bool) -> None:
    """Interval bars from ``low`` to ``high`` at positions ``at`` (vertical: ``at`` on x), where both are known."""
    known = np.isfinite(low.to_numpy(dtype=float)) & np.isfinite(high.to_numpy(dtype=float))
    if not known.any():
        return
    at, value, low, high = at[known], value[known], low[known], high[known]
    spread = [(value - low).clip(lower=0), (high - value).clip(lower=0)]
    style = dict(fmt="none", ecolor=color, elinewidth=1.0, capsize=2.5, alpha=0.8, label="_nolegend_")
    if vertical:
        ax.errorbar(at, value, yerr=spread, **style)
    else:
        ax.errorbar(value, at, xerr=spread, **style)
