"""``run GRID --check``: what a run of the grid would do, found without doing any of it.

The grid has been read and checked (``load_grid``); here the results folder is checked as a
run would check it (a folder of another grid file, a table that cannot be read) and the
grid's cells are counted: how many the table holds finished and how many a run would run.
Nothing is computed and nothing is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from solverbench.engine.loop import todo_positions
from solverbench.engine.workers import refuse_count, worker_environments
from solverbench.engine.workspace import Workspace
from solverbench.grid.values import Grid
from solverbench.registry import STUDIES
from solverbench.results import ResultsTable


def check_grid(grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
               workers: Optional[int] = None) -> str:
    """The line ``run --check`` prints: the grid's cells, how many are done in ``results_dir`` and how many
    a run would run (all of them with ``force``); raises as the run would on a results folder it refuses,
    and on a number of ``workers`` (``run --workers``) it refuses."""
    kind = STUDIES.get(grid.kind)
    table = ResultsTable(Path(results_dir) / grid.name)  # reads the table: one that cannot be read is refused
    if not force:
        table.check_owner(grid.path, grid.hash)
    study = kind(grid, Workspace(grid, results_dir, progress=False))
    units = study.units()
    ids = [cell_id for unit in units for cell_id in unit.ids]
    if workers is not None:
        refuse_count(workers, len(ids), study.unit)
        worker_environments(grid, workers)  # more workers than GPUs: refused
    todo = sum(len(units[i].ids) for i in todo_positions(table, units, force))
    done = len(set(ids) & table.done())
    return (f"{grid.path or grid.name}: {len(ids)} {study.unit}s, {done} done in {table.path}, {todo} would run "
            "(checked; nothing was run)")
