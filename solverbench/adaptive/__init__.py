"""Budget-adaptive time grids from a solver's embedded local-error estimate (docs/solvers/adaptive.md).

``schedule: {name: adaptive, ...}`` (``solverbench.adaptive_settings``) asks for it, in a grid file (through
``solverbench.schedules``, cached per cell like a learned grid) or in ``solverbench.sample``.  The solver must
offer an estimate (``Solver.embedded_error``); the grid is decided on a pilot (``pilot``) and then walked by
every batch.
"""
from __future__ import annotations

from typing import Any

import torch

from solverbench.adaptive.pilot import AdaptiveGrid, decide_grid
from solverbench.adaptive_settings import AdaptiveSettings, adaptive_settings, is_adaptive
from solverbench.field import VelocityField
from solverbench.plan import Plan, make_plan

__all__ = ["AdaptiveGrid", "AdaptiveSettings", "adaptive_settings", "decide_grid", "decided_plan", "is_adaptive"]


def decided_plan(solver: Any, field: VelocityField, x: torch.Tensor, plan: Plan) -> tuple[Plan, AdaptiveGrid]:
    """The plan an undecided adaptive plan (``plan.pilot``) becomes: its grid decided on the pilot for ``solver``
    on ``field``'s backbone, labels (whether there are any) and guidance, in ``x``'s dtype on its device."""
    if field.mirrored:
        raise ValueError("schedule 'adaptive' decides its grid on noise trajectories, from t = 1 to 0; it does not "
                         "run from data to noise (inversion): give an inversion a fixed schedule or time_grid")
    settings = adaptive_settings(plan.pilot)
    grid = decide_grid(solver, field.backbone, field.guidance, settings, nfe=plan.nfe if settings.budget_mode else None,
                       conditional=field.labels is not None, dtype=x.dtype, device=x.device)
    if settings.budget_mode:
        return make_plan(solver, nfe=plan.nfe, times=grid.times), grid
    return make_plan(solver, times=grid.times), grid
