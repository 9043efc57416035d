"""The probe: a scheduler run as ``solve`` will run it, on a small analytic problem, before any cell.

It measures how many evaluations the scheduler spends per step (one, or FlowMatchHeun's two with
one on the last) and refuses, in one line saying why, a setting whose sigmas are not a flow grid
ending at 0, whose samples are not finite, or that draws noise while sampling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from solvers.diffusers_schedulers.flow import t_of_sigma
from solvers.diffusers_schedulers.library import Refused

PROBE_STEPS = (3, 4)  # the probe's num_inference_steps: enough to tell one evaluation per step from Heun's 2N - 1


@dataclass(frozen=True)
class Spending:
    """What the scheduler evaluates on N steps: ``stages`` per step, ``last`` on its final one."""

    stages: int
    last: int

    def of(self, steps: int) -> tuple[int, ...]:
        return (self.stages,) * (steps - 1) + (self.last,)


def probe_state() -> torch.Tensor:
    return torch.linspace(-1.5, 1.5, 32, dtype=torch.float32).reshape(2, 4, 2, 2)


def probe_velocity(x: torch.Tensor, t: float) -> torch.Tensor:
    """A smooth stand-in for a flow model's velocity (any will do: the probe checks grids and counts)."""
    return torch.tanh(x) * (1 + t) - 0.5 * x + 0.2


def run_scheduler(scheduler: Any, velocity: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor
                  ) -> torch.Tensor:
    """The scheduler's sampling loop from ``x`` at its first sigma, the model evaluated at ``t_of_sigma``."""
    scheduler.set_begin_index(0)
    for i, timestep in enumerate(scheduler.timesteps):
        x = scheduler.step(velocity(x, t_of_sigma(scheduler.sigmas[i])), timestep, x, return_dict=False)[0]
    return x


def check_flow_grid(name: str, scheduler: Any, steps: int) -> int:
    """The number of steps (distinct sigma intervals) of a scheduler set for ``steps``; ``Refused`` unless its
    sigmas pair with its timesteps and run down from at most 1 to exactly 0."""
    sigmas = [float(s) for s in scheduler.sigmas]
    if len(sigmas) != len(scheduler.timesteps) + 1:
        raise Refused(f"{name} cannot sample a flow-matching model: it sets {len(sigmas)} sigmas for "
                      f"{len(scheduler.timesteps)} timesteps, not one more, so where it evaluates the model is unknown")
    if max(sigmas) > 1 + 1e-6 or min(sigmas) < 0:
        raise Refused(f"{name} cannot sample a flow-matching model: its sigmas run from {max(sigmas):.4g} to "
                      f"{min(sigmas):.4g}, outside [0, 1], so they are no flow times t = sigma")
    if any(b > a for a, b in zip(sigmas, sigmas[1:])):
        raise Refused(f"{name} cannot sample a flow-matching model: its sigmas do not decrease (it does not run "
                      "from noise to data)")
    if sigmas[-1] != 0:
        raise Refused(f"{name} cannot sample a flow-matching model: its sigmas end at {sigmas[-1]:.4g} (for {steps} "
                      "steps), not at 0, so its last state is not a sample")
    return sum(1 for a, b in zip(sigmas, sigmas[1:]) if b < a)


def spending_of(name: str, evaluations: dict[int, int]) -> Spending:
    """One evaluation per step (N on N steps) or Heun's two per step but one on the last (2N - 1)."""
    if all(e == n for n, e in evaluations.items()):
        return Spending(1, 1)
    if all(e == 2 * n - 1 for n, e in evaluations.items()):
        return Spending(2, 1)
    counts = ", ".join(f"{e} on {n} steps" for n, e in evaluations.items())
    raise Refused(f"{name} cannot sample a flow-matching model here: it spends {counts} evaluations, neither one per "
                  "step nor two per step with one on the last, so solverbench cannot plan its budgets")


def probe(name: str, build: Callable[[], Any], set_grid: Callable[[Any, int], None]) -> Spending:
    """Run the scheduler as ``solve`` will (``build``, ``set_grid(scheduler, steps)``) on a probe problem; its
    spending per step, or ``Refused`` with the reason it cannot sample a flow model (grid, NaN, noise)."""
    evaluations = {}
    for steps in PROBE_STEPS:
        outputs = []
        for seed in (0, 1):  # a scheduler that draws noise gives two different samples
            scheduler = build()
            try:
                set_grid(scheduler, steps)
                if seed == 0:
                    if check_flow_grid(name, scheduler, steps) != steps:
                        raise Refused(f"{name} cannot sample a flow-matching model here: its grid for "
                                      f"num_inference_steps={steps} has another number of steps")
                    evaluations[steps] = len(scheduler.timesteps)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    outputs.append(run_scheduler(scheduler, probe_velocity, probe_state()))
            except Refused:
                raise
            except Exception as err:  # whatever the scheduler raises on a velocity with this config
                raise Refused(f"{name} cannot sample a flow-matching model: sampling a velocity raises "
                              f"{type(err).__name__}: {' '.join(str(err).split())}") from None
        if not torch.isfinite(outputs[0]).all():
            raise Refused(f"{name} cannot sample a flow-matching model: its samples are not finite (NaN or inf after "
                          "its steps)")
        if not torch.equal(outputs[0], outputs[1]):
            raise Refused(f"{name} cannot sample a flow-matching model as an ODE: it draws noise while sampling "
                          "(stochastic), and solverbench compares ODE solvers of the flow")
    return spending_of(name, evaluations)
