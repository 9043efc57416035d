"""``python -m solverbench train-sidenet``: the BA-solver's own command, registered by this family.

It trains a SideNet for a registered backbone (plugins included) and writes its checkpoint;
one option per SideNet setting (the keys of a grid's ``solver_settings: {ba: ...}``), its help the
setting's meaning (config.py).  Torch and the training are imported where a SideNet is trained, so
that reading the options (``--help``) needs neither.
"""
from __future__ import annotations

import argparse
import sys
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import yaml

from solverbench.cli import ArgumentParser, add_checkpoint_options, command, one_line
from solverbench.registry import load_plugin_file
from solvers.ba.config import SideNetConfig, setting_fields
from solvers.ba.setting import check_of, meaning_of

if TYPE_CHECKING:
    from solverbench.distributed import World

OPTION_TYPES = {"int": int, "float": float, "str": str}


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--<setting>`` for every SideNet setting (dashes for underscores), default as in a grid, one option group
    per settings group; the help text is the setting's meaning (config.py)."""
    for group, members in groupby(setting_fields(), key=lambda entry: entry[0]):
        options = parser.add_argument_group(f"SideNet settings{f': {group}' if group else ''} (the keys of a grid's "
                                            f"solver_settings: {{ba: {f'{{{group}: ...}}' if group else '...'}}})")
        for _, f in members:
            kind, choices = OPTION_TYPES[f.type], check_of(f).choices
            options.add_argument(f"--{f.name.replace('_', '-')}", dest=f"sidenet_{f.name}", type=kind, default=None,
                                 choices=choices, metavar=None if choices else kind.__name__.upper(),
                                 help=f"{meaning_of(f)}; default: {f.default}")


def config_from_options(args: argparse.Namespace) -> SideNetConfig:
    """The SideNet settings given on the command line, checked (a ValueError names the first bad one)."""
    settings = {name: getattr(args, f"sidenet_{name}") for name in SideNetConfig.keys()
                if getattr(args, f"sidenet_{name}", None) is not None}
    return SideNetConfig.from_settings(settings, where="train-sidenet options")


def train_to_file(backbone: Any, config: SideNetConfig, out: Optional[str | Path], *, cache_dir: str | Path,
                  device: str = "cpu", progress: bool = True, ranks: Optional[World] = None,
                  bank_dir: Optional[str | Path] = None) -> str:
    """Train a SideNet for ``backbone`` and write its checkpoint to ``out`` (default: the cache entry a
    grid with these settings would use); returns a summary.  ``ranks``: torchrun's processes, which
    train it data-parallel (DistributedDataParallel; None: this process alone).  ``bank_dir``: where a
    solve bank's batches are kept."""
    import torch

    from solverbench.distributed import World
    from solvers.ba.cache import cache_path, train_checkpoint

    ranks = World() if ranks is None else ranks
    path = Path(out) if out else cache_path(cache_dir, backbone, config)
    if isinstance(backbone, torch.nn.Module):
        backbone = backbone.to(device).eval()
    loaded = train_checkpoint(backbone, config, path, device=device, progress=progress, ranks=ranks,
                              bank_dir=bank_dir)
    s = loaded.stats
    split = f" over {ranks.size} processes (DistributedDataParallel)" if ranks.sharded else ""
    read = s.get("bank_batches_read", 0)
    counted = s.get("bank_seconds_counted", 0.0)
    paid = f", {counted:.1f} s of it in the training started from" if counted else ""
    bank = (f"; {read} solve-bank batches read from {bank_dir}, not solved (they took {s['bank_seconds_read']:.1f} s "
            f"when solved{paid})") if read else ""
    if config.optimisation.init_from:
        before = s.get("init_seconds")
        bank += (f"; started from {config.optimisation.init_from} (its training: "
                 + ("not recorded" if before is None else f"{before:.1f} s") + ")")
    return (f"SideNet ({loaded.sidenet.spec['kind']}, {loaded.config.network.architecture} architecture, "
            f"{s['parameters']:,} parameters) trained in {s['seconds']:.1f} s: {s['iterations']} iterations at batch "
            f"{s['batch_size']}{split}, {s['recipe']} recipe, {s['data_mode']} mode, final loss "
            f"{s['final_loss']:.4g}{bank}\n"
            f"checkpoint: {path}\n"
            f"use it with: solvers: [{{name: ba, params: {{checkpoint: {path}}}}}]")


@command("train-sidenet", "train the BA-solver's SideNet for a backbone and write its checkpoint")
def train_sidenet_command(parser: argparse.ArgumentParser):
    parser.description = (
        "Train the BA-solver's SideNet for a registered backbone (plugins included) and write its checkpoint. "
        "The options after the name are the SideNet settings (the keys of a grid's solver_settings: {ba: ...}): "
        "`train-sidenet NAME --help` lists them."
    )
    parser.add_argument("backbone", help="a registered backbone name, e.g. gmm")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="backbone parameters and SideNet settings")

    def run(args: argparse.Namespace) -> int:
        options = ArgumentParser(prog=f"solverbench train-sidenet {args.backbone}", allow_abbrev=False)
        options.add_argument("--backbone-params", default="{}", help="the backbone's parameters, a YAML mapping, "
                                                                     "e.g. '{preset: gmm64}'")
        options.add_argument("--plugins", nargs="*", default=[], help="plugin files to load first")
        add_checkpoint_options(options, "checkpoint file to write (default: the cache entry under "
                                        "RESULTS/.cache/sidenet/ that grids with these settings reuse)")
        options.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
        options.add_argument("--bank-dir", default=None, help="with solve-bank: keep the bank's solved batches "
                             "here, one file each, and read back those an earlier run left (a stopped training "
                             "resumes its bank; trainings that differ only in the SideNet or optimiser share it)")
        add_training_options(options)
        opts = options.parse_args(args.options)
        try:
            params = yaml.safe_load(opts.backbone_params) or {}
        except yaml.YAMLError as err:
            print(f"solverbench train-sidenet: error: --backbone-params is not YAML: {one_line(err)}",
                  file=sys.stderr)
            return 2
        if not isinstance(params, dict):
            print(f"solverbench train-sidenet: error: --backbone-params must be a mapping, got {params!r}",
                  file=sys.stderr)
            return 2
        from solverbench import distributed
        from solverbench.backbone import resolve_backbone
        from solvers.ba.training import check_bank_dir

        try:
            config = config_from_options(opts)  # checked before the backbone is even built
            check_bank_dir(config, opts.bank_dir)
            for path in opts.plugins:
                load_plugin_file(path)
            backbone = resolve_backbone(args.backbone, **params)
            ranks = distributed.init_from_environment(opts.device)
            try:
                summary = train_to_file(backbone, config, opts.out, cache_dir=f"{opts.results}/.cache",
                                        device=opts.device, progress=not opts.no_progress, ranks=ranks,
                                        bank_dir=opts.bank_dir)
            finally:
                distributed.close()
            if ranks.main:
                print(summary)
        except (TypeError, ValueError) as err:  # bad backbone parameters or SideNet settings
            print(f"solverbench train-sidenet: error: {one_line(err)}", file=sys.stderr)
            return 2
        return 0

    return run
