"""Order curves: error against step size (or NFE) on log-log axes, with fitted and theoretical slopes.

Filled markers are the points inside the fit window, hollow ones lie outside it; the
dashed line of a solver's color has the theoretical slope (none where the solver
declares no order), drawn parallel to its fit, a factor ``GUIDE_OFFSET`` below it so the
two stay apart where they agree.  Solvers without points are named in the legend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from solverbench.report.figures.style import REFERENCE_GREY, SolverStyles, legend_outside, report_figure
from solverbench.report.order_fit import FIT_CEILING, OrderCurve

GUIDE_OFFSET = 3.0


def _legend_text(curve: OrderCurve) -> str:
    slope = curve.slope
    fitted = "too few points to fit" if slope is None else f"slope {slope:.2f}"
    theory = "no declared order" if curve.theory is None else f"theory {curve.theory:g}"
    return f"{curve.label}{' (analysis only)' if curve.analysis_only else ''}: {fitted} ({theory})"


def _theory_line(ax, curve: OrderCurve, color) -> None:
    fit = curve.fitted_line()
    if curve.theory is None or fit is None:
        return
    x, y = fit  # the fitted line passes through the centroid (in log-log) of its points
    x_mid, y_mid = np.exp(np.log(x).mean()), np.exp(np.log(y).mean())
    ax.plot(x, y_mid / GUIDE_OFFSET * (x / x_mid) ** curve.theory, color=color, linestyle="--", linewidth=0.9,
            alpha=0.7)


def plot_order_curves(curves: list[OrderCurve], path: Path, *, title: str, x_label: str, y_label: str,
                      styles: SolverStyles) -> Optional[Path]:
    """The figure, or None when no curve has a point to draw."""
    if not any(len(c.x) for c in curves):
        return None
    with report_figure(path, size=(9.0, 5.6 if len(curves) <= 6 else 6.6)) as (fig, ax):
        draw_order_curves(ax, curves, styles)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title)
        legend_outside(ax)
    return path


def draw_order_curves(ax, curves: list[OrderCurve], styles: SolverStyles) -> None:
    """Every curve on log-log ``ax``: points, theory guide, fit-window edges, legend labels."""
    drawn = [c for c in curves if len(c.x)]
    for curve in drawn:
        color, marker = styles.color(curve.label), styles.marker(curve.label)
        inside = curve.in_window
        ax.plot(curve.x, curve.error, color=color, linewidth=1.4, label=_legend_text(curve))
        ax.plot(curve.x[inside], curve.error[inside], linestyle="none", marker=marker, color=color)
        ax.plot(curve.x[~inside], curve.error[~inside], linestyle="none", marker=marker, color=color,
                markerfacecolor="none")
        _theory_line(ax, curve, color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    for bound in sorted({c.floor for c in drawn} | {FIT_CEILING}):
        if low < bound < high:  # the fit window's edges, where they fall among the points
            ax.axhline(bound, color=REFERENCE_GREY, linestyle=":", linewidth=1.0)
    ax.set_ylim(low, high)
    for curve in curves:
        if not len(curve.x):
            ax.plot([], [], linestyle="none", label=f"{curve.label}: not drawn ({curve.short_problem})")
    ax.plot([], [], color="0.3", linestyle="--", linewidth=1.0,
            label=f"dashed: theoretical slope (drawn {GUIDE_OFFSET:g}x below the fit)")
    ax.plot([], [], color=REFERENCE_GREY, linestyle=":", label="dotted: fit window (hollow points: outside)")
