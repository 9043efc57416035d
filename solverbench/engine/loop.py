"""The one resumable loop every study kind runs: units of work whose rows go to the results store.

A unit is a cell of a sweep (or a group of LTE steps written together), as the study
kind cuts its work.  The loop skips
units already done, claims each unit before running it (so concurrent runs of one grid
share the work), writes its rows at once, waits at the end for units another run was
busy with, and closes with a summary that names every cell that did not finish ``ok``.
Ctrl-C ends it with one line saying what was kept.

A cell run again (``--force``, or for an output it still owes) whose new row is not ``ok``
keeps its earlier ``ok`` row unless ``replace_with_failures``: the summary names it, saying
the ``ok`` row was kept, and the run ends with ``SweepFailed`` (exit status 1), whether the
new row failed (NaN) or raised, since what it computed is not in the table.

Under torchrun every rank runs every unit (each doing its share of the unit's samples);
rank 0 alone decides what runs (what is done, which claims it holds), tells the others,
and writes the rows (``solverbench.distributed``).
"""
from __future__ import annotations

import sys
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pandas as pd
from tqdm import tqdm

from solverbench.distributed import World, world
from solverbench.progress import progress_bar
from solverbench.results import ResultsTable


class SweepFailed(RuntimeError):
    """Some cells raised errors (recorded as rows with status 'error'); the sweep still ran the rest."""


@dataclass
class Unit:
    ids: list[str]  # the cell ids whose rows the unit writes
    label: str  # what the progress bar shows while it runs
    run: Callable[[], list[dict[str, Any]]]
    redo: Optional[Callable[[], bool]] = None  # True where a unit already done still owes an output (run it again)

    def owed(self) -> bool:
        return self.redo is not None and self.redo()


@dataclass
class Outcome:
    table: ResultsTable
    ran: int = 0  # cells whose rows this run wrote
    statuses: dict[str, int] = field(default_factory=dict)  # over the grid's current cells
    problems: dict[str, list[str]] = field(default_factory=dict)  # status -> one line per cell
    held: list[dict[str, Any]] = field(default_factory=list)  # new rows not ok that did not replace an ok row
    kept: list[str] = field(default_factory=list)  # one line per (group of) ``held`` rows
    replace_with_failures: bool = False  # whether rows not ok replace ok rows

    def summary(self, what: str) -> list[str]:
        """The closing lines: counts by status, then the cells that did not finish ``ok``, then those
        whose earlier ``ok`` row was kept over a failure of this run."""
        return self.counted(what, errors=True) + self.kept_lines(what)

    def counted(self, what: str, *, errors: bool = False) -> list[str]:
        """The counts by status and the cells of each status not ok (those of ``error`` only with ``errors``)."""
        total = sum(self.statuses.values())
        counts = ", ".join(f"{n} {status}" for status, n in self.statuses.items())
        lines = [f"{total} {what}s in {self.table.path}: {counts} ({self.ran} run now)"]
        for status in self.problems:
            if errors or status != "error":
                lines += self.problem_lines(status, what)
        return lines

    def raised(self, what: str) -> list[str]:
        """What ends the run with SweepFailed: the cells that raised, and those whose ok row was kept."""
        errors = self.problem_lines("error", what) if "error" in self.problems else []
        return errors + self.kept_lines(what)

    def problem_lines(self, status: str, what: str) -> list[str]:
        explain = {"failed": "recorded with their reason and not rerun; --force reruns them",
                   "error": "they raised: recorded with the traceback, and retried by the next run"}
        cells = self.problems.get(status, [])
        return [f"{len(cells)} {status} {what}(s) ({explain.get(status, 'not ok')}):"] + [f"  {c}" for c in cells]

    def kept_lines(self, what: str) -> list[str]:
        if not self.kept:
            return []
        return [f"{len(self.held)} {what}(s) run again did not finish ok; the earlier ok row of each is kept "
                "(--replace-with-failures records the failure instead):"] + [f"  {c}" for c in self.kept]


