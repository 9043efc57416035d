"""What every learned schedule shares: its settings, the problem it is learned for, and what it yields.

A learned schedule is a time grid made per (backbone, solver, NFE budget, guidance) by an
optimisation (LD3) or a search (GITS) against teacher trajectories, then sampled on like any
explicit grid.  A subclass registered with ``register_schedule(name)`` declares its settings
(``defaults``, checked when a grid file is read) and implements ``learn(problem)``.
"""
from __future__ import annotations

import dataclasses
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from solverbench.backbone import backbone_identity
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json
from solverbench.noise import training_draws
from solverbench.plan import make_plan
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.solver import Solver
from solverbench.timegrid import check_time_grid


@dataclass(frozen=True)
class ScheduleProblem:
    """One grid to learn: for ``solver`` (prepared) on ``backbone`` at budget ``nfe`` under ``guidance``."""

    backbone: Any
    solver: Solver
    nfe: int
    guidance: Guidance
    device: str = "cpu"
    progress: bool = False
    dtype: torch.dtype = torch.float32  # of the solver's state, as the cells sample (the teacher is float64)

    @property
    def intervals(self) -> int:
        """The intervals the solver's plan for the budget has (the learned grid has as many)."""
        return make_plan(self.solver, nfe=self.nfe).intervals

    def draws(self, seed: int, n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Float64 noise and labels of ``n`` training trajectories, on the device (streams no sample uses)."""
        noise, labels = training_draws(seed, n, self.backbone.sample_shape, self.backbone.num_classes,
                                       dtype=torch.float64)
        return noise.to(self.device), None if labels is None else labels.to(self.device)

    def field(self, labels: Optional[torch.Tensor], *, differentiable: bool = False) -> VelocityField:
        return VelocityField(self.backbone, labels, self.guidance, differentiable=differentiable)

    def teacher(self, seed: int, n: int, times: Any, rtol: float) -> "Teacher":
        """The reference solve's float64 states at ``times`` (the first 1) from the ``n`` training draws of
        ``seed``, ``(len(times), n, ...)``; the last few are kept in memory, so the grids of several solvers
        and budgets share one solve (each is still charged its seconds: ``Teacher.charged``)."""
        times = [float(t) for t in times]
        key = (canonical_json(backbone_identity(self.backbone)), self.guidance, seed, n, tuple(times), rtol,
               str(self.device))
        if key in _TEACHERS:
            return dataclasses.replace(_TEACHERS[key], reused=True)
        start = time.perf_counter()
        noise, labels = self.draws(seed, n)
        with torch.no_grad():
            states = reference_trajectory(self.field(labels), noise, times, Tolerance(rtol, rtol))
        while len(_TEACHERS) >= TEACHERS_KEPT:
            _TEACHERS.pop(next(iter(_TEACHERS)))
        _TEACHERS[key] = Teacher(states, time.perf_counter() - start)
        return _TEACHERS[key]


@dataclass(frozen=True)
class Teacher:
    states: torch.Tensor  # (times, n, ...) float64
    seconds: float  # what the solve took
    reused: bool = False  # read from memory: its seconds were not spent now, but are charged (``charged``)

    @property
    def charged(self) -> float:
        """Seconds to add to a learning's wall time: the solve's, where this learning did not pay them."""
        return self.seconds if self.reused else 0.0


TEACHERS_KEPT = 4
_TEACHERS: dict[tuple, torch.Tensor] = {}


@dataclass
class LearnedGrid:
    """A learned time grid and what learning it cost."""

    times: torch.Tensor  # float64, 1 -> 0
    seconds: float  # wall time of the learning (teacher solves included)
    parameters: int  # free numbers of the grid: its interior times
    stats: dict[str, Any] = field(default_factory=dict)  # the learner's own record (losses, iterations)

    def __post_init__(self):
        self.times = check_time_grid(self.times.detach().to(torch.float64).cpu())

    def row_fields(self) -> dict[str, Any]:
        """Result columns of a cell sampled on this grid (and the learner's own, ``stats["columns"]``, each as
        ``schedule_NAME``)."""
        own = {f"schedule_{name}": value for name, value in self.stats.get("columns", {}).items()}
        return {"schedule_train_seconds": self.seconds, "schedule_params": self.parameters,
                "schedule_times": canonical_json([round(float(t), 8) for t in self.times]), **own}


class LearnedSchedule:
    """Base class of learned schedules; ``settings`` are those of the grid file's ``{name: ..., key: value}``."""

    registered_name: str = "?"
    defaults: Mapping[str, Any] = {}
    per_solver: bool = True  # False: the grid depends on the solver only through its intervals (it is shared)

    def __init__(self, **settings: Any):
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise ValueError(f"schedule {self.registered_name!r}: unknown setting(s) {', '.join(unknown)}; "
                             f"its settings: " + ", ".join(f"{k} (default {v!r})" for k, v in self.defaults.items()))
        merged = {**self.defaults, **settings}
        for key, value in merged.items():
            default = self.defaults[key]
            if isinstance(default, numbers.Real) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                    raise ValueError(f"schedule {self.registered_name!r}: {key} must be a number >= 0, got {value!r}")
                if isinstance(default, int) and value != int(value):
                    raise ValueError(f"schedule {self.registered_name!r}: {key} must be a whole number, got {value!r}")
                merged[key] = type(default)(value)
        self.settings = merged
        self.check()

    def check(self) -> None:
        """Refuse settings that cannot work (raise ValueError); called on construction."""

    def check_solver(self, solver: Solver) -> None:
        """Refuse a solver this schedule cannot be learned for (raise ValueError)."""
        if solver.adaptive:
            raise ValueError(f"schedule {self.registered_name!r}: {solver.label()} is adaptive and takes no time grid")

    def check_intervals(self, intervals: int) -> None:
        """Refuse a grid of ``intervals`` intervals this schedule cannot make (raise ValueError); checked for
        every budget of a grid file when it is read."""

    def key(self) -> dict[str, Any]:
        """What defines the learned grid besides the problem: the name and every setting."""
        return {"name": self.registered_name, **self.settings}

    def learn(self, problem: ScheduleProblem) -> LearnedGrid:
        raise NotImplementedError

