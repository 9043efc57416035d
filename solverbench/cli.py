"""Command line: ``python -m solverbench [--plugin FILE ...] COMMAND``, the harness's commands

- ``run GRID.yaml``: run a grid file (any study kind), one results row per cell (resumable); with
  ``--launcher slurm`` its workers are submitted as a Slurm job array;
- ``status GRID.yaml``: how far a grid is (cells done, running, failed, left), from its table and claims;
- ``report``: tables and plots from the results into reports/;
- ``list [NAME ...] [--all]``: the registered solvers, backbones, metrics, study kinds and learned
  schedules, with their parameters (a solver's everyday settings; with ``--all`` every one);
- ``compare BEFORE AFTER``: whether two results folders hold the same numbers, cell by cell;
- ``train-backbone NAME``: train a backbone that supports it and write its checkpoint;
- ``reference-batch FOLDER --out OUT.npz``: a folder of images as an ADM reference batch for the image metrics;

and those of plugins: a package's ``solverbench.commands`` entry points (pyproject.toml; the
BA-solver's training command comes from ``solvers/ba``), or a plugin file's ``@command(name,
help)`` (``--plugin FILE`` loads it first).

``python -m solverbench COMMAND --help`` lists a command's options.  This module and the
modules of the commands' entry points import no torch: help is immediate, and each command
imports what it uses when it runs.  A bad input ends the command with one line
``solverbench COMMAND: error: ...`` (exit status 2, of every rank under torchrun, rank 0
printing the line; ``SOLVERBENCH_TRACEBACK=1`` shows the traceback instead); Ctrl-C with one
line ``solverbench COMMAND: interrupted...`` (exit status 130).
"""
from __future__ import annotations

import argparse
import difflib
import inspect
import os
import sys
import textwrap
from typing import Any, Callable, Optional

from solverbench.registry import COMMANDS, importing, load_plugin_file

