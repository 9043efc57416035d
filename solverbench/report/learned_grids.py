"""Learned time grids that came back uniform, marked so that they do not read as a method of their own.

A cell on a learned schedule (LD3, GITS) records the grid it sampled on (``schedule_times``, 1 -> 0).
Where that grid is the uniform one (LD3 keeps its starting grid when no epoch beats it on
held-out trajectories), the cell's numbers are the uniform grid's, bought at the learning's
cost: the report names it ``ba @ ld3 (= uniform)`` in its tables and legends.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

TOLERANCE = 1e-6  # the grid is stored to 8 decimals
MARK = " (= uniform)"
NOTE = ("(= uniform): the learned time grid came back the uniform grid (within 1e-6), so the row repeats the "
        "uniform grid's numbers at the learning's cost.")


def is_uniform(times_json: str) -> bool:
    """Whether a stored grid ``[1, ..., 0]`` is ``linspace(1, 0, N + 1)`` within ``TOLERANCE``."""
    times = np.asarray(json.loads(times_json), dtype=float)
    return len(times) >= 2 and np.allclose(times, np.linspace(1.0, 0.0, len(times)), rtol=0.0, atol=TOLERANCE)


def came_back_uniform(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` (the seeds of one solver at one budget) sampled on a learned grid, every one of them
    the uniform grid."""
    if "schedule_times" not in rows:
        return False
    times = rows["schedule_times"].dropna()
    return not times.empty and len(times) == len(rows) and all(is_uniform(t) for t in times)


def marked(label: str, uniform: bool) -> str:
    """``label (= uniform)`` where the learned grid came back uniform."""
    return label + MARK if uniform else label


def uniform_budgets(rows: pd.DataFrame) -> dict[str, list[int]]:
    """solver label -> the NFE budgets at which its learned grid came back uniform (labels with none left out)."""
    if "schedule_times" not in rows:
        return {}
    found: dict[str, list[int]] = {}
    fixed = rows[rows["nfe"].notna() & rows["schedule_times"].notna()]
    for (label, nfe), cell in fixed.groupby(["solver_label", "nfe"], sort=True):
        if came_back_uniform(cell):
            found.setdefault(label, []).append(int(nfe))
    return found
