"""A table as the report builds it, before any format: cells with emphasis, block rules, notes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Row:
    cells: list[Cell]
    record: dict[str, Any]  # the row's machine-readable values (the CSV row)
    rule_above: bool = False  # starts a new block (e.g. the next NFE)


@dataclass
class Table:
    caption: str
    columns: list[str]
    text_columns: tuple[int, ...]  # the columns that hold text (left-aligned); the others hold numbers
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def format_number(value: Optional[float], digits: int = 4) -> str:
    """``digits`` significant digits; scientific notation outside [1e-3, 1e5); '–' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits - 1}e}"
    return f"{value:#.{digits}g}".rstrip(".")


def format_with_interval(value: Optional[float], low: Optional[float], high: Optional[float]) -> str:
    """``value ± h``, h half the 95% interval's width with two significant digits and the value to the
    same decimal place (``0.0532 ± 0.0143``; scientific as ``4.70e-03 ± 3.3e-03``); the value alone
    where there is no interval.  An interval cut at 0 (a distance's), whose ``± h`` would reach below
    0, is printed as its two ends instead: ``0.045 [0, 0.122]``."""
    if value is None or math.isnan(float(value)):
        return "–"
    if low is None or high is None or math.isnan(float(low)) or math.isnan(float(high)):
        return format_number(value)
    value, low, high = float(value), float(low), float(high)
    half = (high - low) / 2
    if half <= 0:
        return f"{format_number(value)} ± 0"
    if value != 0 and not 1e-3 <= abs(value) < 1e5 or not 1e-4 <= half < 1e5:
        text, end = format_number(value, 3), (lambda v: f"{v:.1e}")
    else:
        decimals = max(0, 1 - math.floor(math.log10(half)))
        text, end = f"{value:.{decimals}f}", (lambda v: f"{v:.{decimals}f}")
    if low >= 0 > value - half:  # the symmetric form would show negative values the interval excludes
        return f"{text} [{'0' if low == 0 else end(low)}, {end(high)}]"
    return f"{text} ± {end(half)}"