Handler = Callable[[argparse.Namespace], int]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (no usage dump) pointing at ``--help``; exit status 2."""

    def error(self, message: str):
        say_error(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)")
        self.exit(2)


def command(name: str, help: str) -> Callable[[Callable[[argparse.ArgumentParser], Handler]], Any]:
    """Register a command: ``fn(parser)`` adds its options to ``parser`` and returns the function that
    runs it (``args -> exit status``); ``help`` is its line in ``solverbench --help``."""
    def decorator(fn: Callable[[argparse.ArgumentParser], Handler]):
        fn.help = help
        return COMMANDS.register(name)(fn)

    return decorator


@command("run", "run a grid file (a sweep, the LTE study, ...); one results row per cell (resumable)")
def _run(parser: argparse.ArgumentParser):
    parser.description = ("Run a grid file through the study its kind: names (a sweep by default); one row per "
                          "cell in RESULTS/<grid name>/results.parquet. Progress goes to stderr: a bar on a "
                          "terminal, else one line per finished cell ([12/75] cell LABEL: ok, 1.3 s); "
                          "--no-progress silences both.")
    parser.add_argument("grid", help="grid file (YAML), e.g. configs/quick.yaml")
    parser.add_argument("--results", default="results", help="results directory (default: results)")
    parser.add_argument("--force", action="store_true",
                        help="redo cells that are already in the results, and take over a results folder that "
                             "another grid file of the same name wrote; a redone cell that now fails or raises "
                             "keeps its earlier ok row (the summary names it; exit status 1)")
    parser.add_argument("--replace-with-failures", action="store_true",
                        help="with --force: record a redone cell's failure (failed or error) over its earlier ok "
                             "row instead of keeping that row")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr: by default a bar where stderr is a terminal, and one line per "
                             "finished cell where it is not (a log file, a pipe)")
    parser.add_argument("--export-npz", action="store_true",
                        help="also write every cell's samples as an ADM evaluation .npz (RESULTS/<grid name>/npz/"
                             "<cell id>.npz), as the grid's export: {npz: true} does; cell ids stay the same")
    parser.add_argument("--check", action="store_true",
                        help="read and check the grid and its results folder, say how many cells are done and how "
                             "many would run, and run nothing (exit status 0, or 2 with the error's one line)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="run the grid by N worker processes on this machine, which share its cells (each "
                             "cell run once, its row as one process writes it): one GPU each where the grid's "
                             "device is cuda, else the CPU threads split between them; one progress bar and "
                             "one summary. Not under torchrun, nor with --force. With --launcher: the number of "
                             "workers submitted")
    add_launcher_options(parser)

    def run(args: argparse.Namespace) -> int:
        from solverbench import distributed
        from solverbench.engine import run_grid
        from solverbench.engine.check import check_grid
        from solverbench.errors import GridError
        from solverbench.grid import load_grid
        from solverbench.registry import STUDIES

        refuse_launcher_options(args)
        if args.workers is not None and args.launcher is None:
            refuse_workers(args)
        if args.launcher == "slurm":  # the grid runs on Slurm's nodes: its device need not be available here
            grid = load_grid(args.grid, here=False)
        else:
            grid = distributed.all_or_none(lambda: load_grid(args.grid))  # under torchrun: every rank, or none
        ranks = distributed.init_from_environment(grid.device) if distributed.launched_by_torchrun() else \
            distributed.world()
        if args.export_npz:
            with_npz_export = getattr(STUDIES.get(grid.kind), "with_npz_export", None)
            if with_npz_export is None:
                raise GridError(f"--export-npz: a grid of kind {grid.kind} has no samples to export")
            grid = with_npz_export(grid)
        if args.launcher is not None:
            from solverbench.engine.launch import launch

            table = launch(grid, args.grid, args.results, launch_options(args), progress=not args.no_progress,
                           export_npz=args.export_npz, plugins=args.plugin, check=args.check)
            if table is None:  # submitted without waiting, or checked
                return 0
            print(f"{len(table.current())} rows in {table.path}")
            return 0
        try:
            if args.check:  # the grid and its results folder checked; nothing run or written
                summary = check_grid(grid, args.results, force=args.force, workers=args.workers)
                if ranks.main:
                    print(summary)
                return 0
            if args.workers is not None:
                from solverbench.engine.workers import run_workers

                table = run_workers(grid, args.grid, args.results, args.workers, progress=not args.no_progress,
                                    export_npz=args.export_npz, plugins=args.plugin)
            else:
                    table = run_grid(grid, args.results, force=args.force, progress=not args.no_progress,
                                 replace_with_failures=args.replace_with_failures)
        finally:
            distributed.close()
        if not ranks.main:
            return 0
        current, stored = len(table.current()), len(table.frame)
        print(f"{current} rows in {table.path}" + (f" ({stored - current} more of cells that the grid no longer "
                                                    "has, kept as a cache and left out of reports)"
                                                    if stored > current else ""))
        return 0

    return run


LAUNCHER_OPTIONS = ("gpus_per_worker", "partition", "time_limit", "account", "slurm_param", "wait", "resubmit",
                    "shared_results")


def add_launcher_options(parser: argparse.ArgumentParser) -> None:
    """``run``'s options of ``--launcher`` (a grid's launcher: section gives the same; the command line wins)."""
    group = parser.add_argument_group("submitting the grid's workers (the grid's launcher: section gives the same "
                                      "settings; the command line wins)")
    group.add_argument("--launcher", choices=("slurm", "local"), default=None,
                       help="slurm: submit --workers N workers as a Slurm job array (submitit), each running the grid "
                            "into the shared results folder and taking cells by claim; local: the same path on this "
                            "machine (submitit's local executor), for trying a grid")
    group.add_argument("--gpus-per-worker", type=int, default=None, metavar="G",
                       help="GPUs of each worker (default: 1 for device cuda, none for cpu); above 1, each cell runs "
                            "under torchrun over the worker's G GPUs")
    group.add_argument("--partition", default=None, metavar="P", help="the Slurm partition")
    group.add_argument("--time-limit", type=int, default=None, metavar="MIN",
                       help="each worker's time limit in minutes (a worker stopped by it is requeued)")
    group.add_argument("--account", default=None, metavar="A", help="the Slurm account")
    group.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                       help="any other parameter of submitit's Slurm executor (repeat for more), e.g. qos=high, "
                            "mem=64G, constraint=a100, cpus_per_task=8")
    group.add_argument("--wait", action="store_true",
                       help="follow the workers: one progress bar over the grid, a line per failed job with its log, "
                            "then the summary (default: print the job ids and how to follow them)")
    group.add_argument("--resubmit", action="store_true",
                       help="send workers for the cells left (neither done nor running); refused where none is left")
    group.add_argument("--shared-results", action="store_true",
                       help="take the results folder as shared by the cluster's nodes whatever its filesystem (by "
                            "default one on a filesystem of this machine's own, ext4, xfs, tmpfs, overlay, ..., is "
                            "refused)")


def refuse_launcher_options(args: argparse.Namespace) -> None:
    """Refuse (ValueError, one line) an option of ``--launcher`` without it, and ``--launcher`` under torchrun or with
    ``--force``."""
    from solverbench import distributed

    if args.launcher is None:
        given = [name for name in LAUNCHER_OPTIONS if getattr(args, name) not in (None, False, [])]
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} is an option of --launcher: add --launcher slurm (or "
                             "local)")
        return
    if distributed.launched_by_torchrun():
        raise ValueError("--launcher submits its own workers (each runs torchrun itself where it has several GPUs: "
                         "--gpus-per-worker); run it without torchrun")
    if args.force:
        raise ValueError("--launcher with --force: each worker would redo every cell; run --force without --launcher")


def launch_options(args: argparse.Namespace) -> Any:
    """The command line's ``--launcher`` options."""
    from solverbench.engine.launch import LaunchOptions, slurm_params

    return LaunchOptions(args.launcher, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                         partition=args.partition, time_limit=args.time_limit, account=args.account,
                         slurm_params=slurm_params(args.slurm_param), shared_results=args.shared_results,
                         wait=args.wait, resubmit=args.resubmit)


