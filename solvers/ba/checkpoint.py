"""Loading a SideNet file: one pipeline, each step once.

    read  ->  recognise  ->  check  ->  build  ->  fit

1. read: ``solverbench.weights_file.read_weights`` (``torch.load(weights_only=True)``; a missing, empty
   or unreadable file is one line naming it);
2. recognise the layout: this project's checkpoint (solverbench_format.py) or one of the authors'
   (released.py, read into ``architecture: official``), each giving a ``SideNetFile``; anything else is
   one line naming the file's top-level keys;
3. check it against what it is loaded for: the ``architecture`` asked, where one is (one line saying which
   to set), and the backbone: the identity the file records, field by field, or, where it records none
   (an authors' file), the channels and classes its weights fix.  A SideNet conditioned on label features
   (its spec's ``label_features``, their width) needs a backbone whose ``label_features`` have that width,
   and leaves aside the identity's keys that only name the labels (``label_identity``: a prompt set), so
   it loads beside any prompt set of that width;
4. build the network its spec describes (``build_sidenet``);
5. fit the weights strictly: a missing, unexpected or misshapen key fails naming the file and the keys;
   a feature-conditioned SideNet then reads the backbone's label features (``bind_labels``).

``save_checkpoint`` (solverbench_format.py) writes the files this loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from solverbench.backbone import backbone_identity, label_feature_width, label_identity
from solverbench.hashing import canonical_json
from solverbench.weights_file import first_keys, read_weights, state_dict_mismatches
from solvers.ba import released, solverbench_format
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import SideNet, build_sidenet
from solvers.ba.sidenet_file import CheckpointMismatchError, SideNetCheckpointError, SideNetFile
from solvers.ba.solverbench_format import save_checkpoint

__all__ = ["LoadedSideNet", "load_checkpoint", "save_checkpoint", "SideNetCheckpointError",
           "CheckpointMismatchError"]


@dataclass
class LoadedSideNet:
    sidenet: SideNet  # the EMA weights, for sampling
    config: SideNetConfig  # an authors' file: its architecture only (the file holds no training settings)
    stats: dict[str, Any]
    backbone: dict[str, Any]  # the identity it was trained for ({} for an authors' file, which does not say)
    path: Optional[Path]  # None for a SideNet trained in memory


def load_checkpoint(path: str | Path, backbone: Any, *, device: str = "cpu", weights: str = "ema",
                    architecture: Optional[str] = None) -> LoadedSideNet:
    """The SideNet stored at ``path`` (EMA weights unless ``weights="raw"``), checked against ``backbone``
    and, where given, the ``architecture`` (``project`` or ``official``) the file must hold."""
    path = Path(path)
    stored = read_weights(path, what="SideNet checkpoint", error=SideNetCheckpointError)
    found = recognise(stored, path, backbone, weights)
    check(found, backbone, architecture)
    sidenet = build_sidenet(found.spec)
    fit_weights(sidenet, found)
    sidenet.bind_labels(backbone)
    return LoadedSideNet(sidenet.to(device).eval().requires_grad_(False), found.config, found.stats,
                         found.trained_for, path)


def recognise(stored: Any, path: Path, backbone: Any, weights: str) -> SideNetFile:
    """The file's layout: this project's checkpoint, or one of the authors'."""
    if solverbench_format.is_saved_checkpoint(stored):
        return solverbench_format.contents(stored, path, weights)
    found = released.contents(stored, path, backbone, weights)
    if found is None:
        keys = list(stored) if isinstance(stored, dict) else [type(stored).__name__]
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(path)!r} is not a SideNet checkpoint: neither solverbench's format "
            f"({solverbench_format.FORMAT}) nor the authors' SideNet ({', '.join(released.MARKERS)}, ...); its "
            f"top-level keys: {first_keys(keys)}")
    return found


def check(found: SideNetFile, backbone: Any, architecture: Optional[str]) -> None:
    """The file holds the ``architecture`` asked (None: any) and was made for ``backbone``."""
    holds = found.spec.get("architecture", "project")
    if architecture is not None and architecture != holds:
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(found.path)!r} holds {found.holds}, not the {architecture} architecture; "
            f"set architecture: {holds}, or leave architecture out")
    if found.trained_for:
        trained_for, identity = found.trained_for, backbone_identity(backbone)
        if "label_features" in found.spec:
            check_label_features(found, backbone)
            trained_for, identity = without_labels(trained_for, backbone), without_labels(identity, backbone)
        differences = identity_mismatch(trained_for, identity)
        if differences:
            raise CheckpointMismatchError(
                f"SideNet checkpoint {found.path} was trained for another backbone; it differs in "
                + "; ".join(differences) + " (checkpoint != this backbone)")
        return
    shape, channels = tuple(backbone.sample_shape), found.spec["sample_shape"][0]
    if len(shape) != 3 or shape[0] != channels:
        raise CheckpointMismatchError(f"SideNet checkpoint {str(found.path)!r} holds {found.holds} for "
                                      f"{channels}-channel images; the backbone's samples have shape {shape}")
    classes = found.spec["num_classes"] or 0
    if classes != (backbone.num_classes or 0):
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(found.path)!r} holds {found.holds} for {classes} classes (its label table has "
            f"{classes + 1} rows, the last for the null label); the backbone has {backbone.num_classes or 'no'} "
            "classes")


def check_label_features(found: SideNetFile, backbone: Any) -> None:
    """A feature-conditioned SideNet needs the backbone's ``label_features`` of the width it was trained on."""
    width, offered = found.spec["label_features"], label_feature_width(backbone)
    if offered != width:
        has = "offers no label features" if offered is None else f"offers label features of width {offered}"
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(found.path)!r} is conditioned on label features of width {width}; the backbone "
            f"{type(backbone).__name__} {has} (checkpoint != this backbone)")


def without_labels(identity: dict[str, Any], backbone: Any) -> dict[str, Any]:
    """``identity`` without the keys that only name the backbone's labels (a feature-conditioned SideNet's check)."""
    return {k: v for k, v in identity.items() if k not in label_identity(backbone)}


def identity_mismatch(trained_for: dict[str, Any], backbone: dict[str, Any]) -> list[str]:
    """The identity fields that differ, as ``key: checkpoint value != backbone value``."""
    keys = sorted(set(trained_for) | set(backbone))
    return [f"{k}: {trained_for.get(k, '<absent>')!r} != {backbone.get(k, '<absent>')!r}"
            for k in keys if canonical_json(trained_for.get(k)) != canonical_json(backbone.get(k))]


def fit_weights(sidenet: SideNet, found: SideNetFile) -> None:
    """Load the file's weights into ``sidenet`` strictly; a mismatch names the file and the first keys."""
    problems = state_dict_mismatches(sidenet.state_dict(), found.weights)
    if problems:
        raise CheckpointMismatchError(f"SideNet checkpoint {str(found.path)!r} does not fit the "
                                      f"{sidenet.spec.get('architecture', 'project')} SideNet it describes: "
                                      + "; ".join(problems) + (f". {found.fit_hint}" if found.fit_hint else ""))
    sidenet.load_state_dict(found.weights, strict=True)
