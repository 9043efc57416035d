"""The adaptive grid, decided once on a pilot: trajectories of their own noise, walked by the solver's stepper.

The grid a batch walks must be one grid (the backbone evaluates a batch at one time), and solverbench gives
every sample the same result whatever batch or process it is solved in.  So the grid is not decided on the
batch being sampled: it is decided on ``samples`` pilot trajectories (noise and labels from streams no
sample uses, seeded by ``seed``), each interval's per-sample estimates reduced to one (RMS or largest), and
every batch then walks that grid.  It is a function of (backbone, solver, budget, guidance, settings, dtype),
as a learned grid is.

Budget mode: the first pass walks the uniform grid of the budget's intervals; each further pass walks the
grid that spreads the intervals by the hardness estimated so far (``controller.budget_grid``: at every time
the largest density of the passes before, so that a region found hard on one grid stays covered on the
next); the last pass's grid is the answer, ending exactly at 0 with exactly the budget's intervals.
Error-target mode: one walk, each next interval sized from the last estimate
(``controller.tolerance_factor``), an interval whose error per unit time is above the tolerance taken again
smaller (on the pilot only), until an interval lands on 0.  More than ``max_nfe`` is refused in one line.

The final interval is measured on the pilot where the solver can (``Stepper.step`` with ``left`` None at
t = 0: the bi-anchor scheme corrects it with one more pilot evaluation at t = 0, although a solve returns
its predictor there); where it cannot (UniPC's final step is the data prediction, with nothing to
correct) it, like any interval without an estimate, is taken to be as hard as the hardest estimated one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from solverbench.adaptive.controller import (budget_grid, hardness, hardness_density, reduce_estimates,
                                             tolerance_factor)
from solverbench.adaptive_settings import AdaptiveSettings
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.noise import training_draws
from solverbench.plan import make_plan
from solverbench.progress import progress_bar
from solverbench.solver import Solver, Stepper

SMALLEST_STEP = 1e-7  # an error-target interval this small that still misses the tolerance is refused


@dataclass
class AdaptiveGrid:
    """An adaptive grid and how it was decided."""

    times: torch.Tensor  # float64, 1 -> 0: the grid every batch walks
    estimates: list[Optional[float]]  # per interval of ``times``: the pilot's estimate (None: the interval made none)
    settings: AdaptiveSettings
    order: int  # the estimate's order used
    pilot_nfe: int  # evaluations per pilot trajectory, every pass and retried interval included
    seconds: float  # wall time of the pilot
    passes: list[list[float]] = field(default_factory=list)  # the grid of every pass (budget mode)
    retried: int = 0  # intervals taken again smaller (error-target mode)

    @property
    def intervals(self) -> int:
        return len(self.times) - 1

    @property
    def estimated_error(self) -> float:
        """The sum of the intervals' estimates, an interval without one charged as its neighbour's hardness says
        (error-target mode: what was held below the tolerance)."""
        return float(sum(charged_estimates(self.times.tolist(), self.estimates, self.order)))

    def stats(self) -> dict[str, Any]:
        """The record a learned grid keeps (``LearnedGrid.stats``); ``columns`` go into result rows."""
        return {"method": "adaptive", "mode": "budget" if self.settings.budget_mode else "tolerance",
                "settings": self.settings.spec(), "order": self.order, "estimates": self.estimates,
                "passes": self.passes, "retried": self.retried,
                "columns": {"pilot_nfe": self.pilot_nfe, "estimated_error": self.estimated_error}}


def charged_estimates(times: list[float], estimates: list[Optional[float]], order: int) -> list[float]:
    """Each interval's estimate; one without its own is charged ``C H^q`` with the largest hardness ``C`` estimated
    (``controller.hardness``)."""
    return [c * (times[k] - times[k + 1]) ** order if e is None else float(e)
            for k, (c, e) in enumerate(zip(hardness(times[:-1], times[1:], estimates, order), estimates))]


def decide_grid(solver: Solver, backbone: Any, guidance: Guidance, settings: AdaptiveSettings, *,
                nfe: Optional[int], conditional: bool, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                progress: bool = False) -> AdaptiveGrid:
    """The adaptive grid of ``solver`` (prepared) on ``backbone`` under ``guidance``: for the budget ``nfe``
    (budget mode) or until the tolerance (``nfe`` None), decided on the pilot in ``dtype`` on ``device``, with
    class labels where ``conditional``."""
    start = time.perf_counter()
    noise, labels = training_draws(settings.seed, settings.samples, backbone.sample_shape,
                                   getattr(backbone, "num_classes", None), dtype=torch.float64)
    noise = noise.to(device=device, dtype=dtype)
    labels = labels.to(device) if conditional and labels is not None else None
    pilot = VelocityField(backbone, labels, guidance)
    order = settings.order
    with torch.no_grad():
        first = solver.stepper(pilot, noise, 1.0)
        order = order or int(first.order)
        if settings.budget_mode:
            grid = budget_walks(solver, pilot, noise, first, settings, make_plan(solver, nfe=nfe).intervals, order,
                                progress)
        else:
            grid = tolerance_walk(first, settings, order, max_intervals(solver, settings.max_nfe))
    grid.pilot_nfe = pilot.nfe
    grid.seconds = time.perf_counter() - start
    return grid


def max_intervals(solver: Solver, max_nfe: int) -> int:
    return max(1, max_nfe // int(solver.stages))


def walk(stepper: Stepper, times: list[float], how: str) -> list[Optional[float]]:
    """The pilot walked along ``times`` from ``stepper`` (standing at ``times[0]``): each interval's estimate, the
    final interval's measured where the solver can (``Stepper.step`` with ``left`` None at t = 0)."""
    estimates = []
    for k in range(len(times) - 1):
        stepper, estimate = stepper.step(times[k + 1], None)
        estimates.append(None if estimate is None else reduce_estimates(estimate.cpu().numpy(), how))
    return estimates


