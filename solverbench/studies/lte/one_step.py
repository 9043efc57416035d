"""Is a solver that declares no history really a one-step method?

A one-step method's solve over ``[t, t - H, t - 2 H]`` is its solve over ``[t, t - H]``
followed by its solve over ``[t - H, t - 2 H]``.  A solver that carries anything from one
interval to the next (a multistep history, a reused velocity) breaks that identity, and
stepping it once from an exact state would measure only its start-up step.  Such a
solver has no exact-history step until it implements ``Solver.local_step`` (declaring
``history_length`` if it uses past states); the study says so instead of measuring the
wrong thing.
"""
from __future__ import annotations

from typing import Callable

import torch

from solverbench.field import VelocityField
from solverbench.plan import make_plan
from solverbench.solver import NoExactHistoryStep, Solver


def uses_default_local_step(solver: Solver) -> bool:
    return type(solver).local_step is Solver.local_step


def check_one_step(solver: Solver, make_field: Callable[[], VelocityField], x: torch.Tensor, t: float) -> None:
    """Raise ``NoExactHistoryStep`` unless two chained one-interval solves equal one two-interval solve.

    Checked on ``[t, 3t/4, t/2]``; equal means within 100 ulps of ``x``'s dtype.
    """
    times = [t, 0.75 * t, 0.5 * t]
    together = solver.solve(make_field(), x, make_plan(solver, times=times, partial=True))
    chained = x
    for k in range(2):
        chained = solver.solve(make_field(), chained, make_plan(solver, times=times[k:k + 2], partial=True))
    eps = torch.finfo(x.dtype).eps
    scale = max(1.0, float(together.abs().max()))
    if not torch.allclose(together, chained, rtol=0.0, atol=100 * eps * scale):
        gap = float((together - chained).abs().max())
        raise NoExactHistoryStep(
            f"no exact-history step: {solver.label()} declares history_length = {solver.history_length} and no "
            f"local_step of its own, but its solve() over [{', '.join(f'{v:.6g}' for v in times)}] differs from two chained one-interval solves "
            f"(by up to {gap:.3g}), so it carries state from one interval to the next; it must implement "
            "Solver.local_step(field, history_times, history_states, t_next) (a multistep method also declares "
            "history_length; a method that only reuses a velocity can step as one solve over [t, t_next])")
