"""Solver families: how a figure with too many solvers for one legend splits them into panels.

A solver's family is its registry name up to the first dash (``flow-dpm`` and ``flow-unipc``:
``flow``; ``ba``, ``ba-single`` and ``ba-oracle``: ``ba``; every ``diffusers`` scheduler), and
every row sampled on a learned time grid (``... @ ld3``, ``... @ gits``) is in one family of its
own, whatever its solver.  Families of one line each (``euler``, ``heun``, ``midpoint``,
``rk4``) share a panel, so a panel never holds a lone line where others could join it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

LEARNED = "learned time grids"


@dataclass(frozen=True)
class Panel:
    title: str
    labels: tuple[str, ...]  # the solver labels drawn in it, in the grid's order


def family_of(solver: str) -> str:
    """``flow-unipc`` -> ``flow``: the registry name up to its first dash."""
    return solver.split("-", 1)[0]


def family_panels(rows: pd.DataFrame, labels: list[str]) -> list[Panel]:
    """The panels of ``labels`` (solver labels of ``rows``), one per family, in the order the families first
    appear; families of a single label share one panel (placed where the first of them appears)."""
    first = rows.drop_duplicates("solver_label").set_index("solver_label")
    learned = (first["schedule_times"].notna() if "schedule_times" in first
               else pd.Series(False, index=first.index))
    families: dict[str, list[str]] = {}
    for label in labels:
        family = LEARNED if learned[label] else family_of(first.at[label, "solver"])
        families.setdefault(family, []).append(label)
    singles = [label for members in families.values() if len(members) == 1 for label in members]
    panels, singles_placed = [], False
    for family, members in families.items():
        if len(members) > 1 or len(singles) == 1:
            panels.append(Panel(_title(family, members, first), tuple(members)))
        elif not singles_placed:
            panels.append(Panel(_title(None, singles, first), tuple(singles)))
            singles_placed = True
    return panels


def _title(family, members: list[str], first: pd.DataFrame) -> str:
    names = ", ".join(dict.fromkeys(first.at[label, "solver"] for label in members))
    if family == LEARNED:
        schedules = ", ".join(dict.fromkeys(label.rsplit(" @ ", 1)[-1] for label in members))
        return f"{LEARNED} ({schedules}): {names}"
    return names
