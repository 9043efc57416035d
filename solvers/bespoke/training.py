"""Training theta: the paper's bound on the global error, minimised with Adam (Shaul et al., ICLR 2024, section 2.3).

For a solver of N steps from exact states, the error of its sample is bounded by the local errors
of its steps carried forward by the Lipschitz constants of the later steps:

    || x_N - x(0) ||  <=  sum_{i<N} M_i d_i,     M_i = prod_{i<j<N} L_j,
    d_i = d( x(t_{i+1}), step_theta(x(t_i)) ),

with ``x(t)`` the ground-truth path from the noise, ``step_theta`` the transformed step i
(steps.py), ``t_i`` theta's time at the step's first node, ``L_j`` the bound on step j's Lipschitz
constant as a function of theta with a fixed estimate L_u of the velocity's (``lipschitz``), and d
the root-mean-square distance per dimension.  The loss is the mean of the bound over ground-truth
paths, ``L(theta) = E sum_i M_i d_i``: differentiable in theta through the step's coefficients, its
velocities (the backbone runs under autograd, ``VelocityField(differentiable=True)``, at the learned
times) and the interpolated ground truth at the learned times (trajectories.py).

The loop: Adam on the raw parameters from the identity (the base solver on the uniform grid), a
random batch of paths per step.  The bound is a proxy: with a velocity whose Lipschitz constant is
far above the estimate L_u it is no bound, and driving it lower can raise the error it stands for.
So the theta kept is chosen by what the solver is for: the global error, the mean RMS distance of
the transformed solve's sample from each path's ground-truth end x(0), on the training paths,
measured at the start (the base solver), every twentieth of the run and at the end.  The result never
does worse on the training paths than the base solver it starts from (this selection is solverbench's
addition; the paper trains on the bound alone).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from solverbench.progress import progress_bar

from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solvers.bespoke.settings import TrainingSettings
from solvers.bespoke.steps import step_lipschitz, transformed_solve, transformed_step
from solvers.bespoke.trajectories import Trajectories
from solvers.bespoke.transform import Layout, Transformation

CHECKS = 20  # measurements of the global error (and the bound) on every path over a run, besides the start


@dataclass
class Trained:
    transformation: Transformation
    stats: dict[str, Any]  # seconds, initial_loss, final_loss, iterations, parameters, ...


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root-mean-square distance per dimension of every sample (its gradient kept finite at 0)."""
    return (a - b).flatten(1).pow(2).mean(dim=1).clamp_min(1e-30).sqrt()


def bound_loss(transformation: Transformation, backbone: Any, guidance: Guidance, paths: Trajectories,
               index: torch.Tensor, lipschitz: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``mean over paths of sum_i M_i d_i`` on the paths ``index`` (see the module docstring)."""
    layout = transformation.layout
    nodes = transformation.nodes()
    labels = None if paths.labels is None else paths.labels[index]
    field = VelocityField(backbone, labels, guidance, differentiable=True)
    errors, constants = [], []
    for first, stages in layout.steps():
        start = paths.at(nodes.t[first], index).to(dtype)
        end = paths.at(nodes.t[first + stages], index)
        with field.at_step(nodes.t[first]):
            step = transformed_step(field, start, nodes, first, stages, layout.h)
        errors.append(rms_distance(step.double(), end))
        constants.append(step_lipschitz(nodes, first, stages, layout.h, lipschitz))
    loss, carried = 0.0, 1.0  # carried: M_i, the product of the later steps' constants
    for d, lip in zip(reversed(errors), reversed(constants)):
        loss = loss + carried * d
        carried = carried * lip
    return loss.mean()


def full_loss(transformation: Transformation, backbone: Any, guidance: Guidance, paths: Trajectories,
              settings: TrainingSettings) -> float:
    """The loss on every path, in batches of ``batch_size``."""
    total = 0.0
    with torch.no_grad():
        for index in torch.arange(paths.count).split(settings.batch_size):
            total += float(bound_loss(transformation, backbone, guidance, paths, index, settings.lipschitz)) * len(index)
    return total / paths.count


def global_error(transformation: Transformation, backbone: Any, guidance: Guidance, paths: Trajectories,
                 batch_size: int, dtype: torch.dtype = torch.float32) -> float:
    """Mean RMS distance of the transformed solve from each path's noise to the path's end x(0)."""
    nodes, total = transformation.nodes().floats(), 0.0
    with torch.no_grad():
        for index in torch.arange(paths.count).split(batch_size):
            field = VelocityField(backbone, None if paths.labels is None else paths.labels[index], guidance)
            sample = transformed_solve(field, paths.states[0, index].to(dtype), nodes, transformation.layout)
            total += float(rms_distance(sample.double(), paths.states[-1, index]).sum())
    return total / paths.count


def train_transformation(backbone: Any, layout: Layout, guidance: Guidance, paths: Trajectories,
                         settings: TrainingSettings, *, progress: bool = False, desc: str = "bespoke") -> Trained:
    """theta for ``layout`` under ``guidance``, trained on ``paths`` (their solve's seconds are charged to it)."""
    start = time.perf_counter()
    transformation = Transformation.identity(layout).to(paths.states.device)
    optimiser = torch.optim.Adam(transformation.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    batch = min(settings.batch_size, paths.count)
    check_every = max(1, settings.iterations // CHECKS)

    def measure() -> tuple[float, float]:
        return (global_error(transformation, backbone, guidance, paths, settings.batch_size),
                full_loss(transformation, backbone, guidance, paths, settings))

    initial = best = measure()
    best_state, best_iteration = copy.deepcopy(transformation.state_dict()), 0
    bar = progress_bar(range(1, settings.iterations + 1), enabled=progress, desc=desc, off_terminal="total",
                       leave=False)
    for iteration in bar:
        index = torch.randperm(paths.count, generator=generator)[:batch]
        loss = bound_loss(transformation, backbone, guidance, paths, index, settings.lipschitz)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if iteration % check_every == 0 or iteration == settings.iterations:
            measured = measure()
            if measured[0] < best[0]:
                best, best_iteration = measured, iteration
                best_state = copy.deepcopy(transformation.state_dict())
            bar.set_postfix(loss=f"{measured[1]:.4g}", error=f"{measured[0]:.4g}", best_error=f"{best[0]:.4g}")
    transformation.load_state_dict(best_state)
    transformation.requires_grad_(False)
    stats = {
        "seconds": time.perf_counter() - start + paths.seconds,
        "reference_seconds": paths.seconds,
        "initial_loss": initial[1],  # the bound of the identity theta (the base solver)
        "final_loss": best[1],  # the bound of the theta kept
        "initial_error": initial[0],  # the base solver's global error on the training paths
        "final_error": best[0],  # the kept theta's
        "best_iteration": best_iteration,
        "iterations": settings.iterations,
        "parameters": transformation.parameter_count(),
    }
    return Trained(transformation, stats)
