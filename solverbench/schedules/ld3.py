"""LD3: the time grid learned by backpropagating through the solver (Tong et al., ICLR 2025,
"Learning to Discretize Denoising Diffusion ODEs").

Parametrisation: N logits ``xi``; the step sizes are ``softmax(xi)`` (positive, summing to 1)
and the grid ``t_0 = 1, t_k = 1 - sum_{i<k} softmax(xi)_i, t_N = 0`` is strictly decreasing
by construction.  ``xi`` starts from the ``init`` schedule (uniform by default).

Objective: the teacher is the reference solve ``Psi*(x_T)`` from each training noise ``x_T``
(float64 dopri5); the student is the solver on the grid, ``Psi_xi``.  LD3's relaxed ("soft
teacher") objective lets the student start from a point of a small ball around the noise,

    L(xi) = E_{x_T} min_{||x'_T - x_T|| <= r sigma_T} || Psi_xi(x'_T) - Psi*(x_T) ||^2 / D,

with ``sigma_T = 1`` here (t = 1 is pure standard noise) and ``r`` the ``slack`` setting; the
slack points ``x'_T`` are optimised with ``xi`` (Adam, ``slack_lr`` for them, ``lr`` for ``xi``;
projected back onto their balls after every step); ``slack: 0`` is the hard objective.  The distance is the mean squared error per dimension (the paper uses LPIPS on
images; solverbench's trajectory error is an L2 distance, so the grid is learned for what is
measured).  Gradients flow through the solver, the velocity field and the backbone, so the
solver must declare ``differentiable_times``.  After every epoch the grid is scored on held-out
trajectories without slack (the hard objective, ``r = 0``) and the best one is kept; the
starting grid is scored too, so the result is never worse on held-out data than ``init``.
The recorded wall time includes the teacher solve (charged in full to every grid that uses it,
also where one run's grids share it in memory).
"""
from __future__ import annotations

import time

import torch

from solverbench.registry import register_schedule
from solverbench.plan import make_plan
from solverbench.progress import progress_bar
from solverbench.schedules.learner import LearnedGrid, LearnedSchedule, ScheduleProblem
from solverbench.solver import Solver
from solverbench.timegrid import make_time_grid


@register_schedule("ld3")
class LD3(LearnedSchedule):
    """LD3: the time grid learned by backpropagating through the solver against teacher endpoints."""
    defaults = {"samples": 100, "validation": 50, "batch_size": 25, "epochs": 10, "lr": 0.05, "slack": 0.1,
                "slack_lr": 0.005, "teacher_rtol": 1e-5, "seed": 0, "init": "uniform"}

    def check(self) -> None:
        s = self.settings
        if s["samples"] < 1 or s["validation"] < 1 or s["batch_size"] < 1 or s["epochs"] < 1:
            raise ValueError("schedule 'ld3': samples, validation, batch_size and epochs must be at least 1")
        if s["lr"] <= 0 or s["teacher_rtol"] <= 0:
            raise ValueError("schedule 'ld3': lr and teacher_rtol must be positive")
        try:
            make_time_grid(s["init"], 2)
        except (TypeError, ValueError) as err:
            raise ValueError(f"schedule 'ld3': init must be a closed-form schedule ({err})") from None

    def check_solver(self, solver: Solver) -> None:
        super().check_solver(solver)
        if not solver.differentiable_times:
            raise ValueError(f"schedule 'ld3' learns its grid by backpropagating through the solver, and "
                             f"{solver.label()} does not pass gradients to its time grid (differentiable_times is "
                             f"False); use schedule gits with it, or learn the grid with a solver that does")

    def learn(self, problem: ScheduleProblem) -> LearnedGrid:
        self.check_solver(problem.solver)
        s, start = self.settings, time.perf_counter()
        n_train, n_val = s["samples"], s["validation"]
        noise, labels = problem.draws(s["seed"], n_train + n_val)
        solve = problem.teacher(s["seed"], n_train + n_val, [1.0, 0.0], s["teacher_rtol"])
        teacher = solve.states[-1]
        train, val = slice(0, n_train), slice(n_train, None)
        label = (lambda sl: None) if labels is None else (lambda sl: labels[sl])

        init = make_time_grid(s["init"], problem.intervals)
        xi = torch.log(init[:-1] - init[1:]).clone().requires_grad_(True)
        slack = torch.zeros_like(noise[train], requires_grad=True)
        optimiser = torch.optim.Adam([{"params": [xi], "lr": s["lr"]}, {"params": [slack], "lr": s["slack_lr"]}])

        def held_out() -> float:
            with torch.no_grad():
                return self.loss(problem, grid_of(xi.detach()), noise[val], label(val), teacher[val]).item()

        best_loss, best_xi, history = held_out(), xi.detach().clone(), []
        first = best_loss
        generator = torch.Generator().manual_seed(int(s["seed"]))
        bar = progress_bar(range(s["epochs"]), desc=f"ld3 grid for {problem.solver.label()} at {problem.nfe} NFE",
                           enabled=problem.progress, off_terminal="total", leave=False)
        for _ in bar:
            for batch in torch.randperm(n_train, generator=generator).split(s["batch_size"]):
                optimiser.zero_grad()
                loss = self.loss(problem, grid_of(xi), noise[batch] + slack[batch], label(batch), teacher[batch],
                                 differentiable=True)
                loss.backward()
                optimiser.step()
                with torch.no_grad():  # back onto the balls ||x' - x_T|| <= r sigma_T
                    norms = slack.flatten(1).norm(dim=1).clamp_min(1e-30)
                    slack.mul_((s["slack"] / norms).clamp(max=1.0).view(-1, *[1] * (slack.dim() - 1)))
            score = held_out()
            history.append(score)
            if score < best_loss:
                best_loss, best_xi = score, xi.detach().clone()
            bar.set_postfix(held_out=f"{score:.3g}")
        return LearnedGrid(grid_of(best_xi), time.perf_counter() - start + solve.charged, problem.intervals - 1,
                           {"method": "ld3", "held_out_loss_init": first, "held_out_loss": best_loss,
                            "held_out_history": history, "samples": n_train, "validation": n_val})

    @staticmethod
    def loss(problem: ScheduleProblem, times: torch.Tensor, x_T: torch.Tensor, labels, teacher: torch.Tensor,
             differentiable: bool = False) -> torch.Tensor:
        """Mean squared error per dimension of the solver on ``times`` from ``x_T`` against ``teacher``."""
        field = problem.field(labels, differentiable=differentiable)
        plan = make_plan(problem.solver, nfe=problem.nfe, times=times)
        out = problem.solver.solve(field, x_T.to(problem.dtype), plan)
        return ((out.to(teacher.dtype) - teacher) ** 2).mean()


def grid_of(xi: torch.Tensor) -> torch.Tensor:
    """``t_0 = 1, t_k = 1 - sum_{i<k} softmax(xi)_i, t_N = 0``: strictly decreasing, differentiable in ``xi``."""
    steps = torch.softmax(xi, dim=0)
    one, zero = torch.ones(1, dtype=xi.dtype), torch.zeros(1, dtype=xi.dtype)
    return torch.cat([one, 1.0 - torch.cumsum(steps, dim=0)[:-1], zero])
