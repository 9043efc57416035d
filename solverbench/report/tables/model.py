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
