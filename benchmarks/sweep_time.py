"""Where a sweep's wall time goes: start-up, the reference solve, the noise, label and data draws,
sampling, the FLOP count, each metric, the results store and the rest, for configs/quick.yaml and
for sweep_scaling.py's samples grids (8 cells on gmm64, trajectory error and sliced Wasserstein);
with ``--before TREE`` the same runs of another checkout of solverbench beside them.

    OMP_NUM_THREADS=1 python benchmarks/sweep_time.py                                   # quick.yaml, 16k, 64k
    OMP_NUM_THREADS=1 python benchmarks/sweep_time.py --samples 16384 --before /tmp/before --out FILE.txt
    git worktree add /tmp/before COMMIT                                                 # a checkout to compare

Every run is a fresh Python process (``--measure``; with ``--before`` the other checkout first on
PYTHONPATH) writing into a fresh results folder, its cache (RESULTS/.cache) included: the reference
solve is part of the run, as in a first ``solverbench run``.  The phases are exclusive: a phase called
inside another is charged to itself alone (the reference solve that the trajectory error asks for is
"reference solve", not the metric's; the data draw a distance asks for is "draws").  "start-up" is
the process's imports before the run; "rest" is what no phase names (grid loading, solver
preparation, the engine's loop).  Wall time is the figure; CPU time (one thread) is printed beside
the totals: where the two differ, the machine was busy.
"""
from __future__ import annotations

import time

START = time.perf_counter(), time.process_time()  # before the imports: start-up is part of a run

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "quick.yaml"
# (phase, label) in the order printed; the metrics' own phases ("metric NAME") come after "metrics"
PHASES = [("startup", "start-up (imports)"), ("reference", "reference solve"), ("draws", "noise, label, data draws"),
          ("sampling", "sampling"), ("flops", "FLOP count"), ("metrics", "metrics"), ("store", "results store"),
          ("rest", "rest")]


class TimedMetrics:
    """The metric registry as the sweep reads it, each metric charged to its own phase ``metric NAME``."""

    def __init__(self, registry: Any, phases: Any):
        self.registry, self.phases = registry, phases

    def get(self, name: str) -> Callable:
        return self.phases.timed(f"metric {name}", self.registry.get(name))

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.registry, attribute)


def grid_path(workload: str, folder: Path) -> Path:
    """``quick`` (configs/quick.yaml) or ``samples:N`` (sweep_scaling.py's samples grid at N samples)."""
    if workload == "quick":
        return QUICK
    sweep_scaling = load_sweep_scaling()
    args = argparse.Namespace(log_likelihood=False, rtol=1e-9)
    return sweep_scaling.samples_grid(folder, int(workload.split(":")[1]), args)


def load_sweep_scaling() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sweep_scaling

    return sweep_scaling


def measure(workload: str) -> dict[str, Any]:
    """One run of the workload in this process, from its start: wall and CPU seconds, in all and by phase."""
    import solverbench.studies.sweep as sweep_module
    from solverbench.engine import run_grid
    from solverbench.grid import load_grid

    sweep_scaling = load_sweep_scaling()
    with tempfile.TemporaryDirectory() as tmp:
        path = grid_path(workload, Path(tmp))
        phases = sweep_scaling.Phases(tuple(name for name, _ in PHASES))
        phases.wall["startup"] = phases.mark[0] - START[0]
        phases.cpu["startup"] = phases.mark[1] - START[1]
        registry, sweep_module.METRICS = sweep_module.METRICS, TimedMetrics(sweep_module.METRICS, phases)
        try:
            with sweep_scaling.instrumented(phases):
                table = run_grid(load_grid(path), Path(tmp) / "results", progress=False)
        finally:
            sweep_module.METRICS = registry
        rows = table.refresh()
    return {"workload": workload, "wall": time.perf_counter() - START[0], "cpu": time.process_time() - START[1],
            "phase_wall": phases.wall, "phase_cpu": phases.cpu, "cells": len(rows),
            "ok": int((rows["status"] == "ok").sum()), "solverbench": sweep_module.__file__}


def run_child(workload: str, tree: Optional[Path]) -> dict[str, Any]:
    """``measure(workload)`` in a fresh process; ``tree``: the checkout whose solverbench it imports."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, __file__, "--measure", workload], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {workload} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(workload: str) -> str:
    if workload == "quick":
        return "configs/quick.yaml"
    return f"samples grid of sweep_scaling.py, 8 cells, {int(workload.split(':')[1])} samples"


def table(workload: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    """Wall seconds by phase, one column per checkout, and each total's CPU seconds."""
    names = list(runs)
    metric_phases = sorted({p for r in runs.values() for p in r["phase_wall"] if p.startswith("metric ")})
    first = next(iter(runs.values()))
    lines = [f"{describe(workload)}: {first['cells']} cells, wall seconds by phase",
             f"  {'':<34}" + "".join(f"{name:>12}" for name in names)]

    def row(label: str, values: list[float], fmt: str = "{:>12.2f}") -> None:
        lines.append(f"  {label:<34}" + "".join(fmt.format(v) for v in values))

    for phase, label in PHASES:
        if phase == "metrics":
            totals = [sum(r["phase_wall"].get(p, 0.0) for p in ["metrics", *metric_phases]) for r in runs.values()]
            row("metrics, in all", totals)
            for p in metric_phases:
                row(f"  {p[len('metric '):]}", [r["phase_wall"].get(p, 0.0) for r in runs.values()])
            row("  (measure's own)", [r["phase_wall"].get("metrics", 0.0) for r in runs.values()])
            continue
        row(label, [r["phase_wall"].get(phase, 0.0) for r in runs.values()])
    row("total wall", [r["wall"] for r in runs.values()])
    row("total CPU", [r["cpu"] for r in runs.values()])
    row("metrics' share of the wall time", [100 * metrics_wall(r) / r["wall"] for r in runs.values()],
        "{:>11.1f}%")
    row("cells ok", [r["ok"] for r in runs.values()], "{:>12d}")
    return lines


def metrics_wall(run: dict[str, Any]) -> float:
    return sum(v for p, v in run["phase_wall"].items() if p == "metrics" or p.startswith("metric "))


def machine() -> str:
    import platform

    import torch

    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"Python {platform.python_version()}")


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, dict[str, dict[str, Any]]]:
    """Every workload, in each checkout; the tables printed as they come."""
    log(f"$ {shlex.join(['python', 'benchmarks/sweep_time.py'] + args.argv)}")
    log(f"machine: {machine()}")
    if args.before:
        log(f"before: the checkout in {args.before}" + (f", {args.before_label}" if args.before_label else ""))
    trees = {**({"before": args.before} if args.before else {}), "now": None}
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    for workload in args.workloads:
        measured[workload] = {name: run_child(workload, tree) for name, tree in trees.items()}
        log("")
        log("\n".join(table(workload, measured[workload])))
    return measured


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="*", default=[16384, 65536],
                        help="num_samples of sweep_scaling.py's samples grid to time (default 16384 65536)")
    parser.add_argument("--no-quick", action="store_true", help="leave out configs/quick.yaml")
    parser.add_argument("--before", type=Path, help="another checkout (its root folder) to time beside this one")
    parser.add_argument("--before-label", help="what the other checkout is, for the output's header")
    parser.add_argument("--out", type=Path, help="also write the output to this file")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one run in this process, printed as JSON
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    args.workloads = ([] if args.no_quick else ["quick"]) + [f"samples:{n}" for n in args.samples]
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
    else:
        load_sweep_scaling().logged(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
