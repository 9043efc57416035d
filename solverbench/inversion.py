"""``solverbench.invert``: a solver run from data (t = 0) to noise (t = 1), as docs/inversion.md says.

Inverting is sampling the mirrored flow ``u(x, s) = -v(x, 1 - s)`` from s = 1 to s = 0
(``VelocityField(mirrored=True)``), so every solver that computes only through the field
runs backwards unchanged, spending its budget as it does when it samples, with NFE counted
by the same field.  A budget makes the t-grid ``sample`` would make, traversed from 0 to 1;
with ``t_end`` the grid ``sample(..., t_start=t_end)`` makes, traversed from 0 to ``t_end``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.plan import Plan, make_plan
from solverbench.sampling import checked_call, solve_plan, start_plan
from solverbench.solver import Solver
from solverbench.timegrid import check_time_grid


class NotInvertible(ValueError):
    """A solver that cannot run from data to noise (``Solver.inversion_refusal``)."""


@dataclass
class InversionResult:
    noise: torch.Tensor  # the state at t = 1 (at t_end, or at the grid's last time for a partial grid)
    nfe: int  # backbone evaluations per sample, as counted by the velocity field
    wall_time: float  # seconds, the whole solve
    counters: dict[str, float]  # what the solver counted besides NFE in this call
    times: torch.Tensor  # the path times traversed, increasing (float64); [0, 1] for an adaptive solver
    plan: Plan  # the plan the solver ran, in mirrored time s = 1 - t


def check_invertible(solver: Solver) -> None:
    """Raise ``NotInvertible`` (one line, naming the reason) unless ``solver`` runs backwards."""
    reason = solver.inversion_refusal()
    if reason is not None:
        raise NotInvertible(f"{solver.label()} cannot invert: {reason}")


def inversion_plan(solver: Solver, *, nfe: Any = None, schedule: str | dict = "uniform", time_grid: Any = None,
                   partial: bool = False, t_end: Any = None) -> Plan:
    """The plan of an inversion in mirrored time: the grid ``sample`` makes for ``nfe`` on ``schedule`` (with
    ``t_end``: the one ``sample(..., t_start=t_end)`` makes), or the increasing ``time_grid`` given, traversed
    from data to noise (to ``t_end``), spending as the solver spends."""
    if time_grid is not None and t_end is None:
        s = 1 - increasing_grid(time_grid, partial)
        return make_plan(solver, nfe=nfe, times=s, partial=partial)
    forward = start_plan(solver, nfe=nfe, schedule=schedule, time_grid=time_grid, partial=partial, start=t_end,
                         name="t_end")
    if forward.times is None:  # a grid decided on a pilot of forward solves
        raise ValueError("an adaptive schedule is decided on forward solves and cannot be inverted; give the grid "
                         "it decided as time_grid (the forward sample's plan.times, flipped), or another schedule")
    return Plan(1 - forward.times.flip(0), forward.stages, forward.adaptive)


def increasing_grid(time_grid: Any, partial: bool) -> torch.Tensor:
    """An inversion's explicit grid: strictly increasing path times from 0 to 1 (``partial``: inside them)."""
    if isinstance(time_grid, (str, bytes)):
        raise TypeError(f"an inversion time_grid must be a 1-D sequence of times, got the string {time_grid!r}")
    try:
        grid = torch.as_tensor(time_grid, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"an inversion time_grid must be a 1-D sequence of times, got {time_grid!r}") from None
    if grid.dim() == 1 and len(grid) >= 2 and not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError(f"an inversion time_grid must be strictly increasing (from data t=0 toward noise t=1), "
                         f"got {grid.tolist()}")
    try:
        return check_time_grid(grid.flip(0), partial=partial).flip(0)
    except ValueError as err:
        raise ValueError(f"inversion time_grid {grid.tolist()} read from its end: {err}") from None


def invert(
    backbone: Any,
    solver: str | Solver,
    x0: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    nfe: Optional[int] = None,
    time_grid: Any = None,
    schedule: str | dict = "uniform",
    cfg_scale: float = 1.0,
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    guidance: Optional[Guidance] = None,
    partial: bool = False,
    t_end: Optional[float] = None,
) -> InversionResult:
    """Integrate the flow from data ``x0`` (t = 0) to noise (t = 1).

    The arguments mean what they mean for ``sample``: a budget ``nfe`` makes the ``schedule``
    grid ``sample`` would make, traversed backwards (so a round trip evaluates the backbone at
    the same times both ways); an explicit ``time_grid`` increases from 0 to 1 (``partial=True``:
    it may start above 0 or end below 1, and ``x0`` is the state at its first time); guidance is
    decided at the path time, on the same interval as when sampling.  The measured NFE is
    checked against the budget.  A solver that cannot invert is refused before any work.

    ``t_end`` (a time in (0, 1]) stops at that time: the whole budget is spent on ``[0, t_end]``, on the
    grid ``sample(..., t_start=t_end)`` walks (the budget's ``schedule`` grid scaled onto ``[t_end, 0]``),
    so that sampling from the result with ``t_start=t_end`` regenerates it, or edits it under other labels
    (SDEdit-style).  ``t_end=1`` is the whole inversion.
    """
    backbone, solver, labels, guidance = checked_call(backbone, solver, x0, labels, cfg_scale, cfg_interval,
                                                      guidance, "x0")
    check_invertible(solver)
    plan = inversion_plan(solver, nfe=nfe, schedule=schedule, time_grid=time_grid, partial=partial, t_end=t_end)
    result = solve_plan(solver, VelocityField(backbone, labels, guidance, mirrored=True), x0, plan)
    return InversionResult(noise=result.samples, nfe=result.nfe, wall_time=result.wall_time,
                           counters=result.counters, times=1 - plan.times, plan=plan)