def refuse_workers(args: argparse.Namespace) -> None:
    """Refuse (ValueError, one line) ``--workers`` below 1, under torchrun, or with ``--force`` (each worker
    would redo every cell)."""
    from solverbench import distributed

    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: give at least 1 worker")
    if distributed.launched_by_torchrun():
        raise ValueError("--workers starts its own processes: run it without torchrun (torchrun splits each "
                         "cell's batches; --workers splits the grid's cells)")
    if args.force:
        raise ValueError("--workers with --force: each worker would redo every cell; run --force without "
                         "--workers")


@command("status", "how far a grid is: its cells done, running, failed and left, per solver, from the results "
                   "table and the cells' claims")
def _status(parser: argparse.ArgumentParser):
    parser.description = ("Read a grid's results table and its cells' claims and print, per solver (and backbone where "
                          "the grid has several), how many cells are done (ok), running (claimed by a live worker), "
                          "failed (failed or raised) and left, and a total line; runs nothing, writes nothing "
                          "(exit status 0).")
    parser.add_argument("grid", help="grid file (YAML), e.g. configs/quick.yaml")
    parser.add_argument("--results", default="results", help="results directory (default: results)")

    def run(args: argparse.Namespace) -> int:
        from solverbench.engine.status import grid_status
        from solverbench.grid import load_grid

        print(grid_status(load_grid(args.grid, here=False), args.results))
        return 0

    return run


@command("list", "the registered solvers, backbones, metrics, study kinds and learned schedules, with their "
                 "parameters")
def _list(parser: argparse.ArgumentParser):
    parser.description = ("List the registered solvers, backbones, metrics, study kinds and learned schedules: each "
                          "one's description and parameters with their defaults (for a solver, its everyday "
                          "settings, and with --all every one; for a metric, the metric_options it reads; for a "
                          "study kind, the grid section of its settings; for a learned schedule, its settings). "
                          "A text already shown for an earlier entry is named instead of repeated "
                          "(settings: those of NAME).")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="only the entries of these names, of any registry (default: every entry), e.g. "
                             "euler gmm")
    parser.add_argument("--all", action="store_true",
                        help="every setting of a solver, with its meaning, not only the everyday ones")
    parser.add_argument("--plugins", nargs="*", default=[], metavar="FILE",
                        help="plugin files to load first (after the names: list NAME --plugins FILE)")

    def run(args: argparse.Namespace) -> int:
        from solverbench.registry import BACKBONES, METRICS, SCHEDULES, SOLVERS, STUDIES

        for path in args.plugins:
            load_plugin_file(path)
        registries = (SOLVERS, BACKBONES, METRICS, STUDIES, SCHEDULES)
        check_listed_names(args.names, registries)
        shown: dict[str, str] = {}  # a block of text already printed -> the entry it was printed for
        abridged = []  # the entries with more settings than those shown
        for registry in registries:
            names = [name for name in registry.names() if not args.names or name in args.names]
            if args.names and not names:
                continue
            print(f"{registry.kind}s:")
            for name in names:
                factory = registry.get(name)
                print(f"  {name:<22} {first_line(factory.__doc__)}")
                for i, text in enumerate(entry_lines(registry, name, factory, args.all, shown)):
                    print_wrapped(text, indent=25 if i == 0 else 27)
                if not args.all and settings_text(factory, full=False) != settings_text(factory, full=True):
                    abridged.append(name)
        if abridged:
            print(f"every setting of {', '.join(abridged)}: solverbench list NAME --all")
        return 0

    return run


