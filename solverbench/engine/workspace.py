"""What the cells of one run share: the grid's backbones on its device, each solver prepared once
per backbone, the draws of noise, labels and data, and the reference solves.

Built lazily, once per run: a study asks and the workspace makes or reuses.  Under torchrun
rank 0 prepares each solver first (training and caching what it trains), then the other
ranks prepare theirs from rank 0's files, so every rank samples with the same prepared networks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_in_dtype
from solverbench.distributed import world
from solverbench.engine.draws import Draws
from solverbench.grid.values import BackboneSpec, Grid, SolverSpec
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json
from solverbench.reference import reference_endpoints
from solverbench.schedules import LearnedGrid, ScheduleProblem, is_learned, learned_schedule
from solverbench.schedules.cache import cached_time_grid
from solverbench.solver import PrepareContext, Solver


class Workspace:
    def __init__(self, grid: Grid, results_dir: str | Path, *, progress: bool = True):
        self.grid = grid
        self.results_dir = Path(results_dir)
        self.cache_dir = self.results_dir / ".cache"
        self.progress = progress
        self.precision = grid.precision
        self.dtype = grid.precision.state_dtype  # of the noise and the ODE state
        self.metric_memo: dict = {}  # what metrics compute once per run (noise floors)
        self._backbones: dict[tuple[str, str], Any] = {}
        self._sampling: dict[str, Any] = {}
        self._solvers: dict[tuple[str, str], Solver] = {}
        self._draws: dict[tuple[str, int], Draws] = {}
        self._references: dict[tuple, torch.Tensor] = {}
        self._data: dict[tuple, torch.Tensor] = {}  # data draw 0 per (backbone, seed): what inversions start from
        self._learned_grids: dict[tuple, LearnedGrid] = {}

    def backbone(self, spec: BackboneSpec, dtype: torch.dtype | None = None) -> Any:
        """The backbone on the grid's device, in eval mode (a copy in ``dtype`` where one is asked)."""
        key = (spec.key, str(dtype))
        if key not in self._backbones:
            backbone = spec.instance if dtype is None else backbone_in_dtype(spec.instance, dtype)
            if isinstance(backbone, torch.nn.Module):
                backbone = backbone.to(self.grid.device).eval()
            self._backbones[key] = backbone
        return self._backbones[key]

    def sampling_backbone(self, spec: BackboneSpec) -> Any:
        """The backbone as cells sample with it: under the grid's autocast and compiled where it asks."""
        if spec.key not in self._sampling:
            self._sampling[spec.key] = self.precision.backbone(self.backbone(spec))
        return self._sampling[spec.key]

    def context(self, solver: SolverSpec) -> PrepareContext:
        uses = tuple((nfe, guidance) for nfe in solver.budgets for guidance in self.grid.guidances_for(nfe))
        return PrepareContext(cache_dir=self.cache_dir, device=self.grid.device, progress=self.progress,
                              grid_dir=self.grid.base, settings=self.grid.settings_for(solver), uses=uses)

    def solver(self, solver: SolverSpec, backbone: BackboneSpec, prepared_backbone: Any = None) -> Solver:
        """The solver prepared for the backbone (``prepared_backbone``: the instance it samples with), once."""
        key = (solver.key, backbone.key)
        if key not in self._solvers:
            taken = {id(s) for s in self._solvers.values()}
            instance = solver.instance if id(solver.instance) not in taken else solver.build()
            target = self.backbone(backbone) if prepared_backbone is None else prepared_backbone
            ranks = world()
            ranks.decide(lambda: instance.prepare(target, self.context(solver)))  # rank 0 first: it writes caches
            if not ranks.main:
                instance.prepare(target, self.context(solver))
            instance.use_precision(self.precision)
            self._solvers[key] = instance
        return self._solvers[key]

    def learned_grid(self, backbone: BackboneSpec, solver: SolverSpec, nfe: Any, guidance: Guidance,
                     schedule: Any) -> LearnedGrid | None:
        """The time grid a learned ``schedule`` makes for the cell (learned once, by rank 0, and cached);
        None for a closed-form schedule."""
        if not is_learned(schedule):
            return None
        key = (backbone.key, solver.key, nfe, guidance, canonical_json(schedule))
        if key not in self._learned_grids:
            problem = ScheduleProblem(self.backbone(backbone), self.solver(solver, backbone), int(nfe), guidance,
                                      self.grid.device, self.progress and world().main, self.dtype)
            learner = learned_schedule(schedule)
            self._learned_grids[key] = world().decide(lambda: cached_time_grid(learner, problem, self.cache_dir))
        return self._learned_grids[key]

    def draws(self, backbone: BackboneSpec, seed: int) -> Draws:
        key = (backbone.key, seed)
        if key not in self._draws:
            self._draws[key] = Draws(self.backbone(backbone), seed, self.grid.num_samples, self.grid.labels)
        return self._draws[key]

    def data(self, backbone: BackboneSpec, seed: int) -> torch.Tensor:
        """Data draw 0 of the seed with the samples' labels, in the grid's dtype on its device (what an
        inversion starts from)."""
        key = (backbone.key, seed)
        if key not in self._data:
            x0, _ = self.draws(backbone, seed).data(self.grid.num_samples)
            self._data[key] = x0.to(device=self.grid.device, dtype=self.dtype)
        return self._data[key]

    def exact_inversion(self, backbone: BackboneSpec, seed: int, guidance: Guidance) -> torch.Tensor:
        """Float64 noise of the reference inversion of ``data(backbone, seed)`` (cached as references are)."""
        key = ("inversion", backbone.key, seed, guidance)
        if key not in self._references:
            labels = self.draws(backbone, seed).labels()
            self._references[key] = reference_endpoints(
                self.backbone(backbone), self.data(backbone, seed), None if labels is None else labels.to(self.grid.device),
                seed=seed, dtype_name=self.precision.state_dtype_name, guidance=guidance, tolerance=self.grid.tolerance,
                label_rule=self.grid.labels, batch_size=self.grid.batch_size, cache_dir=self.cache_dir / "references",
                progress=self.progress, inverting=True)
        return self._references[key]

    def reference(self, backbone: BackboneSpec, seed: int, guidance: Guidance, n: Optional[int] = None
                  ) -> torch.Tensor:
        """Float64 endpoints of the reference solve from the noise of samples ``0 .. n - 1`` (in the grid's dtype;
        default: every sample of the grid) and their labels.  Asked for more samples than before (the looks of
        sequential sample sizes), it solves only those it has not solved yet."""
        n = self.grid.num_samples if n is None else n
        key = (backbone.key, seed, guidance)
        known = self._references.get(key)
        if known is None or len(known) < n:
            draws = self.draws(backbone, seed)
            labels = draws.labels()
            self._references[key] = reference_endpoints(
                self.backbone(backbone), draws.noise(self.dtype)[:n].to(self.grid.device),
                None if labels is None else labels[:n].to(self.grid.device), seed=seed,
                dtype_name=self.precision.state_dtype_name, guidance=guidance, tolerance=self.grid.tolerance,
                label_rule=self.grid.labels, batch_size=self.grid.batch_size,
                cache_dir=self.cache_dir / "references", progress=self.progress, known=known)
        endpoints = self._references[key]
        return endpoints if len(endpoints) == n else endpoints[:n]
