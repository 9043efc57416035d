"""Command line: ``python -m solverbench COMMAND``, one of

- ``run GRID.yaml``: sweep a grid file, one results row per cell (resumable);
- ``report``: tables and plots from the results into reports/;
- ``list``: the registered solvers, backbones and metrics, with their parameters;
- ``train-backbone NAME``: train a backbone that supports it and write its checkpoint;
- ``train-sidenet NAME``: train the BA-solver's SideNet for a backbone and write its checkpoint.

``python -m solverbench COMMAND --help`` lists a command's options.  A bad input ends the
command with one line ``solverbench COMMAND: error: ...`` (exit status 2;
``SOLVERBENCH_TRACEBACK=1`` shows the traceback instead); Ctrl-C with one line
``solverbench COMMAND: interrupted...`` (exit status 130).
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import textwrap
from typing import Any, Callable

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {}
COMMAND_HELP: dict[str, str] = {}  # one line per command, for the top-level --help


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (no usage dump) pointing at ``--help``; exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def command(name: str, help: str):
    def decorator(fn):
        COMMANDS[name] = fn
        COMMAND_HELP[name] = help
        return fn

    return decorator


@command("run", "sweep a grid file; one results row per cell (resumable)")
def _run(parser: argparse.ArgumentParser):
    parser.description = "Sweep a grid file; one row per cell in RESULTS/<grid name>/results.parquet."
    parser.add_argument("grid", help="grid file (YAML), e.g. configs/quick.yaml")
    parser.add_argument("--results", default="results", help="results directory (default: results)")
    parser.add_argument("--force", action="store_true",
                        help="redo cells that are already in the results, and take over a results folder that "
                             "another grid file of the same name wrote")
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


@command("list", "the registered solvers, backbones and metrics, with their parameters")
def _list(parser: argparse.ArgumentParser):
    parser.description = ("List the registered solvers, backbones and metrics: each one's description and "
                          "parameters with their defaults (for a metric, the metric_options it reads).")
    parser.add_argument("--plugins", nargs="*", default=[], help="plugin files to load first")

    def run(args: argparse.Namespace) -> int:
        from solverbench.registry import BACKBONES, METRICS, SOLVERS, load_plugin_file

        for path in args.plugins:
            load_plugin_file(path)
        shown_options: dict[str, str] = {}  # an options block already printed -> the metric it was printed for
        for registry in (SOLVERS, BACKBONES, METRICS):
            print(f"{registry.kind}s:")
            for name in registry.names():
                factory = registry.get(name)
                print(f"  {name:<22} {first_line(factory.__doc__)}")
                if registry is METRICS:
                    lines = metric_options(factory)
                    key = "\n".join(lines)
                    if len(lines) > 1 and key in shown_options:
                        lines = [f"metric options: those of {shown_options[key]}"]
                    shown_options.setdefault(key, name)
                else:
                    lines = ["params: " + describe_parameters(factory)]
                for i, text in enumerate(lines):
                    indent = " " * (25 if i == 0 else 27)
                    for line in textwrap.wrap(text, width=110, initial_indent=indent, subsequent_indent=indent + "  "):
                        print(line)
        return 0

    return run


def first_line(doc: Any) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else "(no description)"


def describe_parameters(factory: Any) -> str:
    """``name=default, ...`` of a registered class's constructor (or a function's parameters).

    A class's ``**kwargs`` are followed up its base classes' constructors; where they end
    in none, the class's ``describe_settings()`` says what they take, if it has one.
    """
    params: dict[str, str] = {}
    rest = None  # the name of a **kwargs nobody consumed
    if inspect.isclass(factory):
        inits = [cls.__dict__["__init__"] for cls in factory.__mro__
                 if "__init__" in cls.__dict__ and cls is not object and not cls.__module__.startswith("torch")]
        skip = 1  # self
    else:
        inits, skip = [factory], 0
    for init in inits:
        try:
            signature = list(inspect.signature(init).parameters.values())[skip:]
        except (TypeError, ValueError):
            break
        rest = None
        for p in signature:
            if p.kind is p.VAR_KEYWORD:
                rest = p.name
            elif p.kind is not p.VAR_POSITIONAL and p.name not in params:
                params[p.name] = p.name if p.default is p.empty else f"{p.name}={p.default!r}"
        if rest is None:
            break
    described = getattr(factory, "describe_settings", None)
    extra = [described() if callable(described) else f"**{rest}"] if rest else []
    return ", ".join(list(params.values()) + extra) or "none"


def metric_options(fn: Any) -> list[str]:
    """The ``metric_options`` a metric reads: its ``options`` attribute, names mapped to what they
    mean (one line each), or a plain sequence of names."""
    options = getattr(fn, "options", None)
    if not options:
        return ["metric options: none"]
    if isinstance(options, dict):
        return ["metric options:"] + [f"{k}: {' '.join(str(v).split())}" for k, v in options.items()]
    return ["metric options: " + ", ".join(map(str, options))]


@command("report", "tables and plots from the results directory into reports/")
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


@command("train-backbone", "train a backbone that supports it (digits, toy2d) and write its checkpoint")
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
        options = ArgumentParser(prog=f"solverbench train-backbone {args.backbone}", allow_abbrev=False,
                                 description=first_line(cls.__doc__))
        types = typing.get_type_hints(config_cls)
        fields = dataclasses.fields(config_cls)
        for f in fields:
            check = f.metadata.get("check")
            must = f"; {check.describe}" if getattr(check, "describe", None) else ""
            options.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=types[f.name], default=f.default,
                                 choices=f.metadata.get("choices"),
                                 help=f"{f.metadata.get('help', '')} (default: {f.default}{must})")
        add_checkpoint_options(options, "checkpoint file to write (default: RESULTS/.cache/backbones/"
                                        "NAME-<hash of the training options>.pt, reused if it exists)")
        options.add_argument("--force", action="store_true", help="train even if the cached checkpoint exists")
        opts = options.parse_args(args.options)
        try:  # the config checks its fields: a meaningless option fails here, before any work
            config = config_cls(**{f.name: getattr(opts, f.name) for f in fields})
        except (TypeError, ValueError) as err:
            print(f"solverbench train-backbone: error: {one_line(err)}", file=sys.stderr)
            return 2
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


@command("train-sidenet", "train the BA-solver's SideNet for a backbone and write its checkpoint")
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
        options = ArgumentParser(prog=f"solverbench train-sidenet {args.backbone}", allow_abbrev=False)
        options.add_argument("--backbone-params", default="{}", help="the backbone's parameters, a YAML mapping, "
                                                                     "e.g. '{preset: gmm64}'")
        options.add_argument("--plugins", nargs="*", default=[], help="plugin files to load first")
        add_checkpoint_options(options, "checkpoint file to write (default: the runner's cache entry under "
                                        "RESULTS/.cache/sidenet/, which grids with these sidenet: settings reuse)")
        options.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
        trainer.add_training_options(options)
        opts = options.parse_args(args.options)
        try:
            params = yaml.safe_load(opts.backbone_params) or {}
        except yaml.YAMLError as err:
            print(f"solverbench train-sidenet: error: --backbone-params is not YAML: "
                  f"{' '.join(str(err).split())}", file=sys.stderr)
            return 2
        if not isinstance(params, dict):
            print(f"solverbench train-sidenet: error: --backbone-params must be a mapping, got {params!r}",
                  file=sys.stderr)
            return 2
        try:
            settings = trainer.settings_from_options(opts)  # checked before the backbone is even built
            for path in opts.plugins:
                load_plugin_file(path)
            backbone = resolve_backbone(args.backbone, **params)
            print(trainer.train_to_file(backbone, settings, opts.out, cache_dir=f"{opts.results}/.cache",
                                        device=opts.device, progress=not opts.no_progress))
        except (TypeError, ValueError) as err:  # bad backbone parameters or SideNet settings
            print(f"solverbench train-sidenet: error: {one_line(err)}", file=sys.stderr)
            return 2
        return 0

    return run

def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="solverbench", description="Benchmark ODE solvers of flow-matching models.",
        epilog="`python -m solverbench COMMAND --help` lists a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    handlers = {name: make(sub.add_parser(name, help=COMMAND_HELP[name], description=COMMAND_HELP[name]))
                for name, make in COMMANDS.items()}
    args = parser.parse_args(argv)
    try:
        from solverbench.config import GridError
        from solverbench.registry import UnknownNameError
        from solverbench.runner import SweepFailed

        try:
            return handlers[args.command](args)
        except SweepFailed as err:  # cells failed; the rest of the sweep ran
            print(f"solverbench {args.command}: error: {err}", file=sys.stderr)
            return 1
        except (GridError, ValueError, UnknownNameError, FileNotFoundError, IsADirectoryError,
                NotADirectoryError, PermissionError) as err:
            # a bad grid, name, parameter, option, checkpoint or plugin file, a missing file: one line
            # (GridError, CheckpointError and PluginError are ValueErrors); SOLVERBENCH_TRACEBACK=1 shows where.
            if os.environ.get("SOLVERBENCH_TRACEBACK"):
                raise
            print(f"solverbench {args.command}: error: {one_line(err)}", file=sys.stderr)
            return 2
    except KeyboardInterrupt as interrupt:
        message = interrupt.args[0] if interrupt.args and isinstance(interrupt.args[0], str) else ""
        print(f"solverbench {args.command}: {one_line(message) or 'interrupted'}", file=sys.stderr)
        return 130


def one_line(err: Any) -> str:
    """An error's message on one line."""
    return " ".join(str(err).split())
