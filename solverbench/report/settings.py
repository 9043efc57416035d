"""Split results into report settings: one per grid, backbone, schedule and guidance.

Every table and figure of the report shows one setting, so numbers from different
backbones, schedules or guidance scales never share a ranking.  A grid whose cells sample on
learned time grids (LD3, GITS: each row records its ``schedule_times``) compares its schedules
instead: its settings do not split by schedule, and every solver on a schedule other than the
uniform grid is labelled with it (``flow-unipc(...) @ ld3``), so learned and closed-form grids
share one ranking.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional
from pathlib import Path

import pandas as pd

GUIDANCE_KEYS = ("cfg_scale", "cfg_lo", "cfg_hi")
SWEEP_KEYS = ("grid", "backbone", "backbone_params", "schedule") + GUIDANCE_KEYS
LTE_KEYS = ("grid", "backbone", "backbone_params") + GUIDANCE_KEYS


@dataclass
class Setting:
    grid: str
    kind: str  # "sweep", "lte" or "inversion"
    title: str
    directory: Path  # relative to the report's folder
    rows: pd.DataFrame


def is_lte(frame: pd.DataFrame) -> pd.Series:
    return frame["kind"].eq("lte") if "kind" in frame else pd.Series(False, index=frame.index)


def report_kinds(frame: pd.DataFrame) -> pd.Series:
    """The report kind of each row: ``lte``, ``inversion`` or ``sweep`` (every other kind, and rows without one)."""
    if "kind" not in frame:
        return pd.Series("sweep", index=frame.index)
    return frame["kind"].where(frame["kind"].isin(["lte", "inversion"]), "sweep")


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


def _title(values: dict) -> str:
    params = params_text(values["backbone_params"])
    parts = [f"{values['backbone']}({params})" if params else values["backbone"]]
    if "schedule" in values:
        parts.append(f"{schedule_text(values['schedule'])} time grid")
    parts.append(guidance_text(values["cfg_scale"], values["cfg_lo"], values["cfg_hi"], values.get("cfg_convention")))
    return f"{values['grid']}: " + ", ".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text).strip("-")[:60]


UNIFORM = json.dumps("uniform")


def compares_schedules(rows: pd.DataFrame) -> bool:
    """Whether a grid's sweep rows include cells on learned time grids."""
    return "schedule_times" in rows and rows["schedule_times"].notna().any()


def labelled_with_schedules(frame: pd.DataFrame) -> pd.Series:
    """The solver labels, ``label @ schedule`` for every sweep row not on the uniform grid of a grid that
    compares schedules (``compares_schedules``); the others as they are."""
    labels = frame["solver_label"].copy()
    for _, rows in frame[~is_lte(frame)].groupby("grid", sort=False):
        if compares_schedules(rows):
            moved = rows["schedule"] != UNIFORM
            labels.loc[rows.index[moved]] += rows.loc[moved, "schedule"].map(lambda s: f" @ {schedule_text(s)}")
    return labels


def split_settings(frame: pd.DataFrame) -> list[Setting]:
    """The settings of every grid in ``frame``, in grid order (a grid's LTE rows apart from its sweep rows)."""
    settings = []
    kinds = report_kinds(frame)
    for (grid, kind), grid_rows in frame.groupby(["grid", kinds], sort=True):
        keys = list(LTE_KEYS if kind == "lte" else SWEEP_KEYS)
        if kind == "sweep" and compares_schedules(grid_rows):  # labelled_with_schedules names them
            keys.remove("schedule")
        if "cfg_convention" in grid_rows:  # guidance conventions never share a ranking (absent in older results)
            keys.append("cfg_convention")
        mixed = kinds[frame["grid"] == grid].nunique() > 1
        groups = list(grid_rows.groupby(keys, sort=True, dropna=False))
        for i, (key, rows) in enumerate(groups):
            values = dict(zip(keys, key))
            title = _title(values)
            sub = "" if len(groups) == 1 else f"{i + 1:02d}-" + _slug(title.split(": ", 1)[1])
            directory = Path(grid) / (kind if mixed else "") / sub
            settings.append(Setting(grid, kind, title, directory, rows.reset_index(drop=True)))
    return settings
