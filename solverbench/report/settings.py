"""What a report setting is, and the text that names it.

Every table and figure of the report shows one setting (``split.split_settings``), so numbers
from different backbones, schedules or guidance scales never share a ranking.  A grid whose
cells sample on learned time grids (LD3, GITS: each row records its ``schedule_times``)
compares its schedules instead: its settings do not split by schedule, and every solver on a
schedule other than the uniform grid is labelled with it (``flow-unipc(...) @ ld3``), so
learned and closed-form grids share one ranking.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

GUIDANCE_KEYS = ("cfg_scale", "cfg_lo", "cfg_hi")
# what splits every kind's rows into settings, besides the grid (the columns every row has: engine.rows)
COMMON_KEYS = ("backbone", "backbone_params") + GUIDANCE_KEYS + ("cfg_convention",)
DEFAULT_KIND = "sweep"  # the kind of rows written before rows recorded theirs


@dataclass
class Setting:
    grid: str
    kind: str  # the study kind of its rows (the report section that shows them)
    title: str
    directory: Path  # relative to the report's folder
    rows: pd.DataFrame


def row_kinds(frame: pd.DataFrame) -> pd.Series:
    """The study kind of each row (``sweep`` for rows that record none)."""
    if "kind" not in frame:
        return pd.Series(DEFAULT_KIND, index=frame.index)
    return frame["kind"].fillna(DEFAULT_KIND)


def params_text(params_json: str) -> str:
    """``{"order": 2}`` -> ``order=2``."""
    params = json.loads(params_json) if params_json else {}
    return ", ".join(f"{k}={v}" for k, v in params.items())


def schedule_text(schedule_json: str) -> str:
    spec = json.loads(schedule_json)
    if isinstance(spec, str):
        return spec
    spec = dict(spec)
    name = spec.pop("name")
    return f"{name}({params_text(json.dumps(spec))})" if spec else name


def guidance_text(scale: float, lo: float, hi: float, convention: Optional[str] = None) -> str:
    """``CFG 2 on t in (0, 1]``; a convention other than the default is named (REPA's closed interval, ...)."""
    if pd.isna(convention):
        convention = None
    if scale == 1.0:
        return "no guidance"
    closed = convention is not None and "rule=repa" in convention
    text = f"CFG {scale:g} on t in {'[' if closed else '('}{lo:g}, {hi:g}]"
    return text + (f" ({convention})" if convention else "")


def setting_title(values: dict) -> str:
    """``grid: backbone(params), schedule time grid, guidance`` from a setting's key values (those it has),
    then any other key of the setting as ``key=value``."""
    parts = []
    if "backbone" in values:
        params = params_text(values.get("backbone_params") or "")
        parts.append(f"{values['backbone']}({params})" if params else values["backbone"])
    if "schedule" in values:
        parts.append(f"{schedule_text(values['schedule'])} time grid")
    if all(key in values for key in GUIDANCE_KEYS):
        parts.append(guidance_text(*(values[key] for key in GUIDANCE_KEYS), values.get("cfg_convention")))
    shown = {"grid", "backbone", "backbone_params", "schedule", "cfg_convention", *GUIDANCE_KEYS}
    parts += [f"{key}={value}" for key, value in values.items() if key not in shown]
    return f"{values['grid']}: " + (", ".join(parts) or "all rows")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text).strip("-")[:60]


UNIFORM = json.dumps("uniform")


def compares_schedules(rows: pd.DataFrame) -> bool:
    """Whether a grid's sweep rows include cells on learned time grids."""
    return "schedule_times" in rows and rows["schedule_times"].notna().any()


def labelled_with_schedules(frame: pd.DataFrame) -> pd.Series:
    """The solver labels, ``label @ schedule`` for every sweep row not on the uniform grid of a grid that
    compares schedules (``compares_schedules``); the others as they are."""
    labels = frame["solver_label"].copy()
    for _, rows in frame.groupby(["grid", row_kinds(frame)], sort=False):
        if compares_schedules(rows):
            moved = rows["schedule"] != UNIFORM
            labels.loc[rows.index[moved]] += rows.loc[moved, "schedule"].map(lambda s: f" @ {schedule_text(s)}")
    return labels
