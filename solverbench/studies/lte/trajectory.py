"""Exact states for the LTE study: the reference solve (float64, tight tolerance) at chosen times."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import torch

from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.reference import Tolerance, reference_trajectory


def reference_states(backbone: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], *, guidance: Guidance,
                     times: Iterable[float], tolerance: Tolerance) -> dict[float, torch.Tensor]:
    """``{t: x(t)}`` on the reference trajectory from ``noise`` at t = 1, for every t in ``times``.

    One adaptive solve through all the times (float64); the states are the reference
    solve's, so their error is of the order of its tolerance.
    """
    wanted = sorted({float(t) for t in times} - {1.0}, reverse=True)
    if not wanted or wanted[-1] < 0:
        raise ValueError(f"reference states need times in [0, 1], got {sorted(times)}")
    field = VelocityField(backbone, labels, guidance)
    grid = torch.tensor([1.0] + wanted, dtype=torch.float64)
    states = reference_trajectory(field, noise.double(), grid, tolerance)
    return {1.0: noise.double(), **{t: states[i + 1] for i, t in enumerate(wanted)}}
