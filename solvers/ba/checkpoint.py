"""SideNet checkpoints: EMA and raw weights, settings, training statistics, backbone identity.

A plain dict of tensors and JSON-like values, read back with ``torch.load(weights_only=True)``
(``solverbench.weights_file.read_weights``: a missing, empty or unreadable file is one clear line).
Loading one for a backbone other than the one it was trained for fails, naming the file
and the fields of the identity that differ.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_identity
from solverbench.hashing import canonical_json
from solverbench.weights_file import read_weights
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import SideNet, build_sidenet

FORMAT = "solverbench-sidenet/1"


class SideNetCheckpointError(ValueError):
    """A SideNet checkpoint that cannot be read: missing, a folder, empty, or not loadable with
    ``weights_only=True`` (e.g. a pickled module)."""


class CheckpointMismatchError(SideNetCheckpointError):
    """A SideNet checkpoint trained for another backbone (or not a SideNet checkpoint at all)."""


@dataclass
class LoadedSideNet:
    sidenet: SideNet  # the EMA weights, for sampling
    config: SideNetConfig
    stats: dict[str, Any]
    backbone: dict[str, Any]  # the identity it was trained for
    path: Optional[Path]  # None for a SideNet trained in memory


def save_checkpoint(path: str | Path, *, raw: SideNet, ema: SideNet, config: SideNetConfig,
                    stats: dict[str, Any], backbone: Any) -> Path:
    """Write atomically (temporary file + rename), so a cache never holds half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "spec": ema.spec,
        "config": config.as_dict(),
        "stats": stats,
        "backbone": backbone_identity(backbone),
        "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
        "raw": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def identity_mismatch(trained_for: dict[str, Any], backbone: dict[str, Any]) -> list[str]:
    """The identity fields that differ, as ``key: checkpoint value != backbone value``."""
    keys = sorted(set(trained_for) | set(backbone))
    return [f"{k}: {trained_for.get(k, '<absent>')!r} != {backbone.get(k, '<absent>')!r}"
            for k in keys if canonical_json(trained_for.get(k)) != canonical_json(backbone.get(k))]


def load_checkpoint(path: str | Path, backbone: Any, *, device: str = "cpu", weights: str = "ema") -> LoadedSideNet:
    """The SideNet stored at ``path`` (EMA weights unless ``weights="raw"``), checked against ``backbone``."""
    path = Path(path)
    state = read_weights(path, what="SideNet checkpoint", error=SideNetCheckpointError)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} is not a SideNet checkpoint (format {FORMAT})")
    identity = backbone_identity(backbone)
    differences = identity_mismatch(state["backbone"], identity)
    if differences:
        raise CheckpointMismatchError(
            f"SideNet checkpoint {path} was trained for another backbone; it differs in "
            + "; ".join(differences) + " (checkpoint != this backbone)")
    sidenet = build_sidenet(state["spec"])
    sidenet.load_state_dict(state[weights])
    sidenet = sidenet.to(device).eval().requires_grad_(False)
    return LoadedSideNet(sidenet, SideNetConfig.from_settings(state["config"]), state["stats"], state["backbone"], path)
