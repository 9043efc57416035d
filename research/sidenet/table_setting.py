"""The attempts table's evaluation setting (sidenet_attempts.py), for the scripts that measure against it: seed 0's
first noises and labels, and on digits CFG 2 with the reference solve at rtol = atol = 1e-5; SideNet files by name;
a per-sample error as its mean ± half the 95% interval."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.noise import labels_for, noise_for
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.report.tables.model import format_with_interval
from research.sidenet import CHECKPOINTS
from solverbench.uncertainty import mean_interval

TOLERANCE = Tolerance(1e-5, 1e-5)  # the digits reference
GUIDANCE = 2.0  # the digits CFG


class Endpoints(NamedTuple):
    noise: torch.Tensor  # at t = 1
    labels: Any  # None for an unconditional backbone
    exact: torch.Tensor  # the exact solve's state at t = 0


def table_inputs(backbone, samples: int) -> tuple[torch.Tensor, Any]:
    """Seed 0's noises and labels for the first ``samples`` samples: those of the table's runs."""
    return (noise_for(0, range(samples), backbone.sample_shape),
            labels_for(0, range(samples), backbone.num_classes))


def table_samples(backbone, samples: int) -> Endpoints:
    """The table's digits samples and their reference ends: the exact solve at CFG ``GUIDANCE``, ``TOLERANCE``."""
    noise, labels = table_inputs(backbone, samples)
    with torch.no_grad():
        exact = reference_trajectory(VelocityField(backbone, labels, Guidance(scale=GUIDANCE)), noise, [1.0, 0.0],
                                     TOLERANCE)[-1].to(noise.dtype)
    return Endpoints(noise, labels, exact)


def mean_with_interval(errors: torch.Tensor) -> str:
    """Per-sample errors as their mean ± half the 95% interval."""
    value, (low, high) = mean_interval(errors)
    return format_with_interval(value, low, high)


def checkpoint_path(name: str) -> Path:
    """A file under solvers/ba/checkpoints by name, or any path."""
    return CHECKPOINTS / name if (CHECKPOINTS / name).is_file() else Path(name)


def unknown_checkpoint(names: list[str]) -> str:
    """The one-line refusal of the first of ``names`` that is no checkpoint (``checkpoint_path``), or ""."""
    missing = [name for name in names if not checkpoint_path(name).is_file()]
    return f"no checkpoint {missing[0]} (neither under {CHECKPOINTS} nor as a path)" if missing else ""
