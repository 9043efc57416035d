"""Reference solve: adaptive Dormand-Prince 5(4) through torchdiffeq, float64, tight tolerance.

Its NFE is whatever the step-size control needed, counted by the velocity field.  The
harness's ``solverbench.reference`` does the solve; this registers it as a solver, so a
grid can put the converged answer in its tables beside the fixed-step solvers.
"""
from __future__ import annotations

import torch

from solverbench import register_solver
from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.solver import Solver


@register_solver("reference")
class Reference(Solver):
    """Reference solve: adaptive Dormand-Prince 5(4) (torchdiffeq), float64, tight tolerance; NFE as needed."""

    order = 5
    adaptive = True
    invertible = True  # the exact inversion the inversion study measures against

    def __init__(self, rtol: float = 1e-9, atol: float = 1e-9, dtype: str = "float64"):
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
        self.tolerance = Tolerance(rtol, atol)
        self.dtype = getattr(torch, dtype)
        self.backbone_dtype = self.dtype  # it solves with a copy of the backbone in this dtype, whatever the noise's

    def params(self):
        return {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol}

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        return self.trajectory(field, x, plan.times[[0, -1]])[-1].to(x.dtype)

    def trajectory(self, field: VelocityField, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """States at every time in ``times`` (decreasing), shape ``(len(times), *x.shape)``."""
        return reference_trajectory(field, x, times, self.tolerance, self.dtype)
