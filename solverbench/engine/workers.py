"""``run GRID --workers N``: N worker processes on one machine share a grid's cells.

Each worker is ``python -m solverbench run GRID --results R --no-progress`` into the same
results folder: the workers share the cells through the cells' claims in the results store
(``engine.loop``), exactly as concurrent runs of one grid do, so every cell is run once and its
row is the one a single process writes.  A worker takes one GPU (``CUDA_VISIBLE_DEVICES``) where
the grid's device is ``cuda``; otherwise the CPU threads are split between the workers.

This process runs no cell: it shows one progress bar over the grid's cells, made by watching
the results table, reports a worker that dies in one line (its claims are taken over at once, its
process being gone: the other workers take its cells, or the next run does), and closes with the
grid's summary from the table.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional

import pandas as pd
from tqdm import tqdm

from solverbench.engine.loop import SweepFailed, report_outcome, summarise_done, todo_positions
from solverbench.engine.workspace import Workspace
from solverbench.errors import GridError
from solverbench.grid.values import Grid
from solverbench.progress import progress_bar
from solverbench.registry import STUDIES
from solverbench.results import ResultsTable

POLL_S = 0.5  # how often the results table is read for finished cells
STOP_WAIT_S = 30.0  # how long interrupted workers get to stop before they are killed


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    output: IO[bytes]  # its stdout and stderr
    reported: bool = False

    def describe_exit(self) -> str:
        """One line for a worker that did not end with status 0: killed by a signal, or its status and
        the error line it printed."""
        code = self.process.returncode
        name = f"worker {self.index} (pid {self.process.pid})"
        if code < 0:
            return f"{name} was killed by {signal.Signals(-code).name}; its unfinished cell goes to another worker " \
                   "or the next run"
        return f"{name} exited with status {code}" + (f": {self.last_error()}" if self.last_error() else "")

    def last_error(self) -> str:
        """The worker's ``error:`` line (its first), else its last line of output."""
        self.output.seek(0)
        lines = [line.strip() for line in self.output.read().decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "error:" in line]
        return (errors or lines or [""])[0 if errors else -1]


def refuse_count(workers: int, cells: int, what: str) -> None:
    """Refuse (GridError, one line) a number of workers below 1 or above the grid's cells."""
    if workers < 1:
        raise GridError(f"--workers {workers}: give at least 1 worker")
    if workers > cells:
        raise GridError(f"--workers {workers}: the grid has only {cells} {what}s; give at most {cells} workers")