def check_listed_names(names: list[str], registries: tuple[Any, ...]) -> None:
    """Refuse (UnknownNameError, one line with the closest registered name) a name no registry holds."""
    from solverbench.registry import UnknownNameError

    known = sorted({name for registry in registries for name in registry.names()})
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else "; solverbench list shows every registered name"
            raise UnknownNameError(f"nothing registered is named {name!r}{hint}")


def entry_lines(registry: Any, name: str, factory: Any, full: bool, shown: dict[str, str]) -> list[str]:
    """What ``list`` says of one entry below its description, one text per line (wrapped when printed).

    A block of text (a metric's options, a solver's settings) shown already for an earlier entry is
    named instead: ``settings: those of ba``."""
    def once(label: str, lines: list[str]) -> list[str]:
        key = "\n".join([label] + lines)
        earlier = shown.setdefault(key, name)
        return lines if earlier == name else [f"{label}: those of {earlier}"]

    kind = registry.kind
    if kind == "metric":
        lines = metric_options(factory)
        return once("metric options", lines) if len(lines) > 1 else lines
    if kind == "study kind":
        section = factory.settings_key
        return [f"grid kind: {name}; its settings: " + (f"the grid's {section}: section" if section else "none")]
    if kind == "learned schedule":
        return ["settings: " + ", ".join(f"{k}={v!r}" for k, v in factory.defaults.items())]
    params, rest = constructor_parameters(factory)
    settings = settings_text(factory, full) if rest else None
    if rest and settings is None:
        params.append(f"**{rest}")
    lines = ["params: " + (", ".join(params) or "none")]
    if settings is not None:
        lines += once("settings", ["settings: " + settings] if "\n" not in settings
                      else ["settings:"] + settings.splitlines())
    if kind == "solver":
        refusal = factory.inversion_refusal()
        lines.append("inverts (sb.invert, kind: inversion): " + ("yes" if refusal is None else f"no: {refusal}"))
    return lines


def print_wrapped(text: str, indent: int) -> None:
    """``text`` wrapped to 110 columns at ``indent`` (its own leading spaces kept), continued 2 further in."""
    margin = " " * (indent + len(text) - len(text.lstrip()))
    for line in textwrap.wrap(text.strip(), width=110, initial_indent=margin, subsequent_indent=margin + "  "):
        print(line)


def first_line(doc: Any) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else "(no description)"


def constructor_parameters(factory: Any) -> tuple[list[str], Optional[str]]:
    """``name=default`` of a registered class's constructor (or a function's parameters), and the name
    of a ``**kwargs`` that no constructor takes up (None where there is none).

    A class's ``**kwargs`` are followed up its base classes' constructors."""
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
    return list(params.values()), rest


def settings_text(factory: Any, full: bool) -> Optional[str]:
    """What a class's ``describe_settings(full)`` says its ``**kwargs`` take (everyday ones, or with
    ``full`` every one); None where it has no such method.  One that takes no ``full`` says one text."""
    described = getattr(factory, "describe_settings", None)
    if not callable(described):
        return None
    try:
        takes_full = "full" in inspect.signature(described).parameters
    except (TypeError, ValueError):
        takes_full = False
    return described(full=full) if takes_full else described()


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


