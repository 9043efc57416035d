"""What the report is made of: sections of tables and figures, each with one line saying what it shows."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from solverbench.report.tables.model import Table
from solverbench.report.tables.render import to_csv, to_latex, to_markdown


@dataclass
class Item:
    description: str  # one line: what the table or figure shows
    figure: Optional[Path] = None  # relative to the report folder
    table: Optional[Table] = None  # shown in the index; an item of several tables only links them (files)
    files: list[Path] = field(default_factory=list)  # the tables' .md, .tex and .csv, relative


def figure_item(figure: Optional[Path], out_dir: Path, description: str, missing: str) -> Item:
    """The item of a figure written under ``out_dir``, or a line saying why there is none."""
    if figure is None:
        return Item(missing)
    return Item(description, figure=figure.relative_to(out_dir))


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)


def _write(table: Table, out_dir: Path, stem: Path) -> list[Path]:
    files = []
    for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
        path = out_dir / stem.with_suffix(suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(table))
        files.append(stem.with_suffix(suffix))
    return files


def write_table(table: Table, out_dir: Path, stem: Path, description: str) -> Item:
    """``stem``.md / .tex / .csv under ``out_dir``; the item the index shows."""
    return Item(description, table=table, files=_write(table, out_dir, stem))


def write_tables(tables: dict[Path, Table], out_dir: Path, description: str) -> Item:
    """Each table as ``stem``.md / .tex / .csv under ``out_dir``; one item that links them all (too many to show)."""
    return Item(description, files=[path for stem, table in tables.items() for path in _write(table, out_dir, stem)])
