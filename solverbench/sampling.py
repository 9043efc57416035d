"""``solverbench.sample``: one call from (backbone, solver, noise) to samples and their cost."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from solverbench.backbone import resolve_backbone
from solverbench.field import VelocityField
from solverbench.solver import Solver, get_solver
from solverbench.timegrid import check_time_grid, make_time_grid


@dataclass
class SampleResult:
    samples: torch.Tensor
    nfe: int  # backbone evaluations per sample, as counted by the velocity field
    sidenet_calls: int  # SideNet evaluations per sample (not NFE)
    wall_time: float  # seconds, the whole solve
    sidenet_time: float  # seconds of wall_time spent in SideNet evaluations
    time_grid: Optional[torch.Tensor]  # None for adaptive solvers


class NFEMismatchError(RuntimeError):
    """A solver spent a different number of evaluations than its budget."""


def sample(
    backbone: Any,
    solver: str | Solver,
    noise: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    nfe: Optional[int] = None,
    time_grid: Any = None,
    schedule: str | dict = "uniform",
    cfg_scale: float = 1.0,
    cfg_interval: tuple[float, float] = (0.0, 1.0),
) -> SampleResult:
    """Integrate the flow from noise (t = 1) to data (t = 0).

    Give either an NFE budget (the solver builds a ``schedule`` grid with as many
    intervals as the budget allows) or an explicit decreasing ``time_grid``; adaptive
    solvers need neither.  The measured NFE is checked against the budget.
    """
    backbone = resolve_backbone(backbone)
    solver = get_solver(solver)
    if tuple(noise.shape[1:]) != tuple(backbone.sample_shape):
        raise ValueError(
            f"noise has sample shape {tuple(noise.shape[1:])}, the backbone expects {tuple(backbone.sample_shape)}"
        )
    if labels is not None and len(labels) != len(noise):
        raise ValueError(f"{len(labels)} labels for {len(noise)} noise samples")

    if solver.adaptive:
        if nfe is not None or time_grid is not None:
            raise ValueError(f"{solver.registered_name} is adaptive: give neither nfe nor time_grid")
        grid = check_time_grid([1.0, 0.0])
    elif time_grid is not None:
        if nfe is not None:
            raise ValueError("give either nfe or time_grid, not both")
        grid = check_time_grid(time_grid)
    elif nfe is not None:
        grid = make_time_grid(schedule, solver.intervals_for(nfe))
    else:
        raise ValueError("give an NFE budget (nfe=...) or an explicit time_grid")

    field = VelocityField(backbone, labels, cfg_scale=cfg_scale, cfg_interval=cfg_interval)
    sidenet_before = solver.sidenet_calls, solver.sidenet_seconds
    start = time.perf_counter()
    samples = solver.solve(field, noise, grid, nfe=nfe)
    if samples.is_cuda:
        torch.cuda.synchronize(samples.device)
    wall = time.perf_counter() - start

    if not solver.adaptive:
        expected = int(nfe) if nfe is not None else solver.nfe_for(len(grid) - 1)
        if field.nfe != expected:
            raise NFEMismatchError(f"{solver.label()} spent {field.nfe} NFE for a budget of {expected}")
    return SampleResult(
        samples=samples,
        nfe=field.nfe,
        sidenet_calls=solver.sidenet_calls - sidenet_before[0],
        wall_time=wall,
        sidenet_time=solver.sidenet_seconds - sidenet_before[1],
        time_grid=None if solver.adaptive else grid,
    )
