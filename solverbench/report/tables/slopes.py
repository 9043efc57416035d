"""The fitted-slope table beside an order-curve figure: fitted against theoretical slope per solver."""
from __future__ import annotations

from solverbench.report.order_fit import FIT_CEILING, OrderCurve
from solverbench.report.tables.model import Cell, Row, Table, format_number


def x_text(value: float) -> str:
    """An NFE budget as the integer it is (5), an interval size H in 3 significant digits (0.00156)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.3g}"


def slope_table(curves: list[OrderCurve], caption: str, x_name: str) -> Table:
    table = Table(caption, ["solver", "theory", "fitted slope", "fitted - theory", "points fitted",
                            f"{x_name} range fitted", "note"], text_columns=(0, 6))
    for curve in curves:
        slope = curve.slope
        used = curve.x[curve.in_window]
        gap = None if slope is None or curve.theory is None else slope - curve.theory
        note = curve.short_problem or ("" if slope is not None else "fewer than two points inside the fit window")
        if curve.problem:
            table.notes.append(f"{curve.label}: {curve.problem}")
        if curve.theory is None and not curve.problem:
            note = (note + "; " if note else "") + "no declared order"
        cells = [curve.label + (" (analysis only)" if curve.analysis_only else ""),
                 "–" if curve.theory is None else f"{curve.theory:g}",
                 "–" if slope is None else f"{slope:.2f}", "–" if gap is None else f"{gap:+.2f}",
                 f"{len(used)} of {len(curve.x)}",
                 f"{x_text(used.min())} – {x_text(used.max())}" if len(used) else "–", note]
        table.rows.append(Row([Cell(c) for c in cells], {
            "solver": curve.label, "analysis_only": curve.analysis_only, "theory": curve.theory,
            "fitted_slope": slope, "points_fitted": len(used), "points": len(curve.x),
            f"{x_name}_min_fitted": used.min() if len(used) else None,
            f"{x_name}_max_fitted": used.max() if len(used) else None, "note": note}))
    floors = sorted({c.floor for c in curves})
    table.notes.insert(0, f"Least-squares slope of log(error) against log({x_name}) over the points with error between "
                       f"{', '.join(format_number(f, 2) for f in floors)} (what the reference resolves, x1000) "
                       f"and {FIT_CEILING:g} (well below O(1)).")
    return table
