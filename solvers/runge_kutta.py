"""Explicit Runge-Kutta methods from their Butcher tableaus.

A method with s stages spends s NFE per interval.  A budget that is not a multiple of s
is met exactly: the plan gets ceil(NFE / s) intervals and its *last* interval is taken
with the method's lower-stage fallback of ``NFE mod s`` stages (Euler for one stage), as
EDM's Heun sampler takes its last step with Euler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.solver import Solver


@dataclass(frozen=True)
class ButcherTableau:
    """``k_i = f(x + dt sum_j a[i][j] k_j, t + c[i] dt)``, ``x' = x + dt sum_i b[i] k_i``."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]

    @property
    def stages(self) -> int:
        return len(self.b)

    def step(self, f, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        k: list[torch.Tensor] = []
        for a_i, c_i in zip(self.a, self.c):
            x_i = x
            for a_ij, k_j in zip(a_i, k):
                if a_ij:
                    x_i = x_i + dt * a_ij * k_j
            k.append(f(x_i, t + c_i * dt))
        return x + dt * sum(b_i * k_i for b_i, k_i in zip(self.b, k) if b_i)


EULER = ButcherTableau(a=((),), b=(1.0,), c=(0.0,))
HEUN = ButcherTableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0))
MIDPOINT = ButcherTableau(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5))
KUTTA3 = ButcherTableau(a=((), (0.5,), (-1.0, 2.0)), b=(1 / 6, 4 / 6, 1 / 6), c=(0.0, 0.5, 1.0))
RK4 = ButcherTableau(
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
)


class ExplicitRungeKutta(Solver):
    """One tableau per interval; ``fallbacks[r]`` takes an interval the plan gives r < s stages."""

    tableau: ButcherTableau = EULER
    fallbacks: dict[int, ButcherTableau] = {}
    differentiable_times = True  # plan.steps() hands over tensors that carry gradients; the step is torch arithmetic
    invertible = True  # only the field: the same tableau runs backwards on the mirrored field

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.stages = cls.tableau.stages
        cls.partial_stages = tuple(sorted(cls.fallbacks))

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        for t, t_next, stages in plan.steps():
            tableau = self.tableau if stages == self.tableau.stages else self.fallbacks[stages]
            with field.at_step(t):  # the step's stages belong to it (the "step" guidance decision)
                x = tableau.step(field, x, t, t_next - t)
        return x