@command("compare", "are two results folders the same numbers? every metric, cell by cell, bit for bit")
def _compare(parser: argparse.ArgumentParser):
    parser.description = (
        "Compare two results folders cell by cell: rows matched by what defines a cell (not by cell id); every "
        "metric column (with its intervals and floors), the measured NFE and the status compared bit for bit "
        "(NaN equal to NaN) in every cell, the other numeric columns (a solver's counters, its network's size) "
        "where both sides hold a value; timings, timestamps and provenance left out. Exit status 0 when they "
        "are equal, 1 when a cell is on one side only or a value differs (each named, with its column).")
    parser.add_argument("before", help="results folder of the earlier code")
    parser.add_argument("after", help="results folder of the later code")
    parser.add_argument("--grid", nargs="+", default=None, metavar="NAME",
                        help="only these grids (default: every grid of BEFORE)")

    def run(args: argparse.Namespace) -> int:
        from solverbench.results_compare import compare_stores

        comparison = compare_stores(args.before, args.after, args.grid)
        for grid, (before, after) in comparison.cells.items():
            print(f"{grid}: {before} cells before, {after} after")
        print(f"compared in every cell: {', '.join(comparison.strict_columns)}")
        print(f"compared where both hold a value: {', '.join(comparison.loose_columns)}")
        if not comparison.identical:
            print(f"{len(comparison.differences)} differences:")
            for line in comparison.differences[:50]:
                print(f"  {line}")
            if len(comparison.differences) > 50:
                print(f"  ... and {len(comparison.differences) - 50} more")
            return 1
        print("identical: every cell on both sides, every compared value equal bit for bit")
        return 0

    return run


