"""Learned and optimised time grids: made per (backbone, solver, NFE, guidance), cached, then sampled on.

A grid file names one as a schedule, ``schedule: {name: ld3, epochs: 20}``; every cell on it
first gets its grid from ``<results>/.cache/schedules`` or learns it there, and its row records
what learning cost (``schedule_train_seconds``, ``schedule_params``) and the grid itself
(``schedule_times``).  Built in: ``ld3`` (learned by backpropagating through the solver),
``gits`` (dynamic programming on teacher trajectories) and ``adaptive`` (decided from the solver's
embedded error estimate on a pilot, solverbench.adaptive).  A plugin file adds one with
``@register_schedule(name)`` on a ``LearnedSchedule`` subclass.

From Python: ``learn_time_grid(backbone, solver, nfe, {"name": "gits"})`` gives the grid; hand
it to ``solverbench.sample(..., nfe=nfe, time_grid=grid.times)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from solverbench.backbone import resolve_backbone
from solverbench.guidance import NO_GUIDANCE, Guidance
from solverbench.registry import SCHEDULES
from solverbench.schedules import adaptive, gits, ld3  # noqa: F401  (registers them)
from solverbench.schedules.cache import cached_time_grid
from solverbench.schedules.learner import LearnedGrid, LearnedSchedule, ScheduleProblem
from solverbench.solver import Solver, get_solver

__all__ = ["learn_time_grid", "learned_schedule", "is_learned", "LearnedGrid", "LearnedSchedule", "ScheduleProblem"]


def is_learned(schedule: Any) -> bool:
    """Whether a schedule spec names a learned schedule (``{name: ld3, ...}`` or ``"ld3"``)."""
    name = schedule if isinstance(schedule, str) else dict(schedule).get("name") if isinstance(schedule, Mapping) else None
    return isinstance(name, str) and name in SCHEDULES


def learned_schedule(schedule: str | Mapping[str, Any]) -> LearnedSchedule:
    """The learned schedule a spec names, its settings checked."""
    spec = {"name": schedule} if isinstance(schedule, str) else dict(schedule)
    name = spec.pop("name")
    return SCHEDULES.get(name)(**spec)


def learn_time_grid(backbone: Any, solver: str | Solver, nfe: int, schedule: str | Mapping[str, Any], *,
                    guidance: Guidance = NO_GUIDANCE, cache_dir: Optional[str | Path] = None, device: str = "cpu",
                    dtype: torch.dtype = torch.float32, progress: bool = False) -> LearnedGrid:
    """The grid ``schedule`` learns for ``solver`` (prepared, where it needs preparing) on ``backbone`` at
    budget ``nfe`` under ``guidance``; read from ``cache_dir`` where it was learned before."""
    problem = ScheduleProblem(resolve_backbone(backbone), get_solver(solver), int(nfe), guidance, device, progress,
                              dtype)
    return cached_time_grid(learned_schedule(schedule), problem, cache_dir)