def run_units(table: ResultsTable, units: list[Unit], current_ids: list[str], *, force: bool, progress: bool,
              desc: str, what: str, describe: Callable[[pd.Series], str],
              replace_with_failures: bool = False) -> Outcome:
    """Run every unit not done yet; the summary covers ``current_ids`` (the grid's cells).  A new row that is
    not ``ok`` replaces an ``ok`` row of its cell only with ``replace_with_failures``."""
    outcome = Outcome(table, replace_with_failures=replace_with_failures)
    ranks = world()
    progress = progress and ranks.main
    todo_at = ranks.decide(lambda: todo_positions(table, units, force))
    todo = [units[i] for i in todo_at]
    skipped = sum(len(u.ids) for u in units) - sum(len(u.ids) for u in todo)
    if skipped and ranks.main:
        tqdm.write(f"{skipped} of {len(current_ids)} {what}s already done in {table.path}; skipping them "
                   "(--force redoes them)", file=sys.stderr)
    bar = progress_bar(total=sum(len(u.ids) for u in todo), desc=desc, unit=what, enabled=progress,
                       off_terminal="lines", dynamic_ncols=True)
    busy: list[Unit] = []
    try:
        for unit in todo:
            if not _run_claimed(table, unit, force, bar, outcome, ranks):
                busy.append(unit)
        if busy and ranks.main:
            tqdm.write(f"waiting for {len(busy)} {what}(s) that another run of this grid is running", file=sys.stderr)
        for unit in busy:
            if ranks.main:
                table.wait_for_claim(unit.ids[0])
            _run_claimed(table, unit, False, bar, outcome, ranks)
    except KeyboardInterrupt:
        bar.close()
        raise KeyboardInterrupt(f"interrupted: the {outcome.ran} {what}(s) finished in this run are kept in "
                                f"{table.path}; run the same command again to do the rest") from None
    bar.close()
    if ranks.main:
        _summarise(outcome, current_ids, describe)
    return outcome


def todo_positions(table: ResultsTable, units: list[Unit], force: bool) -> list[int]:
    """The positions of the units to run: all with ``force``, else those not done or still owing an output."""
    done = set() if force else table.done()
    return [i for i, u in enumerate(units) if force or not set(u.ids) <= done or u.owed()]


def _run_claimed(table: ResultsTable, unit: Unit, force: bool, bar: Any, outcome: Outcome, ranks: World) -> bool:
    """Run the unit under its claim (rank 0 holds it for every rank); False where another run holds
    the claim (left for later)."""
    with table.claim(unit.ids[0]) if ranks.main else nullcontext(True) as mine:
        if not ranks.agree(mine):
            return False
        # another run may have finished it meanwhile
        if ranks.decide(lambda: force or not set(unit.ids) <= table.done() or unit.owed()):
            bar.set_postfix_str(unit.label, refresh=True)
            rows = unit.run()
            bar.set_postfix_str(f"{unit.label}: {statuses_of(rows)}", refresh=False)
            held = table.put_many(rows, replace_ok=outcome.replace_with_failures) if ranks.main else []
            outcome.held += held
            outcome.ran += len(rows) - len(held)
        bar.update(len(unit.ids))
    return True


def statuses_of(rows: list[dict[str, Any]]) -> str:
    """The status of a unit's rows, as its progress line says it: ``ok``, or ``2 ok, 1 failed`` where they differ."""
    counts = Counter(str(row.get("status")) for row in rows)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "no rows"


def _summarise(outcome: Outcome, current_ids: list[str], describe: Callable[[pd.Series], str]) -> None:
    """Count the grid's cells by status and name those that failed or raised (identical reasons of
    one ``describe`` group, e.g. an LTE solver's steps, once with their count)."""
    frame = outcome.table.refresh()
    rows = frame[frame["cell_id"].isin(current_ids)] if "cell_id" in frame else frame
    outcome.statuses = {str(k): int(v) for k, v in rows["status"].value_counts().items()} if len(rows) else {}
    for status in ("failed", "error"):
        bad = rows[rows["status"] == status] if len(rows) else rows
        groups: dict[tuple[str, str], int] = {}
        for _, row in bad.iterrows():
            key = (describe(row), str(row["error"]))
            groups[key] = groups.get(key, 0) + 1
        if groups:
            outcome.problems[status] = grouped_lines(groups)
    kept: dict[tuple[str, str], int] = {}
    for row in outcome.held:
        key = (describe(pd.Series(row)), f"{row.get('status')}: {row.get('error')}")
        kept[key] = kept.get(key, 0) + 1
    outcome.kept = grouped_lines(kept)


def summarise_done(table: ResultsTable, current_ids: list[str], describe: Callable[[pd.Series], str]) -> Outcome:
    """The outcome of a run that ran nothing: the summary of the grid's cells as stored."""
    outcome = Outcome(table)
    _summarise(outcome, current_ids, describe)
    return outcome


def grouped_lines(groups: dict[tuple[str, str], int]) -> list[str]:
    """``where (n cells): error`` per (where, error) group."""
    return [f"{where}{f' ({n} cells)' if n > 1 else ''}: {error}" for (where, error), n in groups.items()]


def report_outcome(outcome: Outcome, what: str) -> None:
    """Print the summary (stderr); raise SweepFailed, listing them, where cells raised errors or cells run
    again did not finish ok (their ok rows kept)."""
    for line in outcome.counted(what):
        tqdm.write(line, file=sys.stderr)
    raised = outcome.raised(what)
    if raised:
        raise SweepFailed("\n".join(raised))
