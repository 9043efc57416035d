"""The registered ``bespoke`` solver: RK1 or RK2 on a learned scale-time transformation (Shaul et al., ICLR 2024).

``base: rk1`` spends 1 NFE per step, ``base: rk2`` (the default, the paper's midpoint RK2) 2; an odd
RK2 budget ends with one transformed RK1 step with nodes of its own (``partial_stages = (1,)``), so
every budget is spent exactly.  theta is learned per (backbone, budget, guidance): ``prepare(backbone,
context)`` trains one for every (NFE, guidance) of ``context.uses`` (what a grid will sample), or reads
it from ``<cache_dir>/bespoke/`` (cache.py); without a cache folder it is kept in memory only.  The
Python API, whose context has no uses, asks for a budget with ``prepare_for(backbone, nfe, guidance,
context)``.  ``solve`` refuses a plan or guidance it holds no theta for (training silently inside a
solve would hide minutes of work).

Bespoke learns its own times: a plan gives it the number of steps and their evaluations only, and
must be the uniform grid from t = 1 to 0 (another schedule, or part of the way, is refused rather
than ignored).  For the same reason it has no single step from an exact state (the LTE study).

Result columns: a cell's row (``cell_fields``) has its own theta's ``train_seconds`` (training wall
time, its ground-truth solve charged in full, also where budgets shared one; a cached theta keeps the
time it took when made) and ``trainable_params`` (4m - 1 for a budget of m NFE).  Outside a cell
(``row_fields``) these two are the sums over every theta the solver holds, and beside them:
- ``bespoke_params_per_budget``, ``bespoke_final_loss``: JSON objects by budget (``"nfe=10"``, with the
  guidance where it is on): each theta's parameters, and the loss bound of the theta kept on its
  training paths;
- ``bespoke_training``: a JSON object by budget of each theta's whole record: seconds (and those of the
  ground truth), iterations and the one kept, the bound and the global error on the training paths
  of the base solver (``initial_*``) and of the theta kept (``final_*``), and whether it was read from
  the cache.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from tqdm import tqdm

from solverbench import register_solver
from solverbench.backbone import backbone_identity
from solverbench.field import VelocityField
from solverbench.guidance import NO_GUIDANCE, Guidance
from solverbench.hashing import canonical_json
from solverbench.plan import Plan, make_plan
from solverbench.solver import NoExactHistoryStep, PrepareContext, Solver
from solvers.bespoke.cache import cache_key, cache_path, cached_transformation, save_transformation
from solvers.bespoke.settings import TrainingSettings
from solvers.bespoke.steps import transformed_solve
from solvers.bespoke.training import train_transformation
from solvers.bespoke.trajectories import Trajectories, ground_truth
from solvers.bespoke.transform import Layout, Nodes, Transformation

BASES = {"rk1": 1, "rk2": 2}  # evaluations per step of the base solver (Euler, midpoint)


class BespokeNotPrepared(RuntimeError):
    """A Bespoke solver asked to sample a budget, guidance or backbone it holds no theta for."""


@dataclass
class Held:
    """One theta the solver holds, with what it cost."""

    layout: Layout
    guidance: Guidance
    transformation: Transformation
    nodes: Nodes  # as floats, for sampling
    stats: dict[str, Any]
    path: Optional[Path]  # the cache file; None when kept in memory only
    from_cache: bool


def budget_name(nfe: int, guidance: Guidance) -> str:
    """``nfe=10``, and the guidance where it is on (``nfe=10 cfg=2 on [0, 1]``): a key of the JSON columns."""
    if not guidance.on:
        return f"nfe={nfe}"
    lo, hi = guidance.interval
    return f"nfe={nfe} cfg={guidance.scale:g} on [{lo:g}, {hi:g}]" + (f" {guidance.convention}"
                                                                     if guidance.convention else "")


@register_solver("bespoke")
class Bespoke(Solver):
    """Bespoke solver (Shaul et al., ICLR 2024): RK1/RK2 on a scale-time transformation learned per budget."""

    order = None  # theta is learned per budget: no convergence order is claimed

    @classmethod
    def inversion_refusal(cls) -> str:
        return ("its scale-time transformation is learned on trajectories from noise to data, for that direction "
                "only (docs/inversion.md)")

    def __init__(self, base: str = "rk2", *, trajectories: int = 256, iterations: int = 1000, batch_size: int = 64,
                 lr: float = 1e-2, seed: int = 0, lipschitz: float = 1.0, reference_times: int = 200,
                 reference_tolerance: float = 1e-6):
        if base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)} (Euler or the midpoint method), got {base!r}")
        self.base = base
        self.stages = BASES[base]
        self.partial_stages = (1,) if base == "rk2" else ()  # an odd RK2 budget ends with a transformed RK1 step
        self.settings = TrainingSettings(trajectories=trajectories, iterations=iterations, batch_size=batch_size,
                                         lr=lr, seed=seed, lipschitz=lipschitz, reference_times=reference_times,
                                         reference_tolerance=reference_tolerance)
        self.held: dict[tuple[str, tuple[int, ...], Guidance], Held] = {}

    # -- preparation --------------------------------------------------------------
    def layout_for(self, nfe: int) -> Layout:
        """The steps a budget makes (the plan's: RK2 steps, an odd budget ending with one RK1 step)."""
        return Layout(make_plan(self, nfe=nfe).stages)

    def prepare(self, backbone: Any, context: PrepareContext = PrepareContext()) -> None:
        """Train (or read from the cache) theta for every (NFE, guidance) the grid samples (``context.uses``)."""
        self.prepare_all(backbone, [(nfe, guidance) for nfe, guidance in context.uses if nfe is not None], context)

    def prepare_for(self, backbone: Any, nfe: int, guidance: Optional[Guidance] = None,
                    context: PrepareContext = PrepareContext()) -> None:
        """Train (or read from ``context.cache_dir``) theta for one budget and guidance: what the Python API
        calls before ``sample(backbone, solver, noise, nfe=nfe, guidance=guidance)``."""
        self.prepare_all(backbone, [(nfe, guidance or NO_GUIDANCE)], context)

    def prepare_all(self, backbone: Any, uses: Iterable[tuple[int, Guidance]], context: PrepareContext) -> None:
        identity = canonical_json(backbone_identity(backbone))
        paths: dict[Guidance, Trajectories] = {}  # one ground-truth solve per guidance, shared by the budgets

        def paths_for(guidance: Guidance) -> Trajectories:
            if guidance not in paths:
                if context.progress:
                    tqdm.write(f"{self.label()}: solving {self.settings.trajectories} ground-truth trajectories "
                               f"(cfg {guidance.scale:g})", file=sys.stderr)
                paths[guidance] = ground_truth(backbone, guidance, count=self.settings.trajectories,
                                               seed=self.settings.seed, intervals=self.settings.reference_times,
                                               tolerance=self.settings.reference_tolerance, device=context.device)
            return paths[guidance]

        for nfe, guidance in dict.fromkeys(uses):
            layout = self.layout_for(nfe)
            key = (identity, layout.stages, guidance)
            if key not in self.held:
                self.held[key] = self.obtain(backbone, layout, guidance, context, paths_for)

    def obtain(self, backbone: Any, layout: Layout, guidance: Guidance, context: PrepareContext,
               paths_for: Any) -> Held:
        """theta from the cache where it is there, else trained (and written to the cache)."""
        key = cache_key(backbone, self.base, layout, guidance, self.settings)
        path = cache_path(context.cache_dir, key) if context.cache_dir is not None else None
        cached = cached_transformation(path, key, layout) if path is not None else None
        if cached is not None:
            transformation, stats = cached
            return Held(layout, guidance, transformation, transformation.nodes().floats(), stats, path, True)
        trained = train_transformation(backbone, layout, guidance, paths_for(guidance), self.settings,
                                       progress=context.progress,
                                       desc=f"{self.label()} {budget_name(layout.nfe, guidance)}: training theta")
        if path is not None:
            save_transformation(path, key, trained.transformation, trained.stats)
        transformation = trained.transformation
        return Held(layout, guidance, transformation, transformation.nodes().floats(), trained.stats, path, False)

    # -- sampling -----------------------------------------------------------------
    def held_for(self, field: VelocityField, plan: Plan) -> Held:
        """The theta for the plan's steps, the field's guidance and backbone; one clear line where there is none."""
        if plan.adaptive:
            raise ValueError(f"{self.label()} takes an NFE budget, not an adaptive plan")
        uniform = torch.linspace(1.0, 0.0, plan.intervals + 1, dtype=torch.float64)
        times = plan.times.detach().to(torch.float64).cpu()
        if not torch.allclose(times, uniform, rtol=0.0, atol=1e-9):
            raise ValueError(f"{self.label()} learns its own times: sample it on the uniform schedule from t = 1 to 0 "
                             f"(its plan gives only the number of steps), not on "
                             f"{[round(float(t), 6) for t in times]}")
        identity = canonical_json(backbone_identity(field.backbone))
        key = (identity, tuple(plan.stages), field.guidance)
        if key in self.held:
            return self.held[key]
        asked = budget_name(sum(plan.stages), field.guidance) + f" (steps {list(plan.stages)})"
        mine = sorted(budget_name(h.layout.nfe, h.guidance) for (i, _, _), h in self.held.items() if i == identity)
        if not self.held:
            held = "it holds none: call solver.prepare_for(backbone, nfe, guidance, PrepareContext(cache_dir=...)) first"
        elif not mine:
            held = f"it was prepared for other backbones, not {identity}"
        else:
            held = f"it holds {', '.join(mine)}; call solver.prepare_for(backbone, nfe, guidance) for another"
        raise BespokeNotPrepared(f"{self.label()} has no transformation for {asked}: {held}")

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        """The transformed RK1/RK2 steps of theta from x at t = 1 to the sample at t = 0 (plan.nfe evaluations)."""
        held = self.held_for(field, plan)
        return transformed_solve(field, x, held.nodes, held.layout)

    def local_step(self, field, history_times, history_states, t_next):
        raise NoExactHistoryStep(f"no exact-history step: {self.label()} learns its steps for a whole run from "
                                 "t = 1 to 0 (one theta per budget), so a single step from an exact state is not one "
                                 "of its steps")

    # -- reporting ----------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {"base": self.base, **self.settings.non_default()}

    def cell_fields(self, nfe: Optional[int], guidance: Any) -> dict[str, Any]:
        """The cell's own theta: its training seconds and parameter count (``row_fields`` gives the totals)."""
        mine = [h for h in self.held.values() if h.layout.nfe == nfe and h.guidance == guidance]
        if len(mine) != 1:
            return {}
        return {"train_seconds": float(mine[0].stats.get("seconds", 0.0)),
                "trainable_params": int(mine[0].transformation.parameter_count())}

    def row_fields(self) -> dict[str, Any]:
        held = list(self.held.values())
        if not held:
            return {"train_seconds": None, "trainable_params": None}

        def by_budget(value):
            return canonical_json({budget_name(h.layout.nfe, h.guidance): value(h) for h in held})

        return {
            "train_seconds": float(sum(h.stats.get("seconds", 0.0) for h in held)),
            "trainable_params": int(sum(h.transformation.parameter_count() for h in held)),
            "bespoke_params_per_budget": by_budget(lambda h: h.transformation.parameter_count()),
            "bespoke_final_loss": by_budget(lambda h: h.stats.get("final_loss")),
            "bespoke_training": by_budget(lambda h: {**h.stats, "cached": h.from_cache}),
        }
