"""``kind: sweep`` (the default): sample every cell of the grid at its NFE budget and measure it.

A cell is one (backbone, solver, NFE, schedule, guidance, seed); its row holds the measured
NFE, the solver's own counters, wall time, every metric with its interval, and provenance.
Samples are drawn in batches (``batch_size`` changes no sample: noise is drawn per index).
"""
from __future__ import annotations

import itertools
import os
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd
import torch

from solverbench.engine import Study, Unit
from solverbench.engine.rows import cell_identity, row_head
from solverbench.grid.values import BackboneSpec, Grid, SolverSpec
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json, spec_hash
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.registry import METRICS, register_study
from solverbench.sampling import sample
from solverbench.solver import Solver


@dataclass(frozen=True)
class Cell:
    """One (backbone, solver, NFE, schedule, guidance, seed) combination of a grid."""

    backbone: BackboneSpec
    solver: SolverSpec
    nfe: Optional[int]  # None for an adaptive solver
    schedule: Any
    guidance: Guidance
    seed: int

    def identity(self, grid: Grid) -> dict[str, Any]:
        """Everything that defines this cell's numbers (not batch size or device)."""
        return cell_identity(grid, self.backbone, self.solver, self.guidance, self.seed, nfe=self.nfe,
                             schedule=self.schedule, metrics=sorted(grid.metrics),
                             **({"metric_options": grid.metric_options} if grid.metric_options else {}))


def cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid, in a stable order (adaptive solvers get one cell per setting, NFE None)."""
    return [Cell(backbone, solver, nfe, schedule, guidance, seed)
            for backbone in grid.backbones for solver in grid.solvers for nfe in solver.budgets
            for schedule, guidance, seed in itertools.product(grid.schedules, grid.guidances_for(nfe), grid.seeds)]


@register_study("sweep")
class Sweep(Study):
    """Sample every solver at its NFE budgets and measure the samples (the paper's Table 1)."""

    needs_budgets = True

    def units(self) -> list[Unit]:
        varying = self.varying_keys()
        units = []
        for cell in cells(self.grid):
            cell_id = spec_hash(cell.identity(self.grid))
            units.append(Unit([cell_id], self.cell_text(cell, varying),
                              lambda cell=cell, cell_id=cell_id: [self.run_cell(cell, cell_id)]))
        return units

    def describe(self, row: pd.Series) -> str:
        nfe = "adaptive" if pd.isna(row["nfe"]) else f"nfe={int(row['nfe'])}"
        return f"{row['solver_label']} {nfe} cfg={row['cfg_scale']:g} seed={row['seed']}"

    def varying_keys(self) -> list[str]:
        """The cell keys besides solver and NFE that take more than one value in this grid."""
        grid = self.grid
        counts = {"backbone": len(grid.backbones), "schedule": len(grid.schedules), "guidance": len(grid.guidances),
                  "seed": len(grid.seeds)}
        return [key for key, n in counts.items() if n > 1]

    def cell_text(self, cell: Cell, varying: list[str]) -> str:
        """The cell as the progress bar names it: the solver's full label (as in the tables), NFE, and
        whatever else varies in the grid."""
        values = {"backbone": cell.backbone.name, "schedule": canonical_json(cell.schedule),
                  "guidance": f"{cell.guidance.scale:g} on {list(cell.guidance.interval)}", "seed": str(cell.seed)}
        nfe = "adaptive" if cell.nfe is None else f"nfe={cell.nfe}"
        return " ".join([cell.solver.label, nfe] + [f"{key}={values[key]}" for key in varying])

    # -- one cell ---------------------------------------------------------------------
    def run_cell(self, cell: Cell, cell_id: str) -> dict[str, Any]:
        grid, workspace = self.grid, self.workspace
        row = row_head(grid, "sweep", cell_id, cell.backbone, cell.solver, cell.guidance, cell.seed)
        row.update(nfe=cell.nfe, schedule=canonical_json(cell.schedule), batch_size=grid.batch_size)
        try:
            backbone = workspace.backbone(cell.backbone)
            solver = workspace.solver(cell.solver, cell.backbone)
            row.update(solver.row_fields())
            samples, stats = self.sample_cell(cell, backbone, solver)
            row.update(stats)
            bad = (~torch.isfinite(samples.flatten(1)).all(dim=1)).sum().item()
            if bad:
                row.update(status="failed", error=f"{bad} of {len(samples)} samples are not finite (NaN or inf)")
                return row
            row.update(self.measure(cell, backbone, samples))
            self.save_samples(cell_id, samples, workspace.draws(cell.backbone, cell.seed).labels())
            row.update(status="ok", error=None)
        except Exception as err:  # recorded, reported at the end of the sweep
            row.update(status="error", error=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc(limit=8))
        return row

    def sample_cell(self, cell: Cell, backbone: Any, solver: Solver) -> tuple[torch.Tensor, dict[str, Any]]:
        grid, draws = self.grid, self.workspace.draws(cell.backbone, cell.seed)
        noise = draws.noise(self.workspace.dtype).to(grid.device)
        labels = draws.labels()
        labels = None if labels is None else labels.to(grid.device)
        out, nfe, wall, counters = [], set(), 0.0, {}
        for start in range(0, grid.num_samples, grid.batch_size):
            sl = slice(start, start + grid.batch_size)
            result = sample(backbone, solver, noise[sl], None if labels is None else labels[sl], nfe=cell.nfe,
                            schedule=cell.schedule, guidance=cell.guidance)
            out.append(result.samples)
            nfe.add(result.nfe)
            wall += result.wall_time
            for name, value in result.counters.items():  # a cell's total over its batches
                counters[name] = counters.get(name, 0) + value
        stats = {
            "nfe_measured": max(nfe) if len(nfe) == 1 else float("nan"),
            "nfe_measured_max": max(nfe),
            "wall_time": wall,
            "wall_time_per_sample": wall / grid.num_samples,
            **counters,
        }
        return torch.cat(out), stats

    def measure(self, cell: Cell, backbone: Any, samples: torch.Tensor) -> dict[str, Any]:
        workspace = self.workspace
        draws = workspace.draws(cell.backbone, cell.seed)
        labels = draws.labels()
        ctx = MetricContext(samples=samples, labels=None if labels is None else labels.to(samples.device),
                            backbone=backbone, guidance=cell.guidance, seed=cell.seed,
                            reference_fn=lambda: workspace.reference(cell.backbone, cell.seed, cell.guidance),
                            data_fn=draws.data,
                            extras={"cache_dir": workspace.cache_dir, "metric_options": self.grid.metric_options},
                            memo=workspace.metric_memo)
        values: dict[str, Any] = {}
        skipped = {}
        for name in self.grid.metrics:
            try:
                values.update(METRICS.get(name)(ctx))
            except NotApplicable as why:
                skipped[name] = str(why)
        values["metrics_not_applicable"] = canonical_json(skipped) if skipped else None
        return values

    def save_samples(self, cell_id: str, samples: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        """Keep the first ``save_samples`` samples of the cell for the report's sample grids."""
        n = min(self.grid.save_samples, len(samples))
        if not n:
            return
        path = self.workspace.results_dir / self.grid.name / "samples" / f"{cell_id}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # written whole or not at all
        torch.save({"samples": samples[:n].cpu(), "labels": None if labels is None else labels[:n]}, tmp)
        os.replace(tmp, path)
