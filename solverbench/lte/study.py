"""The local-truncation-error study: one step of size H from exact states, against the reference.

For every backbone, guidance setting, seed, solver, start time t and interval size H:
take the exact state at t on the reference trajectory (and, for a k-step multistep
solver, the exact states at the k - 1 earlier times ``t + H, ..., t + (k - 1) H``), let
the solver take one step to ``t - H`` (``Solver.local_step``) and measure the per-sample
RMS distance to the reference state at ``t - H``.  One row per step in
``results/<grid>/results.parquet``; ``lte`` is the mean over samples.

Solvers are prepared for each backbone as a sweep prepares them (a BA solver loads its
SideNet checkpoint, or trains or reuses the cached SideNet of the grid's ``sidenet:``
settings under ``results/.cache``), so trained samplers have their one-step orders too.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_in_dtype
from solverbench.config import DTYPES, Grid, GridError, SolverSpec
from solverbench.field import VelocityField
from solverbench.hashing import canonical_json, spec_hash
from solverbench.lte.one_step import check_one_step, uses_default_local_step
from solverbench.lte.trajectory import reference_states
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.noise import labels_for, noise_for
from solverbench.provenance import device_name, git_commit, package_versions
from solverbench.results import ResultsTable
from solverbench.resumable import Unit, report_outcome, run_units
from solverbench.solver import NoExactHistoryStep, Solver, get_solver


def history_times(t: float, step: float, length: int) -> list[float]:
    """``t + (length - 1) H, ..., t + H, t``: the times a step from t uses, oldest first."""
    return [t + j * step for j in reversed(range(length))]


@dataclass(frozen=True)
class Trajectory:
    """What one reference trajectory depends on: backbone, guidance and seed."""

    backbone: str
    backbone_params: dict
    cfg_scale: float
    cfg_interval: tuple[float, float]
    seed: int

    def key(self) -> str:
        return canonical_json(self.__dict__)


@dataclass
class ExactStates:
    """A trajectory's backbone (in the study's dtype), labels and reference states ``{t: x(t)}``."""

    trajectory: Trajectory
    backbone: Any
    labels: Optional[torch.Tensor]
    states: dict[float, torch.Tensor]
    refusals: dict[str, Optional[str]] = field(default_factory=dict)  # solver label -> why no exact-history step

    def velocity_field(self) -> VelocityField:
        return VelocityField(self.backbone, self.labels, self.trajectory.cfg_scale, self.trajectory.cfg_interval)


class LTEStudy:
    def __init__(self, grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
                 progress: bool = True):
        if grid.kind != "lte" or grid.lte is None:
            raise ValueError(f"grid {grid.name!r} is of kind {grid.kind!r}, not lte")
        self.grid = grid
        self.settings = grid.lte
        self.table = ResultsTable(Path(results_dir) / grid.name)
        self.cache_dir = Path(results_dir) / ".cache"
        self.force = force
        self.progress = progress
        self.dtype = DTYPES[grid.dtype]
        self.solvers = [(spec, get_solver(spec.name, **spec.params)) for spec in grid.solvers]
        self._prepared: dict[str, Solver] = {}
        self._check_solvers()

    def _check_solvers(self) -> None:
        """Fixed-step solvers only, and every history time ``t + j H`` in (0, 1], before any work."""
        t, step = max(self.settings.start_times), max(self.settings.step_sizes)
        for _, solver in self.solvers:
            if solver.adaptive:
                raise GridError(f"grid key 'solvers': {solver.label()} is adaptive (it chooses its own steps); "
                                "the LTE study takes single steps of given sizes H")
            oldest = history_times(t, step, solver.history_length)[0]
            if oldest > 1.0:
                raise GridError(
                    f"grid key 'lte': {solver.label()} steps from t = {t} with H = {step} using "
                    f"{solver.history_length} states, so it needs the state at t = {oldest:.6g} > 1; "
                    "lower the largest start time or step size")

    # -- the study ------------------------------------------------------------------
    def run(self) -> ResultsTable:
        self.table.adopt(self.grid.path, spec_hash(self.grid.raw), force=self.force)
        trajectories = [Trajectory(b, bp, s, iv, seed) for b, bp in self.grid.backbones
                        for s in self.grid.cfg_scales for iv in self.grid.cfg_intervals for seed in self.grid.seeds]
        exact: dict[str, ExactStates] = {}

        def steps_of(traj: Trajectory, spec: SolverSpec, solver: Solver) -> list[dict[str, Any]]:
            if traj.key() not in exact:
                exact[traj.key()] = self.exact_states(traj)
            return [self.step_row(exact[traj.key()], spec, solver, t, h, self.cell_id(traj, spec, t, h))
                    for t in self.settings.start_times for h in self.settings.step_sizes]

        units, ids = [], []
        for traj in trajectories:
            for spec, solver in self.solvers:  # one solver's steps on one trajectory, written together
                group = [self.cell_id(traj, spec, t, h) for t in self.settings.start_times
                         for h in self.settings.step_sizes]
                ids += group
                label = f"{solver.label()} seed={traj.seed}" + (f" cfg={traj.cfg_scale:g}"
                                                                if len(self.grid.cfg_scales) > 1 else "")
                units.append(Unit(group, label, lambda traj=traj, spec=spec, solver=solver: steps_of(traj, spec, solver)))
        self.table.set_current(ids)
        outcome = run_units(self.table, units, ids, force=self.force, progress=self.progress, desc=self.grid.name,
                            what="step", describe=describe_step)
        report_outcome(outcome, "step")
        return self.table

    def exact_states(self, traj: Trajectory) -> ExactStates:
        backbone = backbone_in_dtype(self.grid.backbone(traj.backbone, traj.backbone_params), self.dtype)
        if isinstance(backbone, torch.nn.Module):
            backbone = backbone.to(self.grid.device).eval()
        n = range(self.grid.num_samples)
        noise = noise_for(traj.seed, n, backbone.sample_shape, torch.float64).to(self.grid.device)
        labels = labels_for(traj.seed, n, backbone.num_classes)
        labels = None if labels is None else labels.to(self.grid.device)
        length = max(solver.history_length for _, solver in self.solvers)
        times = {1.0}
        for t in self.settings.start_times:
            for h in self.settings.step_sizes:
                times.update(history_times(t, h, length))
                times.add(t - h)
        states = reference_states(backbone, noise, labels, cfg_scale=traj.cfg_scale, cfg_interval=traj.cfg_interval,
                                  times=times, **self.grid.reference)
        return ExactStates(traj, backbone, labels, states)

    def prepared_solver(self, exact: ExactStates, spec: SolverSpec) -> Solver:
        """The solver of ``spec``, prepared for the trajectory's backbone (once per backbone)."""
        traj = exact.trajectory
        key = canonical_json([spec.name, spec.params, traj.backbone, traj.backbone_params])
        if key not in self._prepared:
            solver = get_solver(spec.name, **spec.params)
            solver.prepare(exact.backbone, cache_dir=self.cache_dir, settings=self.grid.sidenet,
                           device=self.grid.device, runner=self)
            self._prepared[key] = solver
        return self._prepared[key]

    def refusal(self, exact: ExactStates, solver: Solver) -> Optional[str]:
        """Why the solver cannot step from exact history (see ``one_step``), or None; checked once."""
        if solver.label() not in exact.refusals:
            exact.refusals[solver.label()] = None
            if uses_default_local_step(solver):
                t = max(self.settings.start_times)
                try:
                    check_one_step(solver, exact.velocity_field, exact.states[t].to(self.dtype), t)
                except NoExactHistoryStep as refusal:
                    exact.refusals[solver.label()] = str(refusal)
        return exact.refusals[solver.label()]

    def step_row(self, exact: ExactStates, spec: SolverSpec, solver: Solver, t: float, h: float,
                 step_id: str) -> dict[str, Any]:
        row = self.row_head(exact.trajectory, spec, solver, t, h, step_id)
        try:
            solver = self.prepared_solver(exact, spec)
            row.update(solver.row_fields())
            refusal = self.refusal(exact, solver)
            if refusal:
                return {**row, "status": "error", "error": refusal}
            times = history_times(t, h, solver.history_length)
            field = exact.velocity_field()
            start = time.perf_counter()
            x = solver.local_step(field, times, [exact.states[s].to(self.dtype) for s in times], t - h)
            row["wall_time"] = time.perf_counter() - start
            error = per_sample_rms(x, exact.states[t - h])
            finite = bool(torch.isfinite(error).all())
            row.update(nfe_measured=field.nfe, lte=error.mean().item(), lte_max=error.max().item(),
                       status="ok" if finite else "failed",
                       error=None if finite else "the step gave non-finite states (NaN or inf)")
        except NoExactHistoryStep as err:
            row.update(status="error", error=str(err))
        except Exception as err:  # recorded, reported at the end of the study
            row.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
        return row

    def cell_id(self, traj: Trajectory, spec: SolverSpec, t: float, h: float) -> str:
        return spec_hash({
            "kind": "lte", "trajectory": traj.__dict__, "solver": spec.name, "solver_params": spec.params,
            "t_start": t, "H": h, "num_samples": self.grid.num_samples, "dtype": self.grid.dtype,
            "reference": self.grid.reference, **({"sidenet": self.grid.sidenet} if self.grid.sidenet else {}),
            **({"file_sha256": files} if (files := self.grid.file_digests(traj.backbone, traj.backbone_params,
                                                                          spec.name, spec.params)) else {}),
        })

    def row_head(self, traj: Trajectory, spec: SolverSpec, solver: Solver, t: float, h: float,
                 step_id: str) -> dict[str, Any]:
        grid = self.grid
        return {
            "grid": grid.name, "kind": "lte", "cell_id": step_id,
            "backbone": traj.backbone, "backbone_params": canonical_json(traj.backbone_params),
            "solver": spec.name, "solver_params": canonical_json(spec.params), "solver_label": solver.label(),
            "solver_order": solver.order, "analysis_only": solver.analysis_only,
            "lte_order_theory": None if solver.order is None else solver.order + 1,
            "history_length": solver.history_length, "own_local_step": not uses_default_local_step(solver),
            "cfg_scale": traj.cfg_scale, "cfg_lo": traj.cfg_interval[0], "cfg_hi": traj.cfg_interval[1],
            "seed": traj.seed, "num_samples": grid.num_samples, "dtype": grid.dtype,
            "reference_rtol": grid.reference["rtol"], "reference_atol": grid.reference["atol"],
            "t_start": t, "H": h, "t_end": t - h, "nfe_measured": None, "lte": None, "lte_max": None,
            "wall_time": None, "device": grid.device, "device_name": device_name(grid.device),
            "grid_hash": spec_hash(grid.raw), "versions": canonical_json(package_versions()),
            "git_commit": git_commit(), "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def run_lte_study(grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
                  progress: bool = True) -> ResultsTable:
    return LTEStudy(grid, results_dir, force=force, progress=progress).run()


def describe_step(row: Any) -> str:
    """An LTE row as the closing summary groups it: solver and trajectory (its steps share their reason)."""
    return f"{row['solver_label']} seed={row['seed']} cfg={row['cfg_scale']:g}"
