"""How a grid of many small cells scales on one machine's CPU: 1 process, ``run --workers 2`` and torchrun x2.

    python benchmarks/worker_scaling.py                       # 64 cells of 256 samples (sweep_scaling's cells grid)
    python benchmarks/worker_scaling.py --cell-samples 4096   # the same cells, 16 times the work each
    python benchmarks/worker_scaling.py --quick               # 8 small cells, under a minute, for a test
    python benchmarks/worker_scaling.py --out docs/benchmarks/worker_scaling.txt

Writes benchmarks/sweep_scaling.py's cells grid (euler and heun at NFE 4 on shifted schedules, the gmm64
backbone, two batches per cell so that torchrun's two ranks each take one) into a temporary folder and
runs it three times, each into a fresh results folder (so each run solves its own reference):

- ``1 worker``: ``python -m solverbench run GRID``, with every CPU thread;
- ``2 workers``: ``python -m solverbench run GRID --workers 2`` (each worker half the threads);
- ``torchrun x2``: ``torchrun --standalone --nproc_per_node 2 -m solverbench run GRID`` (each rank half the
  threads; every cell's batches split between the ranks).

Every process loads benchmarks/worker_scaling_probe.py (``--plugin``), which records its cells, its waits
for the results store's lock, its reference solves or cache reads and its time in the ranks' exchanges.
Printed: each run's command, wall time and speed-up against 1 worker, whether its rows equal 1 worker's,
and where each process's wall time went: start-up (launch to its first cell), its cells (of which the
reference, the lock wait and the collectives), the time between its cells, its idle time at the end (from
its last cell to the grid's last) and the run's tail (the grid's last cell to the command's exit).  The
per-process means of these add up to the wall time, so "excess over 1 worker / N" says exactly which of
them kept a run of N processes from N times 1 worker's speed.  (The tail of ``--workers`` includes its
parent's reading of the results table, every half second, for the workers' last rows.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from solverbench.results import read_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROBE = HERE / "worker_scaling_probe.py"
SCALING = runpy.run_path(str(HERE / "sweep_scaling.py"))  # its cells grid and output helpers
COMPARED = ("trajectory_error", "sliced_wasserstein")  # the metric columns compared with 1 worker's
TERMS = ("start-up", "reference", "lock wait", "collectives", "other cell work", "between cells", "idle at end",
         "tail")  # per process, adding up to the run's wall time


@dataclass
class Mode:
    label: str
    processes: int  # processes that run cells
    launcher: list[str]  # what runs ``-m solverbench ...``
    run_options: list[str]  # after ``run GRID --results R``
    threads: Callable[[int], int | None]  # OMP_NUM_THREADS of a run given the cores (None: the run sets its own)


MODES = (Mode("1 worker", 1, ["python"], [], lambda cores: cores),
         Mode("2 workers", 2, ["python"], ["--workers", "2"], lambda cores: None),
         Mode("torchrun x2", 2, ["torchrun", "--standalone", "--nproc_per_node", "2"], [],
              lambda cores: max(1, cores // 2)))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def shown_command(mode: Mode, grid: str, results: str) -> list[str]:
    """The command as printed (run from the folder of the grid file)."""
    return [*mode.launcher, "-m", "solverbench", "--plugin", str(PROBE.relative_to(ROOT)), "run", grid,
            "--results", results, "--no-progress", *mode.run_options]


def real_command(shown: list[str]) -> list[str]:
    """The printed command as run: this Python for ``python``, torchrun as its module, the probe's full path."""
    launcher = {"python": [sys.executable], "torchrun": [sys.executable, "-m", "torch.distributed.run"]}
    return [*launcher[shown[0]], *[str(PROBE) if arg == str(PROBE.relative_to(ROOT)) else arg for arg in shown[1:]]]


