"""``python -m solverbench train-sidenet``: the BA-solver's own command, registered by this family.

It trains a SideNet for a registered backbone (plugins included) and writes its checkpoint;
one option per SideNet setting (the keys of a grid's ``solver_settings: {ba: ...}``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from solverbench import distributed
from solverbench.backbone import resolve_backbone
from solverbench.distributed import World
from solverbench.cli import ArgumentParser, add_checkpoint_options, command, one_line
from solverbench.registry import load_plugin_file

from solvers.ba.cache import cache_path, train_checkpoint
from solvers.ba.training import check_bank_dir
from solvers.ba.config import (ARCHITECTURES, CHAIN_STEPS, DATA_MODES, LR_SCHEDULES, OUTPUT_HEADS, QUESTIONS,
                               RECIPES, SOLVE_LOSSES, SOLVE_TARGETS, SideNetConfig)


# What each SideNet setting means (``--help`` of train-sidenet); the values are checked by SideNetConfig.
SETTING_HELP = {
    "architecture": "project: this project's SideNets; official: the authors' image SideNet (its sizes become "
                    "width 256, depth 4 counting the attention block, embed_dim 256, plain head, unless given)",
    "recipe": "project: the defaults shown here; official: the authors' train_BA_side.py (lr 1e-4 constant, EMA "
              "0.9996 without warm-up, batch 168, 300000 iterations, data, backbone in float16/bfloat16 autocast) "
              "as the defaults of the knobs not given",
    "width": "hidden width (MLP) or base channels (image SideNet)",
    "depth": "residual blocks (official architecture: blocks counting the attention block)",
    "embed_dim": "size of the sinusoidal embeddings of t and h (even; official architecture: the conditioning "
                 "width, the sinusoids being 256 wide)",
    "heads": "attention heads of the image SideNet's middle block",
    "output_head": "gated: W u + alpha x + beta v; plain: W u (the paper's); poly: a polynomial in h of gated "
                   "terms from a trunk of (t, y) only (one trunk pass per anchor serves every node offset)",
    "poly_degree": "degree P of the poly head's polynomial in h (output_head poly only)",
    "iterations": "training iterations",
    "batch_size": "chains per iteration (questions solves: exact trajectories, drawn from the bank with "
                  "solve-bank, which is solved this many at a time; both: as many of each)",
    "chain_length": "K steps per chain (K + 1 backbone calls)",
    "step_rate": "lambda of the truncated exponential step-size law (> 0)",
    "sim_nodes": "Gauss-Legendre nodes of the no-grad chain simulation",
    "chain_steps": "sidenet: a chain's next point by the SideNet's quadrature (the paper's); exact: on the "
                   "backbone's own trajectory (an adaptive solve: distillation targets from the reference solver)",
    "noise_starts": "share of chains that start at t = 1 from pure noise, where sampling starts (their first "
                    "step goes toward data), in [0, 1]",
    "questions": "chains: the paper's chain training; solves: the questions of exact bi-anchor solves on the "
                 "uniform grid at NFE solve-nfe-min to solve-nfe-max (distillation from the reference solver; no "
                 "chain knobs); both: the two losses added",
    "solve_nfe_min": "questions solves or both: the least NFE of the solves whose questions are trained on",
    "solve_nfe_max": "questions solves or both: the largest NFE of those solves (one drawn per trajectory)",
    "questions_per_solve": "questions solves or both: questions of its solve each exact trajectory answers "
                           "(intervals, with solve-loss endpoints)",
    "solve_loss": "questions solves or both: nodes, each answer fitted to the exact velocity alone; endpoints, per "
                  "interval the error of the state it builds from its answers (their errors summed with the "
                  "rule's weights)",
    "solve_target": "questions solves or both, under solve-guidance: branches, each branch's answer fitted to its "
                    "exact velocity; guided, the guided velocity v_u + w (v_c - v_u) the sampler forms from them "
                    "(with solve-loss endpoints, the state built from the guided answers)",
    "solve_bank": "questions solves or both: 0, fresh exact trajectories every iteration; N, N of them solved "
                  "once before training (with the backbone's velocities at every asked time) and drawn from",
    "solve_guidance": "questions solves or both: the CFG scale the exact trajectories are solved under (1: "
                      "unguided, labels dropped at label-dropout; else each question is asked of the conditional "
                      "and the unconditional velocity, as a guided solve asks them)",
    "solve_shift": "questions solves or both: 1, the solves' grids are uniform; s (> 0), time-shifted by s, as "
                   "schedule {name: shifted, shift: s} samples (train on the grid you sample with)",
    "first_interval_weight": "questions solves or both: the loss weight (> 0) of the questions of a solve's "
                             "first interval, from pure noise at t = 1, against 1 for the others",
    "last_interval_weight": "questions solves or both: the same for the questions of a solve's last interval, "
                            "whose predictor the solve returns uncorrected",
    "label_dropout": "probability of replacing a label by the null label, in [0, 1)",
    "lr": "peak learning rate (> 0)",
    "lr_schedule": "learning-rate schedule",
    "weight_decay": "AdamW weight decay (>= 0)",
    "grad_clip": "gradient-norm clip (> 0)",
    "ema_decay": "decay of the weight average that sampling uses, in [0, 1)",
    "data": "where chains start: data (backbone.sample_data), noise (data-free), auto: data where it exists",
    "noise_steps": "data-free mode: Heun steps from t = 1 to a chain's start",
    "seed": "seed of initialisation and chains (>= 0)",
    "init_from": "a SideNet checkpoint (the same architecture settings) whose weights the training starts from: "
                 "fine-tuning; its training time counts in this one's",
}
SETTING_CHOICES = {"architecture": ARCHITECTURES, "chain_steps": CHAIN_STEPS, "recipe": RECIPES,
                   "output_head": OUTPUT_HEADS, "data": DATA_MODES, "lr_schedule": LR_SCHEDULES,
                   "sim_nodes": (1, 2, 3, 4, 5), "questions": QUESTIONS,
                   "solve_loss": SOLVE_LOSSES, "solve_target": SOLVE_TARGETS}


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--<setting>`` for every SideNet setting (dashes for underscores), default as in a grid."""
    group = parser.add_argument_group("SideNet settings (the keys of a grid's solver_settings: {ba: ...})")
    for f in fields(SideNetConfig):
        kind = {"int": int, "float": float, "str": str}[f.type]
        choices = SETTING_CHOICES.get(f.name)
        meaning = SETTING_HELP.get(f.name, "")
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"sidenet_{f.name}", type=kind, default=None,
                           choices=choices, metavar=None if choices else kind.__name__.upper(),
                           help=f"{meaning}{'; ' if meaning else ''}default: {f.default}")


