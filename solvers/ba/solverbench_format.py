"""This project's SideNet checkpoint format (``solverbench-sidenet/1``): written by ``save_checkpoint``,
recognised by ``contents``.

A plain dict of tensors and JSON-like values, read back with ``torch.load(weights_only=True)``:
the SideNet's spec, its settings (nested by group; files written before the groups hold them flat,
read the same), its training statistics, the identity of the backbone it was trained for, and its
EMA and raw weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from solverbench.backbone import backbone_identity
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import SideNet
from solvers.ba.sidenet_file import SideNetFile

FORMAT = "solverbench-sidenet/1"


def save_checkpoint(path: str | Path, *, raw: SideNet, ema: SideNet, config: SideNetConfig,
                    stats: dict[str, Any], backbone: Any) -> Path:
    """Write atomically (temporary file + rename), so a cache never holds half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "spec": ema.spec,
        "config": config.nested(),
        "stats": stats,
        "backbone": backbone_identity(backbone),
        "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
        "raw": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def is_saved_checkpoint(stored: Any) -> bool:
    """Whether a file's contents are in this format."""
    return isinstance(stored, dict) and stored.get("format") == FORMAT


def contents(stored: dict[str, Any], path: Path, weights: str = "ema") -> SideNetFile:
    """What a file of this format holds (its ``weights``: ``ema`` or ``raw``)."""
    spec, state = stored["spec"], stored[weights]
    config = SideNetConfig.from_settings(stored["config"])
    holds = f"a SideNet of the {spec.get('architecture', 'project')} architecture (solverbench's format)"
    stats = {"recipe": config.optimisation.recipe, **stored["stats"]}  # files from before recipes: the project's
    return SideNetFile(path, holds, spec, state, config, stats, stored["backbone"])
