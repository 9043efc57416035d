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
        current, stored = len(table.current()), len(table.frame)
        print(f"{current} rows in {table.path}" + (f" ({stored - current} more of cells that the grid no longer "
                                                    "has, kept as a cache and left out of reports)"
                                                    if stored > current else ""))
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


def add_checkpoint_options(options: argparse.ArgumentParser, out_help: str) -> None:
    """--out, --results and --no-progress, shared by the commands that train and write a checkpoint."""
    options.add_argument("--out", help=out_help)
    options.add_argument("--results", default="results", help="results directory (default: results)")
    options.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("train-backbone")
def _train_backbone(parser: argparse.ArgumentParser):
    parser.description = (
        "Train a backbone that supports it (its registered class has a TrainingConfig dataclass and a "
        "train_backbone(config, out, progress) classmethod) and write its checkpoint. The options after "
        "the name are the fields of its TrainingConfig: `train-backbone NAME --help` lists them."
    )
    parser.add_argument("backbone", help="a registered backbone name, e.g. digits or toy2d")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the backbone's training options")

    def run(args: argparse.Namespace) -> int:
        import dataclasses
        import time
        import typing
        from pathlib import Path

        from solverbench.hashing import spec_hash
        from solverbench.registry import BACKBONES

        cls = BACKBONES.get(args.backbone)
        config_cls = getattr(cls, "TrainingConfig", None)
        if not (dataclasses.is_dataclass(config_cls) and callable(getattr(cls, "train_backbone", None))):
            print(f"solverbench train-backbone: error: backbone {args.backbone!r} cannot be trained by solverbench "
                  "(its class has no TrainingConfig dataclass and train_backbone classmethod)", file=sys.stderr)
            return 2
        options = argparse.ArgumentParser(prog=f"solverbench train-backbone {args.backbone}", allow_abbrev=False,
                                          description=(cls.__doc__ or "").strip().splitlines()[0])
        types = typing.get_type_hints(config_cls)
        fields = dataclasses.fields(config_cls)
        for f in fields:
            options.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=types[f.name], default=f.default,
                                 choices=f.metadata.get("choices"),
                                 help=f"{f.metadata.get('help', '')} (default: {f.default})")
        add_checkpoint_options(options, "checkpoint file to write (default: RESULTS/.cache/backbones/"
                                        "NAME-<hash of the training options>.pt, reused if it exists)")
        options.add_argument("--force", action="store_true", help="train even if the cached checkpoint exists")
        opts = options.parse_args(args.options)
        config = config_cls(**{f.name: getattr(opts, f.name) for f in fields})
        cache_name = f"{args.backbone}-{spec_hash(dataclasses.asdict(config))}.pt"
        out = Path(opts.out) if opts.out else Path(opts.results) / ".cache" / "backbones" / cache_name
        if out.exists() and not (opts.out or opts.force):
            print(f"{out} exists (trained with these options); --force trains again")
        else:
            start = time.perf_counter()
            out = cls.train_backbone(config, out, progress=not opts.no_progress)
            print(f"wrote {out} in {time.perf_counter() - start:.0f} s")
        print(f"use it with: backbones: [{{name: {args.backbone}, params: {{checkpoint: {out}}}}}]")
        return 0

    return run


@command("train-sidenet")
def _train_sidenet(parser: argparse.ArgumentParser):
    parser.description = (
        "Train the BA-solver's SideNet for a registered backbone (plugins included) and write its checkpoint. "
        "The options after the name are the SideNet settings (the keys of a grid's sidenet: mapping): "
        "`train-sidenet NAME --help` lists them."
    )
    parser.add_argument("backbone", help="a registered backbone name, e.g. gmm")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="backbone parameters and SideNet settings")

    def run(args: argparse.Namespace) -> int:
        import yaml

        from solverbench.backbone import resolve_backbone
        from solverbench.registry import SOLVERS, load_plugin_file

        trainer = SOLVERS.get("ba")  # the BA-solver owns its training; found through the registry
        options = argparse.ArgumentParser(prog=f"solverbench train-sidenet {args.backbone}", allow_abbrev=False)
        options.add_argument("--backbone-params", default="{}", help="the backbone's parameters, a YAML mapping, "
                                                                     "e.g. '{preset: gmm64}'")
        options.add_argument("--plugins", nargs="*", default=[], help="plugin files to load first")
        add_checkpoint_options(options, "checkpoint file to write (default: the runner's cache entry under "
                                        "RESULTS/.cache/sidenet/, which grids with these sidenet: settings reuse)")
        options.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
        trainer.add_training_options(options)
        opts = options.parse_args(args.options)
        for path in opts.plugins:
            load_plugin_file(path)
        params = yaml.safe_load(opts.backbone_params) or {}
        if not isinstance(params, dict):
            print(f"solverbench train-sidenet: error: --backbone-params must be a mapping, got {params!r}",
                  file=sys.stderr)
            return 2
        try:
            backbone = resolve_backbone(args.backbone, **params)
            print(trainer.train_to_file(backbone, trainer.settings_from_options(opts), opts.out,
                                        cache_dir=f"{opts.results}/.cache", device=opts.device,
                                        progress=not opts.no_progress))
        except (TypeError, ValueError) as err:  # bad backbone parameters or SideNet settings
            print(f"solverbench train-sidenet: error: {err}", file=sys.stderr)
            return 2
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