def config_from_options(args: argparse.Namespace) -> SideNetConfig:
    """The SideNet settings given on the command line, checked (a ValueError names the first bad one)."""
    settings = {f.name: getattr(args, f"sidenet_{f.name}") for f in fields(SideNetConfig)
                if getattr(args, f"sidenet_{f.name}", None) is not None}
    return SideNetConfig.from_settings(settings, where="train-sidenet options")


def describe_settings() -> str:
    """What ``**settings`` of the BA solvers' constructors take (``python -m solverbench list``)."""
    return "SideNet settings (a grid's solver_settings: {ba: ...} keys): " + ", ".join(
        f"{f.name}={f.default!r}" for f in fields(SideNetConfig))


def train_to_file(backbone: Any, config: SideNetConfig, out: Optional[str | Path], *, cache_dir: str | Path,
                  device: str = "cpu", progress: bool = True, ranks: World = World(),
                  bank_dir: Optional[str | Path] = None) -> str:
    """Train a SideNet for ``backbone`` and write its checkpoint to ``out`` (default: the cache entry a
    grid with these settings would use); returns a summary.  ``ranks``: torchrun's processes, which
    train it data-parallel (DistributedDataParallel).  ``bank_dir``: where a solve bank's batches are kept."""
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
    if config.init_from:
        before = s.get("init_seconds")
        bank += (f"; started from {config.init_from} (its training: "
                 + ("not recorded" if before is None else f"{before:.1f} s") + ")")
    return (f"SideNet ({loaded.sidenet.spec['kind']}, {loaded.config.architecture} architecture, "
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
