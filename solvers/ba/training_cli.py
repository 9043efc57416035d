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
from solvers.ba.config import SideNetConfig


class TrainingCommand:
    @classmethod
    def add_training_options(cls, parser: argparse.ArgumentParser) -> None:
        """``--<setting>`` for every SideNet setting (dashes for underscores), default as in a grid."""
        group = parser.add_argument_group("SideNet settings (the keys of a grid's sidenet: mapping)")
        for f in fields(SideNetConfig):
            kind = {"int": int, "float": float, "str": str}[f.type]
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"sidenet_{f.name}", type=kind, default=None,
                               metavar=kind.__name__.upper(), help=f"default: {f.default}")

    @classmethod
    def settings_from_options(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {f.name: getattr(args, f"sidenet_{f.name}") for f in fields(SideNetConfig)
                if getattr(args, f"sidenet_{f.name}", None) is not None}

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
