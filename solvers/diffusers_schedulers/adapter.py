"""The ``diffusers`` solver: a checked scheduler setting run as a solverbench solver, every model call through
the velocity field, its budgets planned from the scheduler's spending."""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from solverbench import register_solver
from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.solver import NoExactHistoryStep, Solver
from solverbench.timegrid import make_time_grid
from solvers.diffusers_schedulers.flow import t_of_sigma
from solvers.diffusers_schedulers.library import Refused, diffusers_module, quiet_diffusers
from solvers.diffusers_schedulers.setting import Setting, supported_schedulers

GRIDS = ("scheduler", "plan")


def claimed_order(name: str, config: dict[str, Any]) -> Optional[int]:
    """The global order claimed for a scheduler with its (whole) config; None where none is claimed."""
    if name in ("FlowMatchEulerDiscreteScheduler", "FlowMapEulerDiscreteScheduler"):
        return 1
    if name == "FlowMatchHeunDiscreteScheduler":
        return 2
    if name == "DPMSolverMultistepScheduler":  # the published 3M is second order (solvers/dpm.py)
        return min(int(config["solver_order"]), 2)
    if name == "UniPCMultistepScheduler":  # UniC raises UniP-p's order p by one (solvers/unipc.py), if it runs
        return int(config["solver_order"]) + (0 if config.get("disable_corrector") else 1)
    return None


@register_solver("diffusers")
class DiffusersScheduler(Solver):
    """A diffusers scheduler as it ships (``scheduler=`` its class name, its config as keywords), on a flow model."""

    @classmethod
    def inversion_refusal(cls) -> str:
        return ("a diffusers scheduler samples from noise to data on its own sigmas, as a pipeline does, and "
                "diffusers ships no flow-matching inverse scheduler (docs/inversion.md)")

    def __init__(self, scheduler: str = "FlowMatchEulerDiscreteScheduler", grid: str = "scheduler",
                 mu: Optional[float] = None, **config: Any):
        if grid not in GRIDS:
            raise ValueError(f"diffusers: grid must be 'scheduler' (its own sigmas) or 'plan' (the plan's times), "
                             f"got {grid!r}")
        if mu is not None and (isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu)):
            raise ValueError(f"diffusers: mu must be a number, got {mu!r}")
        try:
            self.setting = Setting(scheduler, dict(config), grid, None if mu is None else float(mu))
        except Refused as why:
            message = str(why)
            if "cannot sample a flow-matching model" in message or "has no scheduler class" in message:
                message += f"; the flow-matching schedulers it runs: {', '.join(supported_schedulers())}"
            raise ValueError(message) from None
        setting = self.setting
        self.stages = setting.spending.stages
        self.partial_stages = (setting.spending.last,) if setting.spending.last != self.stages else ()
        self.last_stages = self.partial_stages  # FlowMatchHeun's last step is always its Euler one: odd budgets only
        self.order = claimed_order(setting.name, setting.resolved)
        self.history_length = max(int(setting.resolved.get("solver_order", 1)), 1)  # a multistep method's past states

    @staticmethod
    def describe_settings() -> str:
        return ("**config: any keyword of the scheduler class's __init__ (shift, use_dynamic_shifting, base_shift, "
                "max_shift, use_karras_sigmas, solver_order, solver_type, algorithm_type, flow_shift, ...)")

    def params(self) -> dict[str, Any]:
        setting = self.setting
        return {"scheduler": setting.name, **setting.given,
                **({"mu": setting.mu} if setting.mu is not None else {}),
                **({"grid": setting.grid} if setting.grid != "scheduler" else {})}

    def row_fields(self) -> dict[str, Any]:
        return {"diffusers_version": diffusers_module().__version__}

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        setting, steps = self.setting, plan.intervals
        spending = setting.spending.of(steps)
        if tuple(plan.stages) != spending:
            raise ValueError(
                f"{self.label()} spends {setting.spending.stages} NFE per step and {setting.spending.last} on its last "
                f"(to sigma = 0): {sum(spending)} NFE on {steps} steps, so a budget of {plan.nfe} cannot be spent; "
                f"give {sum(spending)} or {sum(setting.spending.of(steps + 1))}")
        times = plan.times.detach()
        if setting.grid == "scheduler":
            if not torch.equal(times, make_time_grid("uniform", steps)):
                shown = ", ".join(f"{t:.4g}" for t in times[:4].tolist()) + (", ..." if len(times) > 4 else "")
                raise ValueError(
                    f"{self.label()} samples on the scheduler's own sigmas (grid='scheduler'), so the plan's time grid "
                    f"[{shown}] (not the uniform one) would be ignored: sample on the uniform schedule, or give "
                    "grid='plan' to hand the plan's times to the scheduler as its sigmas")
            times = None
        elif float(times[-1]) != 0.0:
            raise ValueError(f"{self.label()}: the scheduler ends every grid at sigma = 0, so the plan must end at "
                             f"t = 0, not {float(times[-1]):.4g}")
        with quiet_diffusers():
            scheduler = setting.build()
            setting.set_timesteps(scheduler, steps, times, device=x.device)
            if len(scheduler.timesteps) != plan.nfe:  # the probe measured otherwise: never expected
                raise RuntimeError(f"{self.label()} set {len(scheduler.timesteps)} timesteps for a plan of "
                                   f"{plan.nfe} NFE")
            if x.dtype == torch.float64:
                scheduler.sigmas = scheduler.sigmas.to(torch.float64)  # same values; UniPC then computes in float64
            scheduler.set_begin_index(0)
            sigmas, timesteps = scheduler.sigmas, scheduler.timesteps
            i = 0
            for stages in plan.stages:
                with field.at_step(t_of_sigma(sigmas[i])):  # the step's evaluations belong to it ("step" decision)
                    for _ in range(stages):
                        v = field(x, t_of_sigma(sigmas[i]))
                        x = scheduler.step(v, timesteps[i], x, return_dict=False)[0]
                        i += 1
        return x

    def local_step(self, field, history_times, history_states, t_next):
        raise NoExactHistoryStep(
            f"no exact-history step: {self.label()} runs only along a whole grid ending at sigma = 0 "
            "(set_timesteps appends it), so it cannot take one step from exact states")
