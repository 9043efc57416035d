"""``kind: lte``, the local-truncation-error study: one step of size H from exact states, against
the reference.

For every backbone, guidance setting, seed, solver, start time t and interval size H:
take the exact state at t on the reference trajectory (and, for a k-step multistep
solver, the exact states at the k - 1 earlier times ``t + H, ..., t + (k - 1) H``), let
the solver take one step to ``t - H`` (``Solver.local_step``) and measure the per-sample
RMS distance to the reference state at ``t - H``.  One row per step; ``lte`` is the mean
over samples.  With ``direction: inversion`` every step runs backwards on the mirrored field
(docs/inversion.md): from ``t`` to ``t + H``, history at ``t - H, ...``; times are path times
in the settings and the rows, solver times ``1 - t`` in what the solver is handed.  One solver's steps on one trajectory are one unit of work, written together.

Solvers are prepared for each backbone as a sweep prepares them (``Solver.prepare`` with
the family's settings: a learned solver loads its checkpoint or trains and caches what it
needs), so trained samplers have their one-step orders too.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import pandas as pd
import torch

from solverbench.engine import Study, Unit
from solverbench.engine.rows import cell_identity, row_head
from solverbench.errors import GridError
from solverbench.field import VelocityField
from solverbench.grid.values import BackboneSpec, Grid, SolverSpec
from solverbench.guidance import Guidance
from solverbench.hashing import spec_hash
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.registry import register_study
from solverbench.solver import NoExactHistoryStep, Solver
from solverbench.studies.lte.one_step import check_one_step, uses_default_local_step
from solverbench.studies.lte.settings import SWEEP_ONLY_KEYS, LTESettings, parse_lte_settings
from solverbench.studies.lte.trajectory import reference_states


@dataclass(frozen=True)
class Trajectory:
    """What one reference trajectory depends on: backbone, guidance and seed."""

    backbone: BackboneSpec
    guidance: Guidance
    seed: int

    @property
    def key(self) -> tuple:
        return self.backbone.key, self.guidance, self.seed


@dataclass
class ExactStates:
    """A trajectory's backbone (in the study's dtype), labels and reference states ``{t: x(t)}``."""

    trajectory: Trajectory
    backbone: Any
    labels: Optional[torch.Tensor]
    states: dict[float, torch.Tensor]
    refusals: dict[str, Optional[str]] = field(default_factory=dict)  # solver label -> why no exact-history step

    def velocity_field(self, mirrored: bool = False) -> VelocityField:
        return VelocityField(self.backbone, self.labels, self.trajectory.guidance, mirrored=mirrored)


@register_study("lte")
class LTEStudy(Study):
    """One step of each size H from exact states per solver; its error against the reference state."""

    unit = "step"
    settings_key = "lte"
    unused_keys = SWEEP_ONLY_KEYS

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any]) -> LTESettings:
        return parse_lte_settings(raw)

    @classmethod
    def check_grid(cls, grid: Grid) -> None:
        """Fixed-step solvers only, and every history time ``t + j H`` in (0, 1], before any work."""
        settings: LTESettings = grid.study
        if not grid.precision.plain or grid.precision.tf32:
            raise GridError(f"grid keys dtype: {grid.dtype}, tf32, compile: the LTE study measures one-step errors "
                            "in float32 or float64 without autocast, TF32 or compilation")
        if grid.guidance_by_nfe is not None:
            raise GridError("grid key 'guidance.scale': a scale per NFE budget has no meaning in the LTE study "
                            "(it takes single steps, not budgets); give a scale or a list of them")
        t, step = max(settings.start_times), max(settings.step_sizes)
        for spec in grid.solvers:
            solver = spec.instance
            if spec.schedules is not None:
                raise GridError(f"grid key 'solvers': {spec.label} has a schedule of its own; the LTE study takes "
                                "single steps of given sizes H on no schedule")
            if solver.adaptive:
                raise GridError(f"grid key 'solvers': {spec.label} is adaptive (it chooses its own steps); "
                                "the LTE study takes single steps of given sizes H")
            if settings.inverts and solver.inversion_refusal():
                raise GridError(f"grid key 'solvers': {spec.label} cannot invert ({solver.inversion_refusal()}); "
                                "the study runs with direction: inversion")
            start = min(settings.start_times) if settings.inverts else t
            oldest = settings.history_times(start, step, solver.history_length)[0]
            if not 0.0 <= oldest <= 1.0:
                raise GridError(
                    f"grid key 'lte': {spec.label} steps from t = {start} with H = {step} using "
                    f"{solver.history_length} states, so it needs the state at t = {oldest:.6g}, outside [0, 1]; "
                    + ("raise the smallest start time or lower the step size" if settings.inverts
                       else "lower the largest start time or step size"))

    def __init__(self, grid: Grid, workspace: Any):
        super().__init__(grid, workspace)
        self.settings: LTESettings = grid.study
        self.dtype = getattr(torch, grid.dtype)
        self._exact: dict[tuple, ExactStates] = {}

    # -- the study ------------------------------------------------------------------
    def units(self) -> list[Unit]:
        grid = self.grid
        units = []
        for backbone in grid.backbones:
            for guidance in grid.guidances:
                for seed in grid.seeds:
                    traj = Trajectory(backbone, guidance, seed)
                    for spec in (s for s in grid.solvers if s.runs_on(backbone)):
                        label = f"{spec.label} seed={seed}" + (f" cfg={guidance.scale:g}"
                                                               if len(grid.guidances) > 1 else "")
                        units.append(Unit(self.step_ids(traj, spec), label,
                                          lambda traj=traj, spec=spec: self.steps_of(traj, spec)))
        return units

    def describe(self, row: pd.Series) -> str:
        """Steps are grouped in the summary by solver and trajectory (they share their reason)."""
        return f"{row['solver_label']} seed={row['seed']} cfg={row['cfg_scale']:g}"

    def step_ids(self, traj: Trajectory, spec: SolverSpec) -> list[str]:
        return [self.cell_id(traj, spec, t, h) for t in self.settings.start_times for h in self.settings.step_sizes]

    def cell_id(self, traj: Trajectory, spec: SolverSpec, t: float, h: float) -> str:
        return spec_hash(cell_identity(self.grid, traj.backbone, spec, traj.guidance, traj.seed, t_start=t, H=h,
                                           **({"direction": "inversion"} if self.settings.inverts else {})))

    def steps_of(self, traj: Trajectory, spec: SolverSpec) -> list[dict[str, Any]]:
        exact = self.exact_states(traj)
        return [self.step_row(exact, spec, t, h, self.cell_id(traj, spec, t, h))
                for t in self.settings.start_times for h in self.settings.step_sizes]

    def exact_states(self, traj: Trajectory) -> ExactStates:
        """The reference states every step of the trajectory starts from and is measured against (once)."""
        if traj.key not in self._exact:
            workspace = self.workspace
            backbone = workspace.backbone(traj.backbone, self.dtype)
            draws = workspace.draws(traj.backbone, traj.seed)
            noise = draws.noise(torch.float64).to(self.grid.device)
            labels = draws.labels()
            labels = None if labels is None else labels.to(self.grid.device)
            length = max(spec.instance.history_length for spec in self.grid.solvers)
            times = {1.0}
            for t in self.settings.start_times:
                for h in self.settings.step_sizes:
                    times.update(self.settings.history_times(t, h, length))
                    times.add(self.settings.end_time(t, h))
            states = reference_states(backbone, noise, labels, guidance=traj.guidance, times=times,
                                      tolerance=self.grid.tolerance)
            self._exact[traj.key] = ExactStates(traj, backbone, labels, states)
        return self._exact[traj.key]

    def prepared_solver(self, exact: ExactStates, spec: SolverSpec) -> Solver:
        """The solver of ``spec``, prepared for the trajectory's backbone (once per backbone)."""
        return self.workspace.solver(spec, exact.trajectory.backbone, prepared_backbone=exact.backbone)

    def refusal(self, exact: ExactStates, solver: Solver) -> Optional[str]:
        """Why the solver cannot step from exact history (see ``one_step``), or None; checked once."""
        if solver.label() not in exact.refusals:
            exact.refusals[solver.label()] = None
            if uses_default_local_step(solver):
                t = max(self.settings.start_times)
                inverts = self.settings.inverts
                try:
                    check_one_step(solver, lambda: exact.velocity_field(mirrored=inverts),
                                   exact.states[t].to(self.dtype), 1 - t if inverts else t)
                except NoExactHistoryStep as refusal:
                    exact.refusals[solver.label()] = str(refusal)
        return exact.refusals[solver.label()]

    def step_row(self, exact: ExactStates, spec: SolverSpec, t: float, h: float, step_id: str) -> dict[str, Any]:
        traj = exact.trajectory
        solver = spec.instance
        row = row_head(self.grid, "lte", step_id, traj.backbone, spec, traj.guidance, traj.seed)
        row.update({
            "lte_order_theory": None if solver.order is None else solver.order + 1,
            "history_length": solver.history_length, "own_local_step": not uses_default_local_step(solver),
            "reference_rtol": self.grid.tolerance.rtol, "reference_atol": self.grid.tolerance.atol,
            "direction": self.settings.direction, "t_start": t, "H": h, "t_end": self.settings.end_time(t, h),
            "nfe_measured": None, "lte": None, "lte_max": None,
            "wall_time": None,
        })
        try:
            solver = self.prepared_solver(exact, spec)
            row.update(solver.row_fields())
            refusal = self.refusal(exact, solver)
            if refusal:
                return {**row, "status": "error", "error": refusal}
            times = self.settings.history_times(t, h, solver.history_length)
            velocity = exact.velocity_field(mirrored=self.settings.inverts)
            start = time.perf_counter()
            x = solver.local_step(velocity, [velocity.path_time(p) for p in times],
                                  [exact.states[p].to(self.dtype) for p in times],
                                  velocity.path_time(self.settings.end_time(t, h)))
            row["wall_time"] = time.perf_counter() - start
            error = per_sample_rms(x, exact.states[self.settings.end_time(t, h)])
            finite = bool(torch.isfinite(error).all())
            row.update(nfe_measured=velocity.nfe, lte=error.mean().item(), lte_max=error.max().item(),
                       status="ok" if finite else "failed",
                       error=None if finite else "the step gave non-finite states (NaN or inf)")
        except NoExactHistoryStep as err:
            row.update(status="error", error=str(err))
        except Exception as err:  # recorded, reported at the end of the study
            row.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
        return row
