"""Ground-truth trajectories for the Bespoke loss: solved once on a fine grid, read at any t by interpolation.

The loss needs the exact path x(t) at the node times t_j, which theta moves while it is learned.
As the paper does, the ground truth is solved once per (backbone, guidance, settings) rather than
again for every theta: the float64 dopri5 reference (``solverbench.reference.reference_trajectory``)
from the training noise gives the states at the uniform grid ``T_k = 1 - k / K`` (K =
``reference_times``), and the velocities there are evaluated once more.  ``at(t)`` is the cubic
Hermite interpolant of those states and velocities,

    x(T_k + tau D) ~ h00(tau) x_k + h10(tau) D v_k + h01(tau) x_{k+1} + h11(tau) D v_{k+1},   D = -1/K,

with ``h00 = 2 tau^3 - 3 tau^2 + 1``, ``h10 = tau^3 - 2 tau^2 + tau``, ``h01 = -2 tau^3 + 3 tau^2``,
``h11 = tau^3 - tau^2``: fourth-order accurate in 1/K, exact at the grid times (t = 1 and t = 0
among them), and differentiable in t (its t-derivative approximates the velocity), so the loss is
differentiable in the node times.

Training noise and labels come from ``solverbench.noise.training_draws``: streams of their own, so no
evaluated sample of any seed is trained on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_in_dtype
from solverbench.field import VelocityField, time_value
from solverbench.guidance import Guidance
from solverbench.noise import training_draws
from solverbench.reference import Tolerance, reference_trajectory


@dataclass
class Trajectories:
    """States and velocities of n ground-truth paths at the grid ``times`` (``(K + 1, n, ...)``, float64)."""

    times: torch.Tensor  # (K + 1,) float64, uniform from 1 down to 0
    states: torch.Tensor
    velocities: torch.Tensor
    labels: Optional[torch.Tensor]
    seconds: float  # wall time of the solve and the velocities

    @property
    def count(self) -> int:
        return self.states.shape[1]

    def at(self, t: Any, index: torch.Tensor) -> torch.Tensor:
        """x(t) of the trajectories ``index`` (cubic Hermite; differentiable in a tensor ``t``)."""
        intervals = len(self.times) - 1
        position = (1.0 - t) * intervals  # in grid steps from t = 1
        k = min(max(int(time_value(position)), 0), intervals - 1)
        tau = position - k
        step = -1.0 / intervals
        tau2, tau3 = tau * tau, tau * tau * tau
        h00, h10 = 2 * tau3 - 3 * tau2 + 1, tau3 - 2 * tau2 + tau
        h01, h11 = -2 * tau3 + 3 * tau2, tau3 - tau2
        return (h00 * self.states[k, index] + (h10 * step) * self.velocities[k, index]
                + h01 * self.states[k + 1, index] + (h11 * step) * self.velocities[k + 1, index])


def ground_truth(backbone: Any, guidance: Guidance, *, count: int, seed: int, intervals: int, tolerance: float,
                 device: str = "cpu") -> Trajectories:
    """``count`` reference paths from the training draws of ``seed``, stored at ``intervals + 1`` uniform times."""
    start = time.perf_counter()
    noise, labels = training_draws(seed, count, backbone.sample_shape, backbone.num_classes, dtype=torch.float64)
    noise = noise.to(device)
    labels = None if labels is None else labels.to(device)
    times = torch.linspace(1.0, 0.0, intervals + 1, dtype=torch.float64)
    field = VelocityField(backbone, labels, guidance)
    with torch.no_grad():
        states = reference_trajectory(field, noise, times, Tolerance(tolerance, tolerance))
        exact = VelocityField(backbone_in_dtype(backbone, torch.float64), labels, guidance)
        velocities = torch.stack([exact(states[k], float(times[k])) for k in range(len(times))])
    return Trajectories(times.to(device), states, velocities, labels, time.perf_counter() - start)
