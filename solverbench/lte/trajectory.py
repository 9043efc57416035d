"""Exact states for the LTE study: the reference solve (float64, tight tolerance) at chosen times."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import torch

from solverbench.field import VelocityField
from solverbench.solver import get_solver


def reference_states(backbone: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], *, cfg_scale: float,
                     cfg_interval: tuple[float, float], times: Iterable[float], rtol: float,
                     atol: float) -> dict[float, torch.Tensor]:
    """``{t: x(t)}`` on the reference trajectory from ``noise`` at t = 1, for every t in ``times``.

    One adaptive solve through all the times (float64); the states are the reference
    solver's, so their error is of the order of its tolerance.
    """
    wanted = sorted({float(t) for t in times} - {1.0}, reverse=True)
    if not wanted or wanted[-1] < 0:
        raise ValueError(f"reference states need times in [0, 1], got {sorted(times)}")
    reference = get_solver("reference", rtol=rtol, atol=atol)
    field = VelocityField(backbone, labels, cfg_scale, cfg_interval)
    grid = torch.tensor([1.0] + wanted, dtype=torch.float64)
    states = reference.trajectory(field, noise.double(), grid)
    return {1.0: noise.double(), **{t: states[i + 1] for i, t in enumerate(wanted)}}