def launch(mode: Mode, folder: Path, grid: Path, timeout: float) -> dict[str, Any]:
    """Run the grid in ``mode`` into a fresh results folder; its wall time, records and rows."""
    results, records = f"results-{mode.label.replace(' ', '-')}", folder / f"records-{mode.label.replace(' ', '-')}"
    records.mkdir()
    shown = shown_command(mode, grid.name, results)
    env = {**os.environ, "WORKER_SCALING_RECORDS": str(records)}
    threads = mode.threads(cores())
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.time()
    done = subprocess.run(real_command(shown), cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    end = time.time()
    if done.returncode:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"{mode.label}: {shlex.join(shown)} exited with status {done.returncode}:\n{tail}")
    grid_name = grid.stem
    return {"mode": mode, "command": shown, "threads": threads, "launch": start, "end": end, "wall": end - start,
            "records": [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))],
            "rows": read_table(folder / results / grid_name / "results.parquet")}


def process_terms(record: dict[str, Any], launch_at: float, grid_last: float, end: float) -> dict[str, float]:
    """Where one cell-running process's wall time went (``TERMS``; they add up to ``end - launch_at``)."""
    ran = [(start, stop) for start, stop, did in record["cells"] if did]
    first, last = record["cells"][0][0], max(stop for _, stop in ran)
    in_cells = sum(stop - start for start, stop in ran)
    reference = sum(seconds for seconds, _, inside in record["reference"] if inside)
    lock = sum(wait for wait, _, inside in record["lock"] if inside)
    collectives = record["collectives"]["inside"]
    return {"start-up": first - launch_at, "reference": reference, "lock wait": lock, "collectives": collectives,
            "other cell work": in_cells - reference - lock - collectives, "between cells": last - first - in_cells,
            "idle at end": grid_last - last, "tail": end - grid_last}


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """The cell-running processes' terms, their means, and their counts of cells, holds and solves."""
    workers = [r for r in run["records"] if any(did for _, _, did in r["cells"])]
    grid_last = max(stop for r in workers for _, stop, did in r["cells"] if did)
    per = []
    for record in sorted(workers, key=lambda r: (r["rank"] or "", r["pid"])):
        per.append({"name": f"rank {record['rank']}" if record["rank"] is not None else f"pid {record['pid']}",
                    "terms": process_terms(record, run["launch"], grid_last, run["end"]),
                    "cells": sum(did for _, _, did in record["cells"]), "threads": record["threads"],
                    "holds": len(record["lock"]), "lock_all": sum(w for w, _, _ in record["lock"]),
                    "solved": sum(s for _, s, _ in record["reference"]),
                    "read": sum(not s for _, s, _ in record["reference"]),
                    "collectives_all": sum(record["collectives"].values())})
    mean = {term: float(np.mean([p["terms"][term] for p in per])) for term in TERMS}
    return {"processes": per, "mean": mean}


def rows_check(rows: pd.DataFrame, base: pd.DataFrame, cells: int) -> str:
    """The rows' count and statuses, and whether their metrics equal those of 1 worker's rows."""
    ok = int((rows["status"] == "ok").sum())
    text = f"{len(rows)} rows, {ok} ok" + ("" if rows["cell_id"].is_unique else ", DUPLICATED cells")
    if len(rows) != cells:
        text += f", {cells - len(rows)} MISSING"
    if rows is base:
        return text
    mine, theirs = (frame.set_index("cell_id").sort_index()[list(COMPARED)] for frame in (rows, base))
    if not mine.index.equals(theirs.index):
        return text + ", other cells than 1 worker's"
    diff = float(np.nanmax(np.abs(mine.to_numpy() - theirs.to_numpy()) / np.abs(theirs.to_numpy())))
    return text + (", metrics equal to 1 worker's" if diff == 0 else f", metrics within {diff:.1e} of 1 worker's")


