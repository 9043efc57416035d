"""The NFE plan: the time grid a solver integrates along and the evaluations each interval spends.

A solver states once how it spends a budget: ``stages`` evaluations per interval, and the
stage counts its last interval may take where a budget is not a multiple of ``stages``
(``partial_stages``: Heun's ``(1,)``, an Euler interval, as EDM's sampler ends).
``make_plan`` turns a budget and a schedule, or an explicit grid, into the plan; sampling
and the LTE study make their plans here, and solvers read them: ``plan.times`` is the
grid, ``plan.stages[k]`` what interval k spends, ``plan.nfe`` the budget the field's count
is checked against.

The adaptive schedule (``{name: adaptive, ...}``, solverbench.adaptive) makes an undecided plan: its
``pilot`` holds the schedule, its ``times`` are None until ``solverbench.sampling.solve_plan`` decides them
on the pilot for the field it solves on (its ``stages`` are the budget's; none in error-target mode).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

from solverbench.adaptive_settings import MIN_INTERVALS, adaptive_settings, is_adaptive
from solverbench.registry import SOLVERS
from solverbench.timegrid import check_time_grid, make_time_grid

WHOLE_SPAN = (1.0, 0.0)  # an adaptive solver's "grid": from noise to data
MAX_INTERVALS = 10**6  # the most intervals a budget may make: its time grid is the first thing a solve allocates


@dataclass(frozen=True)
class Plan:
    times: Optional[torch.Tensor]  # float64, strictly decreasing: t_0 > t_1 > ... > t_N; None until decided
    stages: tuple[int, ...]  # evaluations of each interval; empty for an adaptive solver
    adaptive: bool = False  # the solver chooses its own steps inside [t_0, t_N]
    pilot: Optional[dict[str, Any]] = None  # the adaptive schedule that decides ``times`` (None: they are given)

    @property
    def intervals(self) -> int:
        return len(self.stages) if self.times is None else len(self.times) - 1

    @property
    def nfe(self) -> Optional[int]:
        """The evaluations the plan spends; None for an adaptive solver (it is only measured) and for an adaptive
        schedule's error-target mode until its grid is decided."""
        return None if self.adaptive or (self.times is None and not self.stages) else sum(self.stages)

    @property
    def differentiable(self) -> bool:
        """The times carry gradients (a time grid being learned through the solver)."""
        return self.times.requires_grad

    def time_values(self) -> list:
        """The grid's times as Python floats, or as 0-d tensors where they carry gradients: what a solver
        computes with, so that a solver declaring ``differentiable_times`` passes the gradients on."""
        return time_values(self.times)

    def steps(self) -> Iterator[tuple[Any, Any, int]]:
        """``(t, t_next, stages)`` of every interval, in order (times as ``time_values`` gives them)."""
        times = self.time_values()
        for k in range(self.intervals):
            yield times[k], times[k + 1], self.stages[k]


def time_values(times: torch.Tensor) -> list:
    """``times`` as Python floats, or as 0-d tensors where they carry gradients (``Plan.time_values``)."""
    return list(times.unbind()) if times.requires_grad else [float(t) for t in times]


def check_nfe(nfe: Any) -> Optional[int]:
    """An NFE budget: ``None`` or a whole number >= 1 (not a float, bool or string)."""
    if nfe is None:
        return None
    if isinstance(nfe, bool) or isinstance(nfe, (float, str, bytes)):
        raise TypeError(f"nfe must be a whole number of evaluations, got {nfe!r} ({type(nfe).__name__})")
    try:
        value = operator.index(nfe)  # ints, numpy and 0-d integer tensors
    except TypeError:
        raise TypeError(f"nfe must be a whole number of evaluations, got {nfe!r} ({type(nfe).__name__})") from None
    if value < 1:
        raise ValueError(f"an NFE budget must be at least 1, got {value}")
    return value


