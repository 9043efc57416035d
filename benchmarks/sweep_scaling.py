"""How a sweep's cost grows: with the number of samples, and with the number of cells.

    OMP_NUM_THREADS=1 python benchmarks/sweep_scaling.py             # 1k..64k samples, 8..512 cells (~30 min CPU)
    OMP_NUM_THREADS=1 python benchmarks/sweep_scaling.py --quick     # small sizes, under a minute
    OMP_NUM_THREADS=1 python benchmarks/sweep_scaling.py --out docs/benchmarks/sweep_scaling.txt

Writes quick.yaml-like grid files (the gmm64 backbone, a few solvers, trajectory_error and
sliced_wasserstein; ``--log-likelihood`` adds that metric) into a temporary folder and runs
them through the real engine (``run_grid``) into a fresh results folder each:

- samples: 8 cells (euler, heun, rk4, flow-dpm at NFE 5 and 10) at 1k, 2k, ... 64k samples;
- cells: euler and heun at NFE 4 on many shifted schedules, 8, 32, 128, 512 cells of 256 samples,
  to expose per-cell costs that grow with the table (re-reads of the results, re-hashes).

Each run's time is split (exclusive wall and CPU time: a phase called inside another is
charged to itself only) into the reference solve, the noise, label and data draws, sampling,
the FLOP count, the metrics, the results store (its table, each cell's samples and paired
arrays), and the rest.  Every phase's growth exponent (the slope of
log time against log size) is printed; one above 1.15 is flagged as growing faster than the
work.  The largest setting of each series is then run again under cProfile (with ``--force``
and the reference cached, so the profile is of the cells) and its top entries by
cumulative time printed.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import yaml

import solverbench.engine.draws as draws_module
import solverbench.engine.workspace as workspace_module
import solverbench.studies.sweep as sweep_module
from solverbench.engine import run_grid
from solverbench.grid import load_grid
from solverbench.results import ResultsTable

PHASES = ("reference", "draws", "sampling", "flops", "metrics", "store", "rest")
SUPER_LINEAR = 1.15  # a growth exponent above this is flagged


class Phases:
    """Exclusive wall and CPU seconds per phase: entering a phase pauses the one it was called from."""

    def __init__(self, names: tuple[str, ...] = PHASES):
        self.wall = dict.fromkeys(names, 0.0)  # a phase not named here is added when first entered
        self.cpu = dict.fromkeys(names, 0.0)
        self.stack: list[str] = ["rest"]
        self.mark = (time.perf_counter(), time.process_time())

    def _charge(self) -> None:
        now, phase = (time.perf_counter(), time.process_time()), self.stack[-1]
        self.wall[phase] = self.wall.get(phase, 0.0) + now[0] - self.mark[0]
        self.cpu[phase] = self.cpu.get(phase, 0.0) + now[1] - self.mark[1]
        self.mark = now

    def timed(self, phase: str, fn: Callable) -> Callable:
        """``fn`` charged to ``phase`` (its attributes kept: a metric's ``applies``, ...)."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            self._charge()
            self.stack.append(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self._charge()
                self.stack.pop()
        return wrapper


# the functions the engine calls for each phase: (object, attribute, phase)
HOOKS = [(workspace_module, "reference_endpoints", "reference"), (draws_module, "noise_for", "draws"),
         (draws_module, "labels_for", "draws"), (draws_module.Draws, "data", "draws"),
         (sweep_module, "sample", "sampling"), (sweep_module, "solve_cost", "flops"),
         (sweep_module.Sweep, "measure", "metrics"),
         (ResultsTable, "put_many", "store"), (ResultsTable, "done", "store"), (ResultsTable, "refresh", "store"),
         (ResultsTable, "__init__", "store"), (sweep_module.Sweep, "save_samples", "store"),
         (sweep_module, "write_paired_arrays", "store")]


@contextlib.contextmanager
def instrumented(phases: Phases, hooks: list[tuple[Any, str, str]] = HOOKS) -> Iterator[None]:
    """Each hooked function charged to its phase while the block runs (a hook the code lacks is skipped)."""
    hooks = [(obj, name, phase) for obj, name, phase in hooks if hasattr(obj, name)]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in hooks]
    for (obj, name, phase), (_, _, fn) in zip(hooks, saved):
        setattr(obj, name, phases.timed(phase, fn))
    try:
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        phases._charge()


def grid_file(folder: Path, name: str, num_samples: int, solvers: list, nfe: list[int], schedules: list,
              log_likelihood: bool, rtol: float, batch_size: int = 1024) -> Path:
    """A quick.yaml-like grid file."""
    raw = {"name": name, "backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}], "solvers": solvers,
           "nfe": nfe, "schedule": schedules, "guidance": {"scale": 1.0}, "seeds": [0],
           "num_samples": num_samples, "batch_size": batch_size, "device": "cpu", "dtype": "float32",
           "metrics": ["trajectory_error", "sliced_wasserstein"] + (["log_likelihood"] if log_likelihood else []),
           "reference": {"rtol": rtol, "atol": rtol}, "save_samples": 64}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def samples_grid(folder: Path, num_samples: int, args: argparse.Namespace) -> Path:
    return grid_file(folder, f"samples{num_samples}", num_samples, ["euler", "heun", "rk4", {"name": "flow-dpm",
                     "params": {"order": 2}}], [5, 10], ["uniform"], args.log_likelihood, args.rtol)


def cells_grid(folder: Path, num_cells: int, args: argparse.Namespace, batch_size: int = 1024) -> Path:
    """Euler and heun at NFE 4 on ``num_cells / 2`` shifted schedules, ``args.cell_samples`` samples each."""
    shifts = [{"name": "shifted", "shift": round(1.0 + 0.01 * i, 4)} for i in range(num_cells // 2)]
    return grid_file(folder, f"cells{num_cells}", args.cell_samples, ["euler", "heun"], [4], shifts,
                     args.log_likelihood, args.rtol, batch_size)


def timed_run(path: Path, results: Path) -> dict[str, Any]:
    """Run the grid file through the engine into ``results``; total and per-phase wall and CPU seconds."""
    phases = Phases()
    wall, cpu = time.perf_counter(), time.process_time()
    with instrumented(phases):
        run_grid(load_grid(path), results, progress=False)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "phase_wall": phases.wall,
            "phase_cpu": phases.cpu}


def profiled_run(path: Path, results: Path, top: int) -> str:
    """The grid run again (``force``: every cell, the reference read from the cache) under cProfile."""
    profile = cProfile.Profile()
    profile.enable()
    run_grid(load_grid(path), results, force=True, progress=False)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)  # drop pstats' header
    return "\n".join(lines[start:])


def slope(sizes: list[int], times: list[float]) -> float:
    """The least-squares slope of log time against log size (nan where a time is zero)."""
    if len(sizes) < 2 or min(times) <= 0:
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def series(name: str, sizes: list[int], make: Callable[[Path, int], Path], folder: Path, top: int,
           log: Callable[[str], None]) -> dict[str, Any]:
    """Time each size, print the table and exponents, profile the largest."""
    runs = []
    for size in sizes:
        path = make(folder, size)
        runs.append(timed_run(path, folder / f"results-{path.stem}"))
        r = runs[-1]
        log(f"  {name}={size}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU; CPU by phase: "
            + ", ".join(f"{p} {r['phase_cpu'][p]:.3f}" for p in PHASES))
    header = f"{name:>8} {'wall':>8} {'cpu':>8} " + " ".join(f"{p:>10}" for p in PHASES)
    lines = ["CPU seconds by phase (wall seconds total beside CPU):", header]
    for size, r in zip(sizes, runs):
        lines.append(f"{size:>8} {r['wall']:>8.2f} {r['cpu']:>8.2f} "
                     + " ".join(f"{r['phase_cpu'][p]:>10.3f}" for p in PHASES))
    exponents = {p: slope(sizes, [r["phase_cpu"][p] for r in runs]) for p in PHASES}
    exponents["cpu"] = slope(sizes, [r["cpu"] for r in runs])
    exponents["wall"] = slope(sizes, [r["wall"] for r in runs])
    lines.append(f"{'exponent':>8} {exponents['wall']:>8.2f} {exponents['cpu']:>8.2f} "
                 + " ".join(f"{exponents[p]:>10.2f}" for p in PHASES))
    largest = runs[-1]
    flagged = [p for p in PHASES if exponents[p] > SUPER_LINEAR
               and largest["phase_cpu"][p] > 0.02 * largest["cpu"]]  # ignore what is negligible at the top
    lines.append("faster than the work (exponent > %.2f and > 2%% of the largest run): %s"
                 % (SUPER_LINEAR, ", ".join(flagged) or "none"))
    log("\n".join(lines))
    profile = profiled_run(make(folder, sizes[-1]), folder / f"results-{make(folder, sizes[-1]).stem}", top)
    log(f"\ncProfile of {name}={sizes[-1]} rerun with --force (reference cached), top {top} by cumulative time:")
    log(profile)
    return {"sizes": sizes, "runs": runs, "exponents": exponents, "flagged": flagged}


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPU cores, torch "
            f"{torch.__version__} with {torch.get_num_threads()} thread(s), OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, Python {platform.python_version()}")


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Both series; what each measured."""
    log(f"$ {' '.join(['python', 'benchmarks/sweep_scaling.py'] + args.argv)}")
    log(f"machine: {machine()}")
    log(f"reference tolerance rtol = atol = {args.rtol:g}; wall time is disturbed by other jobs on the machine, "
        "CPU time (time.process_time) is the figure to read")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "samples" in args.series:
            log(f"\n== samples: 8 cells (euler, heun, rk4, flow-dpm-2 at NFE 5, 10), num_samples {args.samples}")
            out["samples"] = series("samples", args.samples, lambda f, n: samples_grid(f, n, args), folder,
                                    args.top, log)
        if "cells" in args.series:
            log(f"\n== cells: euler and heun at NFE 4 on shifted schedules, {args.cell_samples} samples, "
                f"cells {args.cells}")
            out["cells"] = series("cells", args.cells, lambda f, n: cells_grid(f, n, args), folder, args.top, log)
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute), for a test")
    parser.add_argument("--samples", type=int, nargs="+", help="num_samples of the samples series")
    parser.add_argument("--cells", type=int, nargs="+", help="cell counts of the cells series (even)")
    parser.add_argument("--cell-samples", type=int, default=256, help="num_samples of the cells series")
    parser.add_argument("--rtol", type=float, default=1e-9, help="reference tolerance (quick.yaml: 1e-9)")
    parser.add_argument("--log-likelihood", action="store_true", help="add the log_likelihood metric")
    parser.add_argument("--series", choices=["samples", "cells"], nargs="+", default=["samples", "cells"],
                        help="which series to run (default both)")
    parser.add_argument("--top", type=int, default=25, help="cProfile entries shown")
    parser.add_argument("--out", type=Path, help="also write the output to this file")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    if args.samples is None:
        args.samples = [256, 512, 1024] if args.quick else [1024 * 2 ** k for k in range(7)]
    if args.cells is None:
        args.cells = [4, 8, 16] if args.quick else [8, 32, 128, 512]
    if args.quick:
        args.cell_samples = min(args.cell_samples, 64)
        args.rtol = max(args.rtol, 1e-5)
    return args


def logged(run: Callable[[argparse.Namespace, Callable[[str], None]], Any], args: argparse.Namespace) -> None:
    """``run(args, log)``, each line it logs printed as it comes and, with ``args.out``, written to that file."""
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    run(args, log)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    logged(run, parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
