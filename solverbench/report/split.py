"""Results cut into report settings: per grid and study kind, then by the kind's section's setting keys."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from solverbench.report.plain_section import PlainSection
from solverbench.report.sections import REPORT_SECTIONS, ReportSection
from solverbench.report.settings import Setting, row_kinds, setting_title, slug


def section_for(kind: str) -> ReportSection:
    """The section registered for study kind ``kind``; where none is, the plain listing of its rows."""
    return REPORT_SECTIONS.get(kind)() if kind in REPORT_SECTIONS else PlainSection()


def split_settings(frame: pd.DataFrame) -> list[Setting]:
    """The settings of every grid in ``frame``, in grid order (a grid's rows of each kind apart).

    A grid whose rows are all of one kind writes its settings under ``<grid>/``, one of several
    kinds under ``<grid>/<kind>/``; a setting of several is in a numbered folder of its own."""
    settings = []
    kinds = row_kinds(frame)
    for (grid, kind), grid_rows in frame.groupby(["grid", kinds], sort=True):
        keys = section_for(kind).setting_keys(grid_rows)
        mixed = kinds[frame["grid"] == grid].nunique() > 1
        groups = list(grid_rows.groupby(keys, sort=True, dropna=False)) if keys else [((), grid_rows)]
        for i, (key, rows) in enumerate(groups):
            values = {"grid": grid, **dict(zip(keys, key if isinstance(key, tuple) else (key,)))}
            title = setting_title(values)
            sub = "" if len(groups) == 1 else f"{i + 1:02d}-" + slug(title.split(": ", 1)[1])
            directory = Path(grid) / (kind if mixed else "") / sub
            settings.append(Setting(grid, kind, title, directory, rows.reset_index(drop=True)))
    return settings