def worker_environments(grid: Grid, workers: int) -> list[dict[str, str]]:
    """Each worker's environment: one GPU of those visible where the grid's device is ``cuda``, else a
    share of the CPU threads (``OMP_NUM_THREADS``, max(1, cores // workers))."""
    base = dict(os.environ)
    if grid.device.startswith("cuda"):
        return [{**base, "CUDA_VISIBLE_DEVICES": gpu} for gpu in worker_gpus(grid.device, workers)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // workers))
    return [{**base, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(workers)]


def worker_gpus(device: str, workers: int) -> list[str]:
    """The GPU of each worker (as ``CUDA_VISIBLE_DEVICES`` names it); more workers than GPUs is refused."""
    import torch

    if device != "cuda":
        raise GridError(f"--workers gives each worker one GPU, as device cuda; the grid's device {device} names "
                        "one GPU: give device: cuda")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [gpu.strip() for gpu in visible.split(",") if gpu.strip()] if visible is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    gpus = gpus[:torch.cuda.device_count()]
    if workers > len(gpus):
        raise GridError(f"--workers {workers}: each worker takes one GPU, and {len(gpus)} are visible here; give "
                        f"at most {len(gpus)} workers")
    return gpus[:workers]


def start_workers(command: list[str], environments: list[dict[str, str]]) -> list[Worker]:
    """Start one worker per environment, its output in a temporary file."""
    workers = []
    for index, env in enumerate(environments):
        output = tempfile.TemporaryFile()
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        workers.append(Worker(index, process, output))
    return workers


def worker_command(grid_file: str, results_dir: str | Path, *, export_npz: bool, plugins: list[str]) -> list[str]:
    """The command line of a worker: ``run`` of the same grid into the same results folder, silent."""
    loads = [arg for path in plugins for arg in ("--plugin", str(Path(path).resolve()))]
    return [sys.executable, "-m", "solverbench", *loads, "run", str(grid_file), "--results", str(results_dir),
            "--no-progress", *(["--export-npz"] if export_npz else [])]


class Watch:
    """The cells of the grid that finish while the workers run, read from the results table: a cell
    finishes when its row changes (new, or another status, timestamp or process than at the start)."""

    def __init__(self, table: ResultsTable, ids: list[str], describe: Callable[[pd.Series], str]):
        self.table, self.ids, self.describe = table, set(ids), describe
        self.seen = self.rows_now()
        self.finished: set[str] = set()

    def rows_now(self) -> dict[str, tuple[Any, ...]]:
        frame = self.table.refresh()
        if "cell_id" not in frame:
            return {}
        mine = frame[frame["cell_id"].isin(self.ids)]
        keys = mine[[c for c in ("status", "timestamp", "host", "pid") if c in mine]]
        return dict(zip(mine["cell_id"], keys.itertuples(index=False, name=None)))

    def new_rows(self) -> list[pd.Series]:
        """The rows of the cells finished since the last call."""
        now = self.rows_now()
        changed = [cid for cid, key in now.items() if self.seen.get(cid) != key and cid not in self.finished]
        self.finished |= set(changed)
        frame = self.table.frame
        return [frame[frame["cell_id"] == cid].iloc[-1] for cid in changed]


def run_workers(grid: Grid, grid_file: str, results_dir: str | Path, workers: int, *, progress: bool = True,
                export_npz: bool = False, plugins: Optional[list[str]] = None) -> ResultsTable:
    """Run ``grid`` (read from ``grid_file``) by ``workers`` worker processes into ``results_dir``;
    show one progress bar, then the grid's summary (raising SweepFailed as ``run_grid`` does, and where
    cells are left unrun because workers died)."""
    kind = STUDIES.get(grid.kind)
    table = ResultsTable(Path(results_dir) / grid.name)  # a damaged table fails here, before any worker
    table.check_owner(grid.path, grid.hash)
    study = kind(grid, Workspace(grid, results_dir, progress=False))
    units = study.units()
    ids = [cell_id for unit in units for cell_id in unit.ids]
    refuse_count(workers, len(ids), study.unit)
    environments = worker_environments(grid, workers)
    todo = sum(len(units[i].ids) for i in todo_positions(table, units, False))
    if todo < len(ids):
        tqdm.write(f"{len(ids) - todo} of {len(ids)} {study.unit}s already done in {table.path}; skipping them "
                   "(--force redoes them)", file=sys.stderr)
    watch = Watch(table, ids, study.describe)
    if todo:
        command = worker_command(grid_file, results_dir, export_npz=export_npz, plugins=plugins or [])
        watch_workers(start_workers(command, environments), watch, todo, progress=progress, desc=grid.name,
                      what=study.unit)
    outcome = summarise_done(table, ids, study.describe)
    outcome.ran = len(watch.finished)
    missing = len(set(ids) - set(table.refresh().get("cell_id", [])))
    if missing:
        for line in outcome.counted(study.unit):
            tqdm.write(line, file=sys.stderr)
        raise SweepFailed(f"{missing} {study.unit}(s) have no row: the workers ended without them; run the same "
                          "command again to run them")
    report_outcome(outcome, study.unit)
    return table


def watch_workers(workers: list[Worker], watch: Watch, total: int, *, progress: bool, desc: str, what: str) -> None:
    """Advance one progress bar as the workers' cells finish, until every worker has exited; report each
    worker that did not end with status 0.  Ctrl-C stops the workers and raises KeyboardInterrupt."""
    bar = progress_bar(total=total, desc=desc, unit=what, enabled=progress, off_terminal="lines",
                       dynamic_ncols=True)
    try:
        while True:
            running = any(w.process.poll() is None for w in workers)  # polled first: no row is missed
            for row in watch.new_rows():
                bar.set_postfix_str(f"{watch.describe(row)}: {row['status']}", refresh=False)
                bar.update(1)
            for worker in workers:
                if worker.process.returncode not in (None, 0) and not worker.reported:
                    worker.reported = True
                    tqdm.write(worker.describe_exit(), file=sys.stderr)
            if not running:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        bar.close()
        stop_workers(workers)
        raise KeyboardInterrupt(f"interrupted: the {len(watch.finished)} {what}(s) finished in this run are kept in "
                                f"{watch.table.path}; run the same command again to do the rest") from None
    finally:
        for worker in workers:
            worker.output.close()
    bar.close()


def stop_workers(workers: list[Worker]) -> None:
    """Interrupt the workers still running (each keeps its finished cells) and wait for them; kill those
    still running after ``STOP_WAIT_S``."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
