"""What a SideNet file holds once its layout is recognised (``SideNetFile``), and the errors of loading one.

Loading a SideNet file (checkpoint.py, ``load_checkpoint``) reads it, recognises its layout (this project's
format, solverbench_format.py, or the authors' files, released.py, each giving a ``SideNetFile``), checks it
against the backbone and the asked architecture, builds the network and fits the weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solvers.ba.config import SideNetConfig


class SideNetCheckpointError(ValueError):
    """A SideNet checkpoint that cannot be read: missing, a folder, empty, or not loadable with
    ``weights_only=True`` (e.g. a pickled module)."""


class CheckpointMismatchError(SideNetCheckpointError):
    """A SideNet checkpoint that does not fit: trained for another backbone, of another architecture than asked,
    with weights that do not fit the network it describes, or not a SideNet checkpoint at all."""


@dataclass(frozen=True)
class SideNetFile:
    path: Path
    holds: str  # what it holds, as messages name it: "a SideNet of the project architecture (solverbench's format)"
    spec: dict[str, Any]  # what ``build_sidenet`` builds the network from (``SideNet.spec``)
    weights: dict[str, Any]  # the state dict to fit: the EMA weights, or the raw ones on request
    config: SideNetConfig  # the settings it was trained with (an authors' file: its architecture only)
    stats: dict[str, Any]  # what it says of its training
    trained_for: dict[str, Any]  # the backbone identity it records; {} where it records none (an authors' file)
    fit_hint: str = ""  # where the network's sizes came from, for a message when the weights do not fit