def report(runs: list[dict[str, Any]], cells: int, log: Callable[[str], None]) -> None:
    base = runs[0]
    log(f"\n{'run':<12} {'processes':>9} {'wall s':>7} {'speed-up':>8}  rows")
    for run in runs:
        log(f"{run['mode'].label:<12} {run['mode'].processes:>9} {run['wall']:>7.2f} "
            f"{base['wall'] / run['wall']:>8.2f}  {rows_check(run['rows'], base['rows'], cells)}")
    log("\nwhere the wall time went, seconds per process (the terms add up to the wall time); after each process "
        "its reference solves/cache reads, its holds of the store's lock with their whole wait, and its whole time "
        "in collectives (inside its cells and outside them)")
    header = f"{'run':<12} {'process':<10} {'cells':>5} {'thr':>3} " + " ".join(f"{t:>11}" for t in TERMS)
    log(header)
    for run in runs:
        for p in run["analysis"]["processes"]:
            log(f"{run['mode'].label:<12} {p['name']:<10} {p['cells']:>5} {p['threads']:>3} "
                + " ".join(f"{p['terms'][t]:>11.3f}" for t in TERMS)
                + f"   reference {p['solved']}/{p['read']}, lock {p['holds']} holds {p['lock_all']:.3f} s, "
                  f"collectives {p['collectives_all']:.3f} s")
        log(f"{run['mode'].label:<12} {'mean':<10} {'':>5} {'':>3} "
            + " ".join(f"{run['analysis']['mean'][t]:>11.3f}" for t in TERMS))
    log("\nexcess over 1 worker's / N (mean per process minus 1 worker's term / N; the excesses add up to "
        "wall - 1 worker's wall / N)")
    log(f"{'run':<12} {'wall':>8} " + " ".join(f"{t:>11}" for t in TERMS))
    for run in runs[1:]:
        n = run["mode"].processes
        excess = {t: run["analysis"]["mean"][t] - base["analysis"]["mean"][t] / n for t in TERMS}
        log(f"{run['mode'].label:<12} {run['wall'] - base['wall'] / n:>8.3f} "
            + " ".join(f"{excess[t]:>11.3f}" for t in TERMS))
        top = sorted(TERMS, key=lambda t: -excess[t])[:3]
        log(f"  {run['mode'].label}: {base['wall'] / run['wall']:.2f}x of {n}x; most lost to "
            + ", ".join(f"{t} ({excess[t]:+.2f} s)" for t in top))


def machine() -> str:
    import torch

    return (f"{platform.machine()} {platform.processor() or ''}, {cores()} CPU cores available, torch "
            f"{torch.__version__}, Python {platform.python_version()}")


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The three runs of the grid; each run's wall time, records, rows and analysis."""
    log(f"$ {shlex.join(['python', 'benchmarks/worker_scaling.py'] + args.argv)}")
    log(f"machine: {machine()}; the machine otherwise idle (other jobs would disturb the wall times)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid = SCALING["cells_grid"](folder, args.cells, args, batch_size=-(-args.cell_samples // 2))
        log(f"grid {grid.name} ({args.cells} cells of {args.cell_samples} samples in 2 batches, reference rtol "
            f"{args.rtol:g}), each command run in the grid's folder into a fresh results folder:")
        for line in grid.read_text().splitlines():
            log(f"  | {line}")
        for mode in MODES:
            runs.append(launch(mode, folder, grid, args.timeout))
            runs[-1]["analysis"] = analyse(runs[-1])
            threads = f"OMP_NUM_THREADS={runs[-1]['threads']} " if runs[-1]["threads"] is not None else ""
            log(f"$ {threads}{shlex.join(runs[-1]['command'])}")
            log(f"  {mode.label}: {runs[-1]['wall']:.2f} s wall")
        report(runs, args.cells, log)
    return {run["mode"].label: run for run in runs}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 cells of 64 samples (under a minute), for a test")
    parser.add_argument("--cells", type=int, help="cells of the grid (even, at least 2; default 64)")
    parser.add_argument("--cell-samples", type=int, help="samples per cell (at least 2; default 256)")
    parser.add_argument("--rtol", type=float, help="reference tolerance (default 1e-9, quick 1e-5)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one run may take (default 3600)")
    parser.add_argument("--out", type=Path, help="also write the output to this file")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    args.cells = args.cells or (8 if args.quick else 64)
    args.cell_samples = args.cell_samples or (64 if args.quick else 256)
    args.rtol = args.rtol or (1e-5 if args.quick else 1e-9)
    args.log_likelihood = False
    if args.cells < 2 or args.cells % 2:
        parser.error(f"--cells {args.cells}: give an even count of at least 2 (euler and heun on each schedule)")
    if args.cell_samples < 2:
        parser.error(f"--cell-samples {args.cell_samples}: give at least 2 (each cell is split in 2 batches)")
    return args


def main(argv: list[str] | None = None) -> int:
    SCALING["logged"](run, parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