def make_plan(solver: Any, *, nfe: Any = None, schedule: str | dict = "uniform", times: Any = None,
              partial: bool = False) -> Plan:
    """The plan of ``solver`` for a budget ``nfe`` on ``schedule``, or along the explicit grid ``times``.

    A budget of ``s (N - 1) + r`` evaluations (``s`` the solver's stages, ``0 < r <= s``) makes
    N intervals, the last spending r; ``r`` must be ``s`` or one of the solver's
    ``partial_stages``.  An explicit grid alone spends ``s`` per interval; given with a budget
    (a grid learned for that budget) it must have the N intervals the budget makes, which spend
    as the budget says.  ``partial=True`` lets it start below 1 or end above 0.  Adaptive solvers
    take neither.  A budget of more than ``MAX_INTERVALS`` intervals is refused before anything is allocated.
    The adaptive schedule gives an undecided plan (``adaptive_plan``).
    """
    name = solver.label()
    nfe = check_nfe(nfe)
    if partial and times is None:
        raise ValueError("partial=True applies to an explicit time_grid; give one (e.g. time_grid=[1.0, 0.5, 0.2])")
    if solver.adaptive:
        if nfe is not None or times is not None:
            raise ValueError(f"{name} is adaptive: give neither nfe nor time_grid")
        return Plan(check_time_grid(list(WHOLE_SPAN)), (), adaptive=True)
    if times is None and is_adaptive(schedule):
        return adaptive_plan(solver, nfe, schedule)
    stages = int(solver.stages)
    if times is not None and nfe is None:
        grid = check_time_grid(times, partial=partial)
        return Plan(grid, (stages,) * (len(grid) - 1))
    if nfe is None:
        raise ValueError("give an NFE budget (nfe=...) or an explicit time_grid")
    return plan_for_budget(solver, nfe, schedule, times, partial)


def plan_for_budget(solver: Any, nfe: int, schedule: str | dict, times: Any, partial: bool) -> Plan:
    """``make_plan`` with a budget: the intervals it makes, checked, on ``schedule`` or along ``times``."""
    name = solver.label()
    stages = int(solver.stages)
    intervals = -(-nfe // stages)
    if intervals > MAX_INTERVALS:
        raise ValueError(f"{name} would spend a budget of {nfe} NFE on {intervals} intervals; at most "
                         f"{MAX_INTERVALS} intervals are allowed (the time grid is allocated first, and no solve "
                         "needs more)")
    last = nfe - stages * (intervals - 1)
    if last != stages and last not in tuple(solver.partial_stages):
        spendable = ", ".join(str(r) for r in sorted(solver.partial_stages)) or "none"
        raise ValueError(f"{name} spends {stages} NFE per interval and cannot end on an interval of {last} "
                         f"(the remainders it takes: {spendable}); give a budget it can spend")
    if solver.last_stages and last not in tuple(solver.last_stages):
        must = " or ".join(str(r) for r in solver.last_stages)
        near = [n for n in range(max(1, nfe - stages), nfe + stages + 1)
                if n != nfe and any(n >= r and (n - r) % stages == 0 for r in solver.last_stages)]
        raise ValueError(f"{name} ends on an interval of {must} NFE, so it cannot spend a budget of {nfe}; "
                         f"give {' or '.join(map(str, near))}")
    spending = (stages,) * (intervals - 1) + (last,)
    if times is None:
        return Plan(make_time_grid(schedule, intervals), spending)
    grid = check_time_grid(times, partial=partial)
    if len(grid) - 1 != intervals:
        raise ValueError(f"{name} spends a budget of {nfe} NFE on {intervals} interval(s), but the time grid given "
                         f"with it has {len(grid) - 1}")
    return Plan(grid, spending)


def adaptive_plan(solver: Any, nfe: Optional[int], schedule: str | dict) -> Plan:
    """The undecided plan of the adaptive schedule (its settings checked): the budget's stages (budget mode) or
    none (error-target mode, ``tolerance`` given, which takes no budget)."""
    settings = adaptive_settings(schedule)
    check_adapts(solver)
    if not settings.budget_mode:
        if nfe is not None:
            raise ValueError(f"schedule 'adaptive' with a tolerance decides the NFE itself (at most max_nfe = "
                             f"{settings.max_nfe}); give no nfe, or drop the tolerance to spend a budget of {nfe}")
        return Plan(None, (), pilot=settings.spec())
    if nfe is None:
        raise ValueError("schedule 'adaptive' needs an NFE budget (nfe=...) to spend, or a tolerance to reach "
                         "({name: adaptive, tolerance: ...})")
    plan = plan_for_budget(solver, nfe, "uniform", None, False)
    if plan.intervals < MIN_INTERVALS:
        raise ValueError(f"schedule 'adaptive' needs at least {MIN_INTERVALS} intervals (the first is taken before "
                         f"any estimate, the last lands on t = 0), and {solver.label()} makes {plan.intervals} of a "
                         f"budget of {nfe} NFE; give a budget of at least {MIN_INTERVALS * int(solver.stages)}")
    return Plan(None, plan.stages, pilot=settings.spec())


def check_adapts(solver: Any) -> None:
    """Refuse a solver without an embedded local-error estimate, naming those that have one."""
    if not getattr(solver, "embedded_error", False):
        offering = [n for n in SOLVERS.names() if getattr(SOLVERS.get(n), "embedded_error", False)]
        raise ValueError(f"schedule 'adaptive' chooses each interval from the solver's embedded local-error "
                         f"estimate, and {solver.label()} offers none; the solvers that do: {', '.join(offering)}")
