"""Reference solve: adaptive Dormand-Prince 5(4) through torchdiffeq, float64, tight tolerance.

Its NFE is whatever the step-size control needed, counted by the velocity field.  It is
the ground truth that ``trajectory_error`` measures every other solver against.
"""
from __future__ import annotations

from typing import Optional

import torch
from torchdiffeq import odeint

from solverbench import register_solver
from solverbench.backbone import backbone_in_dtype
from solverbench.field import VelocityField
from solverbench.solver import Solver


@register_solver("reference")
class Reference(Solver):
    """Reference solve: adaptive Dormand-Prince 5(4) (torchdiffeq), float64, tight tolerance; NFE as needed."""

    order = 5
    adaptive = True

    def __init__(self, rtol: float = 1e-9, atol: float = 1e-9, method: str = "dopri5", dtype: str = "float64"):
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
        self.rtol, self.atol, self.method = float(rtol), float(atol), method
        self.dtype = getattr(torch, dtype)

    def params(self):
        return {"rtol": self.rtol, "atol": self.atol}

    def solve(self, field: VelocityField, x: torch.Tensor, grid: torch.Tensor, *, nfe: Optional[int] = None) -> torch.Tensor:
        return self.trajectory(field, x, grid[[0, -1]])[-1].to(x.dtype)

    def trajectory(self, field: VelocityField, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """States at every time in ``times`` (decreasing), shape ``(len(times), *x.shape)``.

        The backbone runs in the solve's dtype (a float64 copy of a float32 network); its
        evaluations are added to ``field``'s NFE count.
        """
        solve_field = field.with_backbone(backbone_in_dtype(field.backbone, self.dtype))
        times = times.to(device=x.device, dtype=self.dtype)
        try:
            return odeint(lambda t, y: solve_field(y, t), x.to(self.dtype), times,
                          rtol=self.rtol, atol=self.atol, method=self.method)
        finally:
            field.nfe += solve_field.nfe