def budget_walks(solver: Solver, pilot: VelocityField, noise: torch.Tensor, first: Stepper,
                 settings: AdaptiveSettings, intervals: int, order: int, progress: bool) -> AdaptiveGrid:
    """Budget mode: ``settings.passes`` walks, each on the grid the last one's estimates make."""
    times = [float(t) for t in np.linspace(1.0, 0.0, intervals + 1)]
    times[-1] = 0.0
    passes, estimates, density = [], [], None
    bar = progress_bar(range(settings.passes), desc=f"adaptive grid for {solver.label()} at {intervals} intervals",
                       enabled=progress, off_terminal="none", leave=False)
    for p in bar:
        if p:
            found = hardness_density(times[:-1], times[1:], estimates, order)
            density = found if density is None else np.maximum(density, found)
            times = budget_grid(density, intervals, settings.min_factor, settings.max_factor)
        stepper = first if p == 0 else solver.stepper(pilot, noise, 1.0)
        estimates = walk(stepper, times, settings.reduce)
        passes.append(times)
    return AdaptiveGrid(torch.tensor(times, dtype=torch.float64), estimates, settings, order, 0, 0.0, passes)


def tolerance_walk(stepper: Stepper, settings: AdaptiveSettings, order: int, most: int) -> AdaptiveGrid:
    """Error-target mode: one walk, each interval sized from the one before, until an interval lands on 0."""
    tol, t, h = settings.tolerance, 1.0, settings.first_step
    times, estimates, retried = [1.0], [], 0
    while True:
        taken = len(times) - 1
        land = h >= t * (1 - 1e-9)
        if not land and taken + 1 >= most:
            spent = sum(charged_estimates(times, estimates, order))
            raise ValueError(f"schedule 'adaptive': tolerance {tol:g} needs more than max_nfe "
                             f"{settings.max_nfe} NFE on the pilot (at t = {t:.3g} after {taken} intervals, "
                             f"estimated error so far {spent:.3g}); raise max_nfe or the tolerance")
        if not land and h > t / 2:
            h = t / 2  # two equal intervals rather than one and a sliver
        t_next = 0.0 if land else t - h
        moved, estimate = stepper.step(t_next, None)  # the final interval measured where the solver can
        h = t - t_next
        if estimate is None:  # charged as hard as the hardest interval so far (an uncorrected first one: kept)
            e = charged_estimates(times + [t_next], estimates + [None], order)[-1]
        else:
            e = reduce_estimates(estimate.cpu().numpy(), settings.reduce)
        factor = tolerance_factor(e, h, tol, order, settings.safety, settings.min_factor, settings.max_factor)
        if estimate is None and not land:
            factor = 1.0  # nothing measured: the next interval keeps this one's size
        if e > tol * h:
            retried += 1
            h *= min(factor, settings.safety)
            if h < SMALLEST_STEP:
                raise ValueError(f"schedule 'adaptive': tolerance {tol:g} is missed even by an interval of "
                                 f"{SMALLEST_STEP:g} at t = {t:.3g}; raise the tolerance")
            continue
        times.append(t_next)
        estimates.append(None if estimate is None else e)
        if land:
            break
        stepper, t = moved, t_next
        h *= factor
    return AdaptiveGrid(torch.tensor(times, dtype=torch.float64), estimates, settings, order, 0, 0.0, [], retried)
