"""The one engine: runs a grid of any study kind through one resumable loop into the results store.

    run_grid(grid, results_dir) -> ResultsTable

The study kind (``grid.kind``, found in the ``STUDIES`` registry) cuts the grid into units
of work; the engine claims the results folder for the grid file, runs every unit not done
yet (``engine.loop``), and closes with the summary of the grid's cells.  Under torchrun
(``solverbench.distributed``) every rank runs it; rank 0 alone writes the results folder.
"""
from __future__ import annotations

from pathlib import Path

from solverbench.distributed import world

from solverbench.engine.loop import SweepFailed, Unit, report_outcome, run_units
from solverbench.engine.study import Study
from solverbench.engine.workspace import Workspace
from solverbench.errors import GridError
from solverbench.grid.values import Grid
from solverbench.registry import STUDIES
from solverbench.results import ResultsTable

__all__ = ["run_grid", "Study", "Unit", "Workspace", "SweepFailed"]


def run_grid(grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
             progress: bool = True) -> ResultsTable:
    """Run every cell of ``grid`` not in ``results_dir`` yet (all of them with ``force``)."""
    ranks = world()
    kind = STUDIES.get(grid.kind)
    if ranks.sharded and not kind.sharded:
        raise GridError(f"kind: {grid.kind} runs in one process; run it without torchrun (only kind: sweep splits "
                        f"its samples across processes)")
    table = ResultsTable(Path(results_dir) / grid.name)
    ranks.decide(lambda: table.adopt(grid.path, grid.hash, force=force))
    study = kind(grid, Workspace(grid, results_dir, progress=progress and ranks.main))
    units = study.units()
    ids = [cell_id for unit in units for cell_id in unit.ids]
    ranks.decide(lambda: table.set_current(ids))
    outcome = run_units(table, units, ids, force=force, progress=progress, desc=grid.name, what=study.unit,
                        describe=study.describe)
    if ranks.main:
        report_outcome(outcome, study.unit)
    return table
