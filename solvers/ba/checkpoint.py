"""SideNet checkpoints: EMA and raw weights, settings, training statistics, backbone identity.

A plain dict of tensors and JSON-like values, read back with ``torch.load(weights_only=True)``
(``solverbench.weights_file.read_weights``: a missing, empty or unreadable file is one clear line).
Loading one for a backbone other than the one it was trained for fails, naming the file
and the fields of the identity that differ.

``load_checkpoint`` also reads the authors' SideNet files (``released.py``) into
``architecture: official``: the layout tells which a file is.  Given an ``architecture``, it
checks the file holds that one, and where not says in one line which to set.  Weights are
fitted strictly: a missing, unexpected or misshapen key fails naming the file and the keys.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_identity
from solverbench.hashing import canonical_json
from solverbench.weights_file import first_keys, read_weights, state_dict_mismatches
from solvers.ba import released
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
    config: SideNetConfig  # an authors' file: its architecture only (the file holds no training settings)
    stats: dict[str, Any]
    backbone: dict[str, Any]  # the identity it was trained for ({} for an authors' file, which does not say)
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


def fit_weights(sidenet: SideNet, weights: dict[str, torch.Tensor], path: Path, hint: str = "") -> None:
    """Load ``weights`` into ``sidenet`` strictly; a mismatch names the file and the first keys."""
    problems = state_dict_mismatches(sidenet.state_dict(), weights)
    if problems:
        raise CheckpointMismatchError(f"SideNet checkpoint {str(path)!r} does not fit the "
                                      f"{sidenet.spec.get('architecture', 'project')} SideNet it describes: "
                                      + "; ".join(problems) + (f". {hint}" if hint else ""))
    sidenet.load_state_dict(weights, strict=True)


def load_checkpoint(path: str | Path, backbone: Any, *, device: str = "cpu", weights: str = "ema",
                    architecture: Optional[str] = None) -> LoadedSideNet:
    """The SideNet stored at ``path`` (EMA weights unless ``weights="raw"``), checked against
    ``backbone``: a checkpoint of this project's format, or an authors' file (``released.py``).
    ``architecture`` (``project`` or ``official``), where given, must be the file's."""
    path = Path(path)
    state = read_weights(path, what="SideNet checkpoint", error=SideNetCheckpointError)
    if not (isinstance(state, dict) and state.get("format") == FORMAT):
        return load_released(path, state, backbone, device=device, weights=weights, architecture=architecture)
    holds = state["spec"].get("architecture", "project")
    if architecture is not None and architecture != holds:
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(path)!r} holds a SideNet of the {holds} architecture (solverbench's format), "
            f"not {architecture}; set architecture: {holds}, or leave architecture out")
    identity = backbone_identity(backbone)
    differences = identity_mismatch(state["backbone"], identity)
    if differences:
        raise CheckpointMismatchError(
            f"SideNet checkpoint {path} was trained for another backbone; it differs in "
            + "; ".join(differences) + " (checkpoint != this backbone)")
    sidenet = build_sidenet(state["spec"])
    fit_weights(sidenet, state[weights], path)
    sidenet = sidenet.to(device).eval().requires_grad_(False)
    config = SideNetConfig.from_settings(state["config"])
    stats = {"recipe": config.recipe, **state["stats"]}  # checkpoints from before recipes: the project's
    return LoadedSideNet(sidenet, config, stats, state["backbone"], path)


def load_released(path: Path, stored: Any, backbone: Any, *, device: str = "cpu", weights: str = "ema",
                  architecture: Optional[str] = None) -> LoadedSideNet:
    """An authors' SideNet file (train_BA_side.py's checkpoint, EMA preferred, or a bare state dict)
    as ``architecture: official``, its sizes read off the weights' shapes."""
    found, entry = released.weights_in(stored, released.ENTRIES if weights == "ema" else released.ENTRIES[::-1])
    if not released.is_official(found):
        if released.is_project(found):
            raise CheckpointMismatchError(
                f"SideNet checkpoint {str(path)!r} holds bare weights of this project's SideNet without their settings "
                "(not the authors' SideNet, which architecture: official reads); write it with "
                "solvers.ba.checkpoint.save_checkpoint, as train-sidenet does")
        keys = list(stored) if isinstance(stored, dict) else [type(stored).__name__]
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(path)!r} is not a SideNet checkpoint: neither solverbench's format ({FORMAT}) "
            f"nor the authors' SideNet ({', '.join(released.MARKERS)}, ...); its top-level keys: "
            f"{first_keys(keys)}")
    if architecture not in (None, "official"):
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(path)!r} holds the authors' SideNet (models/side_net.py), not the {architecture} "
            "architecture; set architecture: official, or leave architecture out")
    try:
        spec = released.official_spec(found, path, backbone)
    except ValueError as err:
        raise CheckpointMismatchError(str(err)) from None
    sidenet = build_sidenet(spec)
    fit_weights(sidenet, found, path, hint="its sizes were read off input_conv, emb_fusion, t_embedder, "
                                           "y_embedder and blocks")
    sidenet = sidenet.to(device).eval().requires_grad_(False)
    config = SideNetConfig.from_settings({"architecture": "official", "width": spec["width"], "depth": spec["depth"],
                                          "embed_dim": spec["embed_dim"], "heads": spec["heads"]})
    return LoadedSideNet(sidenet, config, released.training_stats(stored, entry), {}, path)
