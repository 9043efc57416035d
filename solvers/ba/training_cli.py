"""What ``python -m solverbench train-sidenet`` asks of the registered ``ba`` solver.

The harness knows no solver by name: its CLI looks ``ba`` up in the solver registry and
calls these class methods to add one option per SideNet setting and to train a checkpoint.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import torch

from solvers.ba.cache import cache_path, train_checkpoint
from solvers.ba.config import DATA_MODES, LR_SCHEDULES, OUTPUT_HEADS, SideNetConfig


# What each SideNet setting means (``--help`` of train-sidenet); the values are checked by SideNetConfig.
SETTING_HELP = {
    "width": "hidden width (MLP) or base channels (image SideNet)",
    "depth": "residual blocks",
    "embed_dim": "size of the sinusoidal embeddings of t and h (even)",
    "heads": "attention heads of the image SideNet's middle block",
    "output_head": "gated: W u + alpha x + beta v; plain: W u (the paper's)",
    "iterations": "training iterations",
    "batch_size": "chains per iteration",
    "chain_length": "K steps per chain (K + 1 backbone calls)",
    "step_rate": "lambda of the truncated exponential step-size law (> 0)",
    "sim_nodes": "Gauss-Legendre nodes of the no-grad chain simulation",
    "label_dropout": "probability of replacing a label by the null label, in [0, 1)",
    "lr": "peak learning rate (> 0)",
    "lr_schedule": "learning-rate schedule",
    "weight_decay": "AdamW weight decay (>= 0)",
    "grad_clip": "gradient-norm clip (> 0)",
    "ema_decay": "decay of the weight average that sampling uses, in [0, 1)",
    "data": "where chains start: data (backbone.sample_data), noise (data-free), auto: data where it exists",
    "noise_steps": "data-free mode: Heun steps from t = 1 to a chain's start",
    "seed": "seed of initialisation and chains (>= 0)",
}
SETTING_CHOICES = {"output_head": OUTPUT_HEADS, "data": DATA_MODES, "lr_schedule": LR_SCHEDULES,
                   "sim_nodes": (1, 2, 3, 4, 5)}


class TrainingCommand:
    @classmethod
    def add_training_options(cls, parser: argparse.ArgumentParser) -> None:
        """``--<setting>`` for every SideNet setting (dashes for underscores), default as in a grid."""
        group = parser.add_argument_group("SideNet settings (the keys of a grid's sidenet: mapping)")
        for f in fields(SideNetConfig):
            kind = {"int": int, "float": float, "str": str}[f.type]
            choices = SETTING_CHOICES.get(f.name)
            meaning = SETTING_HELP.get(f.name, "")
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"sidenet_{f.name}", type=kind, default=None,
                               choices=choices, metavar=None if choices else kind.__name__.upper(),
                               help=f"{meaning}{'; ' if meaning else ''}default: {f.default}")

    @classmethod
    def settings_from_options(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The settings given on the command line, checked (a ValueError names the first bad one)."""
        settings = {f.name: getattr(args, f"sidenet_{f.name}") for f in fields(SideNetConfig)
                    if getattr(args, f"sidenet_{f.name}", None) is not None}
        SideNetConfig.from_settings(settings, where="train-sidenet options")
        return settings

    @classmethod
    def describe_settings(cls) -> str:
        """What ``**settings`` of the solver's constructor take (``python -m solverbench list``)."""
        return "SideNet settings (a grid's sidenet: keys): " + ", ".join(
            f"{f.name}={f.default!r}" for f in fields(SideNetConfig))

    @classmethod
    def train_to_file(cls, backbone: Any, settings: dict[str, Any], out: Optional[str | Path], *,
                      cache_dir: str | Path, device: str = "cpu", progress: bool = True) -> str:
        """Train a SideNet for ``backbone`` and write its checkpoint to ``out`` (default: the cache
        entry a grid with these ``sidenet:`` settings would use); returns a summary."""
        config = SideNetConfig.from_settings(settings, where="train-sidenet options")
        path = Path(out) if out else cache_path(cache_dir, backbone, config)
        if isinstance(backbone, torch.nn.Module):
            backbone = backbone.to(device).eval()
        loaded = train_checkpoint(backbone, config, path, device=device, progress=progress)
        s = loaded.stats
        return (f"SideNet ({loaded.sidenet.spec['kind']}, {s['parameters']:,} parameters) trained in "
                f"{s['seconds']:.1f} s: {s['iterations']} iterations at batch {s['batch_size']}, "
                f"{s['data_mode']} mode, final loss {s['final_loss']:.4g}\n"
                f"checkpoint: {path}\n"
                f"use it with: solvers: [{{name: ba, params: {{checkpoint: {path}}}}}]")
