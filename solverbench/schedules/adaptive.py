"""The adaptive schedule in a grid file: ``schedule: {name: adaptive, ...}`` (solverbench.adaptive).

A cell's grid is decided on the pilot for its (backbone, solver, NFE budget, guidance) and cached as a
learned grid is; its row records the grid walked (``schedule_times``), the pilot's wall time
(``schedule_train_seconds``), its NFE per pilot trajectory (``schedule_pilot_nfe``) and the estimated global
error of the grid on the pilot (``schedule_estimated_error``).  In a grid file it spends the cells' budgets
(budget mode); the error-target mode decides its own NFE, which a grid's NFE axis cannot hold, so it is
refused there and runs from Python (``solverbench.sample``).
"""
from __future__ import annotations

from solverbench.adaptive import decide_grid
from solverbench.adaptive_settings import DEFAULTS, MIN_INTERVALS, adaptive_settings
from solverbench.plan import check_adapts
from solverbench.registry import register_schedule
from solverbench.schedules.learner import LearnedGrid, LearnedSchedule, ScheduleProblem
from solverbench.solver import Solver


@register_schedule("adaptive")
class Adaptive(LearnedSchedule):
    """Intervals chosen from the solver's embedded local-error estimate on a pilot, the budget spent exactly."""

    defaults = DEFAULTS

    def check(self) -> None:
        self.adaptive = adaptive_settings(self.settings)

    def check_solver(self, solver: Solver) -> None:
        super().check_solver(solver)
        check_adapts(solver)

    def check_intervals(self, intervals: int) -> None:
        if not self.adaptive.budget_mode:
            raise ValueError("schedule 'adaptive' with a tolerance decides the NFE itself, which a grid's NFE axis "
                             "cannot hold; in a grid file give no tolerance (the cells' budgets are spent exactly), "
                             "or run the error-target mode from Python (solverbench.sample)")
        if intervals < MIN_INTERVALS:
            raise ValueError(f"schedule 'adaptive' needs at least {MIN_INTERVALS} intervals (the first is taken "
                             f"before any estimate, the last lands on t = 0), not {intervals}")

    def learn(self, problem: ScheduleProblem) -> LearnedGrid:
        self.check_solver(problem.solver)
        self.check_intervals(problem.intervals)
        grid = decide_grid(problem.solver, problem.backbone, problem.guidance, self.adaptive, nfe=problem.nfe,
                           conditional=problem.backbone.num_classes is not None, dtype=problem.dtype,
                           device=problem.device, progress=problem.progress)
        return LearnedGrid(grid.times, grid.seconds, grid.intervals - 1, grid.stats())
