"""GITS: the time grid chosen by dynamic programming on teacher trajectories (Chen et al., ICML 2024,
"On the Trajectory Regularity of ODE-based Diffusion Sampling").

Training-free: a few teacher trajectories are solved on a fine grid ``1 = s_0 > ... > s_M = 0``
(uniform in t, ``fine_steps`` = M intervals); the cost of a coarse step from ``s_i`` to ``s_j``
is the error of one Euler step taken from the teacher's state there,

    c(i, j) = mean_n || x*_n(s_j) - (x*_n(s_i) - (s_i - s_j) v(x*_n(s_i), s_i)) ||_2,

and the grid of N intervals is the path ``0 = i_0 < i_1 < ... < i_N = M`` of least total cost
(``D[k][j] = min_i D[k - 1][i] + c(i, j)``, solved exactly).  As in the paper the cost uses
the first-order step whatever the solver that will sample on the grid; the solver enters
only through its number of intervals (a grid is shared by every solver with as many).
Each of the M fine points costs one NFE per trajectory, plus the teacher solve (its seconds are
charged in full to every grid that uses it, also where one run's grids share it in memory).
"""
from __future__ import annotations

import time

import torch

from solverbench.registry import register_schedule
from solverbench.schedules.learner import LearnedGrid, LearnedSchedule, ScheduleProblem


@register_schedule("gits")
class GITS(LearnedSchedule):
    """GITS: the time grid of least summed Euler-step error on teacher trajectories (dynamic programming)."""
    defaults = {"samples": 64, "fine_steps": 100, "teacher_rtol": 1e-5, "seed": 0}
    per_solver = False

    def check(self) -> None:
        if self.settings["samples"] < 1 or self.settings["fine_steps"] < 2 or self.settings["teacher_rtol"] <= 0:
            raise ValueError("schedule 'gits': samples >= 1, fine_steps >= 2 and teacher_rtol > 0 are needed, got "
                             f"{self.settings}")

    def check_intervals(self, intervals: int) -> None:
        """The grid's points are chosen among the fine grid's: at most ``fine_steps`` intervals."""
        fine = self.settings["fine_steps"]
        if intervals > fine:
            raise ValueError(f"schedule 'gits': {intervals} intervals cannot be chosen from a fine grid of {fine}; "
                             f"raise fine_steps to {intervals} or more")

    def learn(self, problem: ScheduleProblem) -> LearnedGrid:
        start = time.perf_counter()
        n, fine = problem.intervals, self.settings["fine_steps"]
        self.check_intervals(n)
        s = torch.linspace(1.0, 0.0, fine + 1, dtype=torch.float64)
        seed, samples = self.settings["seed"], self.settings["samples"]
        teacher = problem.teacher(seed, samples, s, self.settings["teacher_rtol"])  # (M + 1, B, ...)
        cost = euler_step_costs(problem, teacher.states, s, problem.draws(seed, samples)[1])
        path, total = cheapest_path(cost, n)
        return LearnedGrid(s[path], time.perf_counter() - start + teacher.charged, n - 1,
                           {"method": "gits", "cost": total, "fine_steps": fine, "samples": samples})


def euler_step_costs(problem: ScheduleProblem, states: torch.Tensor, s: torch.Tensor, labels) -> torch.Tensor:
    """``c[i, j]`` (``i < j``): mean L2 error of the Euler step from the teacher at ``s_i`` to ``s_j``; inf elsewhere."""
    m = len(s) - 1
    field = problem.field(labels)
    cost = torch.full((m + 1, m + 1), float("inf"), dtype=torch.float64)
    with torch.no_grad():
        for i in range(m):
            v = field(states[i].to(problem.dtype), float(s[i])).to(states.dtype)  # in the cells' dtype
            for j in range(i + 1, m + 1):
                step = states[i] - (s[i] - s[j]) * v
                cost[i, j] = (states[j] - step).flatten(1).norm(dim=1).mean()
    return cost


def cheapest_path(cost: torch.Tensor, intervals: int) -> tuple[list[int], float]:
    """The path ``0 = i_0 < ... < i_N = M`` of ``intervals`` steps minimising the summed ``cost`` (exact DP)."""
    m = cost.shape[0] - 1
    best = torch.full((intervals + 1, m + 1), float("inf"), dtype=torch.float64)
    came_from = torch.zeros((intervals + 1, m + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, intervals + 1):
        totals = best[k - 1][:, None] + cost  # (from i, to j)
        best[k], came_from[k] = totals.min(dim=0)
    path = [m]
    for k in range(intervals, 0, -1):
        path.append(int(came_from[k, path[-1]]))
    return path[::-1], float(best[intervals, m])
