"""Regenerate the README's figures: docs/convergence.png, docs/lte_order.png, docs/digits_samples.png,
docs/inversion_digits.png, docs/inversion_edits.png, docs/inversion_edits_partial.png and docs/costs_pareto.png.

    OMP_NUM_THREADS=1 python benchmarks/docs_figures.py [--results results] [--reports reports] [--only NAME ...]

Runs configs/quick.yaml, configs/lte.yaml, configs/digits.yaml, configs/inversion.yaml,
configs/digits_edits.yaml and configs/costs.yaml (cells already in the results are reused, as with
``solverbench run``; digits.yaml takes about 18 minutes from scratch, inversion.yaml about 30),
renders the report of those grids, and copies its trajectory-error convergence plot, its LTE order
curves, the digits sample grid, the digits inversion errors (no guidance), the digits edits (CFG 2,
NFE 5), what edits from partial inversions keep and change against t0 (digits_edits.yaml) and the
digits trajectory error against NFE, wall time and FLOPs (costs.yaml, whose wall times are one
thread's: run it alone) into docs/.  ``--only convergence.png`` remakes that figure alone (and runs
only the grid it needs).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from solverbench.grid import load_grid
from solverbench.report import write_report
from solverbench.engine import run_grid

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {  # docs/ name -> (grid file, the report's figure, relative to its grid folder)
    "convergence.png": ("configs/quick.yaml", "convergence_trajectory_error.png"),
    "lte_order.png": ("configs/lte.yaml", "lte_order.png"),
    "digits_samples.png": ("configs/digits.yaml", "samples.png"),
    "inversion_digits.png": ("configs/inversion.yaml", "01-digits-uniform-time-grid-no-guidance/inversion_errors.png"),
    "inversion_edits.png": ("configs/inversion.yaml", "02-digits-uniform-time-grid-CFG-2-on-t-in-0-1/edits_nfe5.png"),
    "inversion_edits_partial.png": ("configs/digits_edits.yaml", "edit_tradeoff.png"),
    "costs_pareto.png": ("configs/costs.yaml", "pareto_trajectory_error.png"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "results"), help="results directory (default: results/)")
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="report directory (default: reports/)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), metavar="NAME",
                        help=f"only these figures (default: all of {', '.join(FIGURES)})")
    args = parser.parse_args(argv)
    figures = {name: FIGURES[name] for name in args.only or FIGURES}
    grids = {}
    for grid_file, _ in figures.values():
        grid = load_grid(ROOT / grid_file)
        run_grid(grid, args.results)
        grids[grid_file] = grid.name
    write_report(args.results, args.reports, grids=list(grids.values()))
    for name, (grid_file, figure) in figures.items():
        source = Path(args.reports) / grids[grid_file] / figure
        if not source.is_file():
            print(f"docs_figures: {source} was not rendered (does {grid_file} hold more than one setting?)",
                  file=sys.stderr)
            return 1
        shutil.copyfile(source, ROOT / "docs" / name)
        print(f"docs/{name} <- {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
