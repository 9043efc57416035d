"""Order curves: error against step size (or NFE) on log-log axes, with fitted and theoretical slopes.

Filled markers are the points inside the fit window, hollow ones lie outside it.  The
theoretical slopes are grey dashed guides, one per distinct declared slope (not one per
solver), all from one point placed where they cross the fewest curves, each labelled
``slope <s>``; each solver's fitted and theoretical slopes are in the legend.  Where x is
an NFE budget (whole numbers), the x ticks are the budgets run.  Solvers without points
are named in the legend, which sits below the axes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from solverbench.report.figures.style import REFERENCE_GREY, SolverStyles, legend_below, report_figure, value_ticks
from solverbench.report.order_fit import FIT_CEILING, OrderCurve

GUIDE_COLOR = "0.3"
GUIDE_STYLE = "--"
FAN_WIDTH = 0.14  # the guides' width, a fraction of the (log) x-axis; up to twice that where labels need room
LABEL_WIDTH = 0.09  # room for a "slope -4" label right of the guides, a fraction of the x-axis
LABEL_GAP = 0.045  # the least distance between two guide labels, a fraction of the (log) y-axis
MARGIN = 0.03  # the room kept between the guides and any curve, a fraction of each axis
AXES_HEIGHT = 5.0  # inches of figure above the legend
LEGEND_ROW = 0.2  # inches per legend row


@dataclass
class SlopeFan:
    """Guides of the theoretical slopes, all from one point: ``x`` (the two ends) and, per
    slope, ``y`` (the two ends) and ``label_y`` (its label, at the right end, nudged apart)."""
    x: np.ndarray
    y: dict[float, np.ndarray]
    label_y: dict[float, float]


def _legend_text(curve: OrderCurve) -> str:
    slope = curve.slope
    fitted = "too few points to fit" if slope is None else f"slope {slope:.2f}"
    theory = "no declared order" if curve.theory is None else f"theory {curve.theory:g}"
    return f"{curve.label}{' (analysis only)' if curve.analysis_only else ''}: {fitted} ({theory})"


def theory_slopes(curves: list[OrderCurve]) -> list[float]:
    """The distinct theoretical slopes of the curves that have points."""
    return sorted({c.theory for c in curves if c.theory is not None and len(c.x)})


def x_is_nfe(curves: list[OrderCurve]) -> bool:
    """Whether every x is a whole number (an NFE budget), not an interval size."""
    x = np.concatenate([c.x for c in curves]) if curves else np.array([])
    return bool(len(x)) and bool(np.all(x >= 1) and np.all(x == np.round(x)))


def _crowding_points(curves: list[OrderCurve], lines: list[float], x_limits, y_limits) -> np.ndarray:
    """(log10 x, log10 y) of points along every curve (straight in log-log) and along every
    horizontal line at ``lines``."""
    (x_lo, x_hi) = np.log10(x_limits)
    t = np.linspace(0, 1, 40)
    pieces = [np.column_stack([x_lo + t * (x_hi - x_lo), np.full_like(t, np.log10(y))]) for y in lines]
    for curve in curves:
        log_x, log_y = np.log10(curve.x), np.log10(curve.error)
        pieces.append(np.column_stack([log_x, log_y]))
        for i in range(len(log_x) - 1):
            pieces.append(np.column_stack([log_x[i] + t * (log_x[i + 1] - log_x[i]),
                                           log_y[i] + t * (log_y[i + 1] - log_y[i])]))
    return np.concatenate(pieces)


def _fan(slopes: list[float], width: float, x0: float, y0: float, gap: float) -> tuple[dict, dict]:
    """Per slope, the log10 y of its guide's right end (from (x0, y0), ``width`` decades wide)
    and of its label, at least ``gap`` above the label below it."""
    ends = {s: y0 + s * width for s in slopes}
    labels, last = {}, None
    for s in sorted(slopes, key=ends.get):
        labels[s] = ends[s] if last is None else max(ends[s], last + gap)
        last = labels[s]
    return ends, labels


def slope_fan(slopes: list[float], curves: list[OrderCurve], lines: list[float], x_limits, y_limits
              ) -> Optional[SlopeFan]:
    """The guides of ``slopes`` from one point inside the limits, placed where they and their
    labels cover the fewest points of the curves and of horizontal ``lines`` (the widest
    guides that cover none; on a tie, nearest the middle of the curves); None without slopes."""
    if not slopes:
        return None
    (x_lo, x_hi), (y_lo, y_hi) = np.log10(x_limits), np.log10(y_limits)
    x_span, y_span = x_hi - x_lo, y_hi - y_lo
    gap = LABEL_GAP * y_span  # in decades of y
    steps = np.diff(slopes)
    width = FAN_WIDTH * x_span  # in decades of x; wider where neighbouring labels need room
    if len(steps):
        width = min(max(width, gap / steps.min()), 2 * FAN_WIDTH * x_span)
    width = min(width, 0.7 * y_span / ((max(max(slopes), 0) + max(-min(slopes), 0)) or 1.0))
    points = _crowding_points(curves, lines, x_limits, y_limits)
    centre = points.mean(axis=0)
    best = None
    for scale in (1.0, 0.75, 0.5):
        w = scale * width
        for x0 in np.linspace(x_lo + MARGIN * x_span, x_hi - (MARGIN + LABEL_WIDTH) * x_span - w, 16):
            for y0 in np.linspace(y_lo, y_hi, 25):
                ends, labels = _fan(slopes, w, x0, y0, gap)
                low, high = min(y0, *ends.values()), max(y0, *ends.values(), *labels.values()) + gap / 2
                if low < y_lo + MARGIN * y_span or high > y_hi - MARGIN * y_span:
                    continue
                inside = ((points[:, 0] > x0 - MARGIN * x_span) & (points[:, 0] < x0 + w + LABEL_WIDTH * x_span)
                          & (points[:, 1] > low - MARGIN * y_span) & (points[:, 1] < high + MARGIN * y_span)).sum()
                score = (int(inside), np.hypot((x0 + w / 2 - centre[0]) / x_span, (y0 - centre[1]) / y_span))
                if best is None or score < best[0]:
                    best = (score, w, x0, y0)
        if best is not None and best[0][0] == 0:
            break
    if best is None:  # no room anywhere: short guides from the middle of the axes
        best = (None, width / 2, x_lo + x_span / 3, y_lo + y_span / 2)
    _, w, x0, y0 = best
    ends, labels = _fan(slopes, w, x0, y0, gap)
    return SlopeFan(10 ** np.array([x0, x0 + w]), {s: 10 ** np.array([y0, e]) for s, e in ends.items()},
                    {s: 10 ** v for s, v in labels.items()})


def plot_order_curves(curves: list[OrderCurve], path: Path, *, title: str, x_label: str, y_label: str,
                      styles: SolverStyles) -> Optional[Path]:
    """The figure, or None when no curve has a point to draw; the legend below the axes."""
    if not any(len(c.x) for c in curves):
        return None
    with report_figure(path, size=(9.0, AXES_HEIGHT), constrained=True) as (fig, ax):
        draw_order_curves(ax, curves, styles)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title)
        handles, labels = ax.get_legend_handles_labels()
        fig.set_figheight(AXES_HEIGHT + LEGEND_ROW * legend_below(fig, handles, labels))
    return path


def draw_order_curves(ax, curves: list[OrderCurve], styles: SolverStyles) -> Optional[SlopeFan]:
    """Every curve on log-log ``ax``: points, fit-window edges, the theoretical slopes' guides
    (returned), legend labels."""
    drawn = [c for c in curves if len(c.x)]
    for curve in drawn:
        color, marker = styles.color(curve.label), styles.marker(curve.label)
        inside = curve.in_window
        ax.plot(curve.x, curve.error, color=color, linewidth=1.4, linestyle=styles.linestyle(curve.label),
                label=_legend_text(curve))
        ax.plot(curve.x[inside], curve.error[inside], linestyle="none", marker=marker, color=color)
        ax.plot(curve.x[~inside], curve.error[~inside], linestyle="none", marker=marker, color=color,
                markerfacecolor="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if x_is_nfe(drawn):
        value_ticks(ax.xaxis, np.concatenate([c.x for c in drawn]))
    fan = None
    if drawn:
        x_limits, (low, high) = ax.get_xlim(), ax.get_ylim()
        bounds = [b for b in sorted({c.floor for c in drawn} | {FIT_CEILING}) if low < b < high]
        for bound in bounds:  # the fit window's edges, where they fall among the points
            ax.axhline(bound, color=REFERENCE_GREY, linestyle=":", linewidth=1.0)
        fan = slope_fan(theory_slopes(drawn), drawn, bounds, x_limits, (low, high))
        for slope, y in (fan.y.items() if fan else ()):
            ax.plot(fan.x, y, color=GUIDE_COLOR, linestyle=GUIDE_STYLE, linewidth=1.2)
            ax.annotate(f"slope {slope:g}", (fan.x[-1], fan.label_y[slope]), xytext=(4, 0),
                        textcoords="offset points", color=GUIDE_COLOR, fontsize=8.5, va="center", ha="left")
        ax.set_xlim(*x_limits)
        ax.set_ylim(low, high)
    for curve in curves:
        if not len(curve.x):
            ax.plot([], [], linestyle="none", label=f"{curve.label}: not drawn ({curve.short_problem})")
    if fan is not None:
        ax.plot([], [], color=GUIDE_COLOR, linestyle=GUIDE_STYLE, linewidth=1.2,
                label="grey dashed, from one point: the theoretical slopes (each solver's is in brackets)")
    ax.plot([], [], color=REFERENCE_GREY, linestyle=":", label="dotted: fit window (hollow points: outside)")
    return fan
