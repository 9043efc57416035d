"""``status GRID``: how far a grid is, read from its results table and its cells' claims; nothing is run or written
(but the probe of the filesystem's clock that a claim's age is read against, removed at once).

Each of the grid's cells is one of:

- done: its row is ``ok``;
- running: a live worker holds its claim (its heartbeat is recent, or its process runs on this host);
- failed: its row is ``failed`` (a recorded reason: not rerun) or ``error`` (it raised: the next run retries it);
- left: none of these (no row yet, or a claim whose holder is gone: the next run takes it over).

The counts are given per solver (per solver and backbone where the grid has several), then in a total line, then
who holds the running claims and which claims are stale.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
from collections import Counter
from pathlib import Path

from solverbench.engine.workspace import Workspace
from solverbench.grid.values import Grid
from solverbench.hashing import canonical_json
from solverbench.registry import STUDIES
from solverbench.results import ResultsTable

STATES = ("done", "running", "failed", "left")


def grid_status(grid: Grid, results_dir: str | Path) -> str:
    """The lines ``status`` prints for ``grid`` in ``results_dir``."""
    table = ResultsTable(Path(results_dir) / grid.name)  # a damaged table: one line
    table.check_owner(grid.path, grid.hash)
    kind = STUDIES.get(grid.kind)
    study = kind(grid, Workspace(grid, results_dir, progress=False))
    units = study.units()
    frame = table.refresh()
    statuses = dict(zip(frame["cell_id"], frame["status"])) if "cell_id" in frame else {}
    claims = table.claims()
    live = {cell_id for cell_id, (_, gone) in claims.items() if not gone}
    state, raised = {}, 0
    for unit in units:
        for cell_id in unit.ids:
            status = statuses.get(cell_id)
            if status == "ok":
                state[cell_id] = "done"
            elif unit.ids[0] in live:
                state[cell_id] = "running"
            elif status is not None:
                state[cell_id] = "failed"
                raised += status == "error"
            else:
                state[cell_id] = "left"
    groups = cell_groups(grid, results_dir)
    counts: dict[str, Counter] = {}
    for cell_id, cell_state in state.items():
        counts.setdefault(groups.get(cell_id, "other"), Counter())[cell_state] += 1
    total = Counter(state.values())
    return "\n".join([f"{grid.name} ({grid.path or 'a grid given in Python'}): {len(state)} {study.unit}s, results "
                      f"in {table.path}", *count_table(counts, total, grid),
                      *notes(claims, live, set(state), total, raised, study.unit)])


def cell_groups(grid: Grid, results_dir: str | Path) -> dict[str, str]:
    """Each cell's group: its solver's label, with its backbone where the grid has several (found by cutting the grid
    down to each solver and backbone; the study's notes while doing so are not shown)."""
    kind = STUDIES.get(grid.kind)
    names = [spec.name for spec in grid.backbones]
    groups = {}
    for backbone in grid.backbones:
        shown = backbone.name if names.count(backbone.name) == 1 else \
            f"{backbone.name} {canonical_json(backbone.params)}"
        for solver in grid.solvers:
            if not solver.runs_on(backbone):
                continue
            part = dataclasses.replace(grid, backbones=(backbone,), solvers=(solver,))
            with contextlib.redirect_stderr(io.StringIO()):
                units = kind(part, Workspace(part, results_dir, progress=False)).units()
            label = solver.label + (f" on {shown}" if len(grid.backbones) > 1 else "")
            for unit in units:
                for cell_id in unit.ids:
                    groups[cell_id] = label
    return groups


def count_table(counts: dict[str, Counter], total: Counter, grid: Grid) -> list[str]:
    """The counts as an aligned table: a row per group, then the total."""
    head = "solver" + (" and backbone" if len(grid.backbones) > 1 else "")
    rows = [[head, *STATES]] + [[group, *(str(c[s]) for s in STATES)] for group, c in counts.items()] + \
        [["total", *(str(total[s]) for s in STATES)]]
    width = [max(len(row[i]) for row in rows) for i in range(len(STATES) + 1)]
    return ["  ".join([row[0].ljust(width[0]), *(cell.rjust(w) for cell, w in zip(row[1:], width[1:]))])
            for row in rows]


def notes(claims: dict, live: set[str], cells: set[str], total: Counter, raised: int, what: str) -> list[str]:
    """Who holds the running claims, which claims are stale, and what the failed cells will do."""
    lines = []
    holders = Counter(claims[cell_id][0].describe() for cell_id in live if cell_id in cells)
    if holders:
        lines.append("running: " + ", ".join(f"{n} claim{'s' if n > 1 else ''} held by {holder}"
                                              for holder, n in holders.items()))
    stale = [(cell_id, holder) for cell_id, (holder, gone) in claims.items() if gone and cell_id in cells]
    if stale:
        gone = ", ".join(sorted({holder.describe() for _, holder in stale}))
        lines.append(f"{len(stale)} claim(s) whose holder is gone ({gone}): their cells count as left; the next run "
                     "takes them over")
    if total["failed"]:
        lines.append(f"failed: {total['failed'] - raised} recorded with their reason (not rerun; --force reruns "
                     f"them), {raised} raised (the next run, or --launcher ... --resubmit, retries them)")
    if total["left"]:
        lines.append(f"{total['left']} {what}(s) left: run the grid, or send workers with --launcher ... --resubmit")
    return lines
