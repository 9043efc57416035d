"""Command line: ``python -m solverbench {run,list,report}``."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {}


def command(name: str):
    def decorator(fn):
        COMMANDS[name] = fn
        return fn

    return decorator


@command("run")
def _run(parser: argparse.ArgumentParser):
    parser.description = "Sweep a grid file; one row per cell in RESULTS/<grid name>/results.parquet."
    parser.add_argument("grid", help="grid file (YAML), e.g. configs/quick.yaml")
    parser.add_argument("--results", default="results", help="results directory (default: results)")
    parser.add_argument("--force", action="store_true", help="redo cells that are already in the results")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from solverbench.config import load_grid
        from solverbench.runner import run_grid

        grid = load_grid(args.grid)
        table = run_grid(grid, args.results, force=args.force, progress=not args.no_progress)
        print(f"{len(table.frame)} rows in {table.path}")
        return 0

    return run


@command("list")
def _list(parser: argparse.ArgumentParser):
    parser.description = "List the registered solvers, backbones and metrics."
    parser.add_argument("--plugins", nargs="*", default=[], help="plugin files to load first")

    def run(args: argparse.Namespace) -> int:
        from solverbench.registry import BACKBONES, METRICS, SOLVERS, load_plugin_file

        for path in args.plugins:
            load_plugin_file(path)
        for registry in (SOLVERS, BACKBONES, METRICS):
            print(f"{registry.kind}s:")
            for name in registry.names():
                doc = (registry.get(name).__doc__ or "").strip().splitlines()
                print(f"  {name:<22} {doc[0] if doc else ''}")
        return 0

    return run


@command("report")
def _report(parser: argparse.ArgumentParser):
    parser.description = "Render tables and plots from the results directory into reports/."
    parser.add_argument("--results", default="results", help="results directory (default: results)")
    parser.add_argument("--out", default="reports", help="output directory (default: reports)")
    parser.add_argument("--grid", nargs="*", default=None, help="only these grids (default: all)")

    def run(args: argparse.Namespace) -> int:
        from solverbench.report import write_report

        index = write_report(args.results, args.out, grids=args.grid)
        print(f"report written: {index}")
        return 0

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="solverbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = {name: make(sub.add_parser(name)) for name, make in COMMANDS.items()}
    args = parser.parse_args(argv)
    from solverbench.config import GridError
    from solverbench.registry import UnknownNameError
    from solverbench.runner import SweepFailed

    try:
        return handlers[args.command](args)
    except (GridError, UnknownNameError, FileNotFoundError, SweepFailed) as err:
        print(f"solverbench {args.command}: error: {err}", file=sys.stderr)
        return 2 if not isinstance(err, SweepFailed) else 1
