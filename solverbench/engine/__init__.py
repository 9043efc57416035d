"""The one engine: runs a grid of any study kind through one resumable loop into the results store.

    run_grid(grid, results_dir) -> ResultsTable

The study kind (``grid.kind``, found in the ``STUDIES`` registry) cuts the grid into units
of work; the engine claims the results folder for the grid file, runs every unit not done
yet (``engine.loop``), and closes with the summary of the grid's cells.  A results folder the
process cannot write is refused in one line before any work, unless every cell is done (then
the summary is given and nothing is written).  Under torchrun
(``solverbench.distributed``) every rank runs it; rank 0 alone writes the results folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from solverbench.distributed import world

from solverbench.engine.loop import SweepFailed, Unit, report_outcome, run_units, summarise_done, todo_positions
from solverbench.engine.study import Study
from solverbench.engine.workspace import Workspace
from solverbench.errors import GridError
from solverbench.grid.values import Grid
from solverbench.registry import STUDIES
from solverbench.results import ResultsTable, first_unwritable

__all__ = ["run_grid", "Study", "Unit", "Workspace", "SweepFailed", "ReadOnlyResultsError"]


class ReadOnlyResultsError(PermissionError):
    """A results folder this process cannot write, for a run that would write it."""


def run_grid(grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
             progress: bool = True, replace_with_failures: bool = False) -> ResultsTable:
    """Run every cell of ``grid`` not in ``results_dir`` yet (all of them with ``force``).

    A cell run again whose new row is not ``ok`` keeps its earlier ``ok`` row unless
    ``replace_with_failures``.  In a results folder this process cannot write, a grid whose every
    cell is done gives its summary and writes nothing; any other run is refused before any work."""
    ranks = world()
    kind = STUDIES.get(grid.kind)
    if ranks.sharded and not kind.sharded:
        raise GridError(f"kind: {grid.kind} runs in one process; run it without torchrun (only kind: sweep splits "
                        f"its samples across processes)")
    table = ResultsTable(Path(results_dir) / grid.name)  # a damaged or foreign table fails here
    read_only = ranks.decide(lambda: first_unwritable([*table.writes(), Path(results_dir) / ".cache"]))
    if read_only is None:
        ranks.decide(lambda: table.adopt(grid.path, grid.hash, force=force))
    elif not force:
        ranks.decide(lambda: table.check_owner(grid.path, grid.hash))
    study = kind(grid, Workspace(grid, results_dir, progress=progress and ranks.main))
    units = study.units()
    ids = [cell_id for unit in units for cell_id in unit.ids]
    if read_only is not None:
        ranks.decide(lambda: refuse_to_write(table, units, read_only, force, study.unit))
        if ranks.main:
            report_outcome(summarise_done(table, ids, study.describe), study.unit)
            tqdm.write(f"nothing written: {unwritable(table, read_only)}, and every {study.unit} is done",
                       file=sys.stderr)
        return table
    ranks.decide(lambda: table.set_current(ids))
    outcome = run_units(table, units, ids, force=force, progress=progress, desc=grid.name, what=study.unit,
                        describe=study.describe, replace_with_failures=replace_with_failures)
    if ranks.main:
        report_outcome(outcome, study.unit)
    return table


def refuse_to_write(table: ResultsTable, units: list[Unit], read_only: Path, force: bool, what: str) -> None:
    """Refuse (ReadOnlyResultsError, one line) a run that would write a folder it cannot write: a forced
    one, or one with units not done or owing an output."""
    todo = [units[i] for i in todo_positions(table, units, force)]
    if todo:
        count = sum(len(unit.ids) for unit in todo)
        total = sum(len(unit.ids) for unit in units)
        reason = "--force redoes every one" if force else f"{count} of {total} {what}s are still to run"
        raise ReadOnlyResultsError(f"{unwritable(table, read_only)}, and {reason}; make it writable, or point "
                                   "--results at a folder that is")


def unwritable(table: ResultsTable, read_only: Path) -> str:
    """What cannot be written, in words."""
    if read_only == table.directory:
        return f"results folder {table.directory} is read-only for this process"
    return f"results folder {table.directory} cannot be written ({read_only} is read-only for this process)"