@command("reference-batch", "a folder of images as an ADM reference batch for FID, KID and precision/recall")
def _reference_batch(parser: argparse.ArgumentParser):
    parser.description = (
        "Read every image under FOLDER (png, jpg, jpeg, webp, bmp; all of one size) and write them, with the "
        "statistics FID and sFID compare with (computed through the feature extractor), as an ADM reference "
        "batch: the image metrics' reference for a backbone that draws no data (metric_options: "
        "{reference_batch: OUT, feature_extractor: NAME}).")
    parser.add_argument("folder", help="a folder of images (searched at any depth)")
    parser.add_argument("--out", required=True, help="the reference batch to write (.npz)")
    parser.add_argument("--feature-extractor", default="inception-tf",
                        help="the features the statistics are of (default: inception-tf, ADM's)")
    parser.add_argument("--device", default="cpu", help="where the extractor runs (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per extractor call (default: 64)")

    def run(args: argparse.Namespace) -> int:
        from solverbench.metrics.image.folder_batch import reference_batch_from_folder
        from solverbench.registry import FEATURE_EXTRACTORS

        FEATURE_EXTRACTORS.get(args.feature_extractor)  # an unknown name: one line naming the known ones
        path = reference_batch_from_folder(args.folder, args.out, args.feature_extractor, device=args.device,
                                           batch_size=args.batch_size)
        print(f"reference batch written: {path}")
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

        from solverbench.cache_entry import UnfitEntry, read_entry
        from solverbench.hashing import canonical_json, spec_hash
        from solverbench.registry import BACKBONES
        from solverbench.weights_file import read_weights

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
                                        "NAME-<hash of the training options>.pt, reused if it exists; one "
                                        "that does not load is moved aside and trained again)")
        options.add_argument("--force", action="store_true", help="train even if the cached checkpoint exists")
        opts = options.parse_args(args.options)
        try:  # the config checks its fields: a meaningless option fails here, before any work
            config = config_cls(**{f.name: getattr(opts, f.name) for f in fields})
        except (TypeError, ValueError) as err:
            print(f"solverbench train-backbone: error: {one_line(err)}", file=sys.stderr)
            return 2
        cache_name = f"{args.backbone}-{spec_hash(dataclasses.asdict(config))}.pt"
        out = Path(opts.out) if opts.out else Path(opts.results) / ".cache" / "backbones" / cache_name

        def read_trained(path: Path) -> Path:
            """The cached checkpoint, checked: it loads (into the backbone, where the class takes a
            checkpoint) and was trained with these options."""
            if "checkpoint" not in getattr(cls, "path_params", ()):
                read_weights(path)
                return path
            trained = getattr(cls(checkpoint=str(path)), "config", None)
            if dataclasses.is_dataclass(trained) and canonical_json(dataclasses.asdict(trained)) != \
                    canonical_json(dataclasses.asdict(config)):
                raise UnfitEntry("was trained with other options than its name says")
            return path

        cached = None if opts.out or opts.force else \
            read_entry(out, f"cached {args.backbone} checkpoint", read_trained)
        if cached is not None:
            print(f"{out} exists (trained with these options); --force trains again")
        else:
            start = time.perf_counter()
            out = cls.train_backbone(config, out, progress=not opts.no_progress)
            print(f"wrote {out} in {time.perf_counter() - start:.0f} s")
        print(f"use it with: backbones: [{{name: {args.backbone}, params: {{checkpoint: {out}}}}}]")
        return 0

    return run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    plugin_files, rest = leading_plugins(argv)
    try:
        for path in plugin_files:  # before the parser is built: a plugin may add commands
            load_plugin_file(path)
    except (ValueError, FileNotFoundError) as err:
        say_error(f"solverbench: error: {one_line(err)}")
        return 2
    parser = ArgumentParser(
        prog="solverbench", description="Benchmark ODE solvers of flow-matching models.",
        epilog="`python -m solverbench COMMAND --help` lists a command's options.")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="a plugin file to load first, before COMMAND (repeat for more); it may add solvers, "
                             "backbones, metrics, study kinds and commands")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    handlers = {}
    names = COMMANDS.names()
    chosen = rest[0] if rest and rest[0] in names else None  # None: the top-level help, or an error listing all
    for name in names:
        if chosen in (None, name):
            make = COMMANDS.get(name)
            help_line = getattr(make, "help", first_line(make.__doc__))
            handlers[name] = make(sub.add_parser(name, help=help_line, description=help_line))
        else:  # another command than the one asked for: its module is not even imported
            sub.add_parser(name)
    args = parser.parse_args(argv)
    try:
        with importing(freeze=True):  # the command line owns its process
            from solverbench.distributed import PeerFailed, report_once
            from solverbench.engine import SweepFailed
            from solverbench.errors import GridError
            from solverbench.registry import UnknownNameError

        # a bad grid, name, parameter, option, checkpoint or plugin file, a missing file: one line, exit
        # status 2 (GridError, CheckpointError and PluginError are ValueErrors)
        bad_input = (GridError, ValueError, UnknownNameError, FileNotFoundError, IsADirectoryError,
                     NotADirectoryError, PermissionError)
        try:
            return handlers[args.command](args)
        except PeerFailed as err:  # under torchrun, another rank failed first
            if not err.raised(*bad_input):
                return 1  # that rank shows its traceback
            report_once(f"solverbench {args.command}: error: {one_line(err.message)} (on rank {err.rank} of "
                        f"{err.size})", own=False)
            return 2
        except SweepFailed as err:  # cells failed; the rest of the sweep ran
            print(f"solverbench {args.command}: error: {err}", file=sys.stderr)
            return 1
        except bad_input as err:
            if os.environ.get("SOLVERBENCH_TRACEBACK"):  # shows where
                raise
            # under torchrun every rank may meet the bad input: rank 0 says it, every rank exits with 2
            report_once(f"solverbench {args.command}: error: {one_line(err)}", own=True)
            return 2
    except KeyboardInterrupt as interrupt:
        message = interrupt.args[0] if interrupt.args and isinstance(interrupt.args[0], str) else ""
        print(f"solverbench {args.command}: {one_line(message) or 'interrupted'}", file=sys.stderr)
        return 130


def leading_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """The files of ``--plugin FILE`` (or ``--plugin=FILE``) options before the command name, and the
    arguments after those options (the command name first)."""
    files, i = [], 0
    while i < len(argv) and argv[i].startswith("--plugin"):
        if argv[i].startswith("--plugin="):
            files.append(argv[i].split("=", 1)[1])
            i += 1
        elif argv[i] == "--plugin" and i + 1 < len(argv):
            files.append(argv[i + 1])
            i += 2
        else:
            break
    return files, argv[i:]


def say_error(line: str) -> None:
    """Print a closing error line to stderr: under torchrun once (rank 0), the other ranks waiting until
    it is out (``distributed.report_once``; torch is imported only then)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from solverbench.distributed import report_once

        report_once(line, own=True)
    else:
        print(line, file=sys.stderr)


def one_line(err: Any) -> str:
    """An error's message on one line."""
    return " ".join(str(err).split())
