"""``solverbench run``: sweep a grid's cells, one parquet row per cell, resumable."""
from __future__ import annotations

import os
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.config import DTYPES, Cell, Grid, expand_cells
from solverbench.hashing import canonical_json, spec_hash
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.noise import data_generator, labels_for, noise_for
from solverbench.provenance import device_name, git_commit, package_versions
from solverbench.reference import reference_endpoints
from solverbench.registry import METRICS
from solverbench.results import ResultsTable
from solverbench.resumable import SweepFailed, Unit, report_outcome, run_units  # noqa: F401  (SweepFailed: re-exported)
from solverbench.sampling import sample
from solverbench.solver import Solver, get_solver, solver_label


class Runner:
    def __init__(self, grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
                 progress: bool = True):
        self.grid = grid
        self.results_dir = Path(results_dir)
        self.out_dir = self.results_dir / grid.name
        self.cache_dir = self.results_dir / ".cache"
        self.force = force
        self.progress = progress
        self.dtype = DTYPES[grid.dtype]
        self._backbones: dict[str, Any] = {}
        self._solvers: dict[str, Solver] = {}
        self._references: dict[str, torch.Tensor] = {}
        self._metric_memo: dict = {}  # what metrics compute once per run (noise floors)

    # -- shared objects, built once per sweep ---------------------------------------
    def backbone(self, cell: Cell) -> Any:
        key = canonical_json([cell.backbone, cell.backbone_params])
        if key not in self._backbones:
            backbone = self.grid.backbone(cell.backbone, cell.backbone_params)
            if isinstance(backbone, torch.nn.Module):
                backbone = backbone.to(self.grid.device).eval()
            self._backbones[key] = backbone
        return self._backbones[key]

    def solver(self, cell: Cell) -> Solver:
        key = canonical_json([cell.solver, cell.solver_params, cell.backbone, cell.backbone_params])
        if key not in self._solvers:
            solver = get_solver(cell.solver, **cell.solver_params)
            solver.prepare(self.backbone(cell), cache_dir=self.cache_dir, settings=self.grid.sidenet,
                           device=self.grid.device, runner=self, cell=cell)
            self._solvers[key] = solver
        return self._solvers[key]

    def reference(self, cell: Cell) -> torch.Tensor:
        backbone = self.backbone(cell)
        key = canonical_json([cell.backbone, cell.backbone_params, cell.seed, cell.cfg_scale, cell.cfg_interval])
        if key not in self._references:
            self._references[key] = reference_endpoints(
                backbone, seed=cell.seed, num_samples=self.grid.num_samples, dtype=self.dtype,
                cfg_scale=cell.cfg_scale, cfg_interval=cell.cfg_interval, batch_size=self.grid.batch_size,
                device=self.grid.device, cache_dir=self.cache_dir / "references", progress=self.progress,
                **self.grid.reference,
            )
        return self._references[key]

    # -- the sweep --------------------------------------------------------------------
    def run(self) -> ResultsTable:
        table = ResultsTable(self.out_dir)
        table.adopt(self.grid.path, spec_hash(self.grid.raw), force=self.force)
        cells = expand_cells(self.grid)
        ids = [spec_hash(c.key(self.grid)) for c in cells]
        table.set_current(ids)
        varying = self.varying_keys()
        units = [Unit([cell_id], self.cell_text(cell, varying), lambda cell=cell, cell_id=cell_id: [
                     self.run_cell(cell, cell_id)]) for cell, cell_id in zip(cells, ids)]
        outcome = run_units(table, units, ids, force=self.force, progress=self.progress, desc=self.grid.name,
                            what="cell", describe=describe_row)
        report_outcome(outcome, "cell")
        return table

    def varying_keys(self) -> list[str]:
        """The cell keys besides solver and NFE that take more than one value in this grid."""
        grid = self.grid
        counts = {"backbone": len(grid.backbones), "schedule": len(grid.schedules), "cfg": len(grid.cfg_scales),
                  "cfg interval": len(grid.cfg_intervals), "seed": len(grid.seeds)}
        return [key for key, n in counts.items() if n > 1]

    def cell_text(self, cell: Cell, varying: list[str]) -> str:
        """The cell as the progress bar names it: the solver's full label (as in the tables), NFE, and
        whatever else varies in the grid."""
        label = get_solver(cell.solver, **cell.solver_params).label()  # cheap: nothing is prepared
        parts = [label, "adaptive" if cell.nfe is None else f"nfe={cell.nfe}"]
        values = {"backbone": cell.backbone, "schedule": canonical_json(cell.schedule), "cfg": f"{cell.cfg_scale:g}",
                  "cfg interval": str(list(cell.cfg_interval)), "seed": str(cell.seed)}
        return " ".join(parts + [f"{key}={values[key]}" for key in varying])

    def run_cell(self, cell: Cell, cell_id: Optional[str] = None) -> dict[str, Any]:
        grid = self.grid
        cell_id = cell_id or spec_hash(cell.key(grid))
        row: dict[str, Any] = {
            "grid": grid.name, "cell_id": cell_id,
            "backbone": cell.backbone, "backbone_params": canonical_json(cell.backbone_params),
            "solver": cell.solver, "solver_params": canonical_json(cell.solver_params),
            "nfe": cell.nfe, "schedule": canonical_json(cell.schedule), "cfg_scale": cell.cfg_scale,
            "cfg_lo": cell.cfg_interval[0], "cfg_hi": cell.cfg_interval[1], "seed": cell.seed,
            "num_samples": grid.num_samples, "batch_size": grid.batch_size, "dtype": grid.dtype,
            "device": grid.device, "device_name": device_name(grid.device),
            "config_hash": cell_id, "grid_hash": spec_hash(grid.raw),
            "versions": canonical_json(package_versions()), "git_commit": git_commit(),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            backbone = self.backbone(cell)
            solver = self.solver(cell)
            row.update(solver_label=solver.label(), solver_order=solver.order,
                       analysis_only=solver.analysis_only, **solver.row_fields())
            labels = labels_for(cell.seed, range(self.grid.num_samples), backbone.num_classes)
            samples, stats = self.sample_cell(cell, backbone, solver, labels)
            row.update(stats)
            bad = (~torch.isfinite(samples.flatten(1)).all(dim=1)).sum().item()
            if bad:
                row.update(status="failed", error=f"{bad} of {len(samples)} samples are not finite (NaN or inf)")
                return row
            row.update(self.measure(cell, backbone, samples, labels))
            self.save_samples(row["cell_id"], samples, labels)
            row.update(status="ok", error=None)
        except Exception as err:  # recorded, reported at the end of the sweep
            row.setdefault("solver_label", solver_label(cell.solver, cell.solver_params))  # it never got built
            row.update(status="error", error=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc(limit=8))
        return row

    def sample_cell(self, cell: Cell, backbone: Any, solver: Solver, labels: Optional[torch.Tensor]):
        grid = self.grid
        noise = noise_for(cell.seed, range(grid.num_samples), backbone.sample_shape, self.dtype).to(grid.device)
        labels = None if labels is None else labels.to(grid.device)
        out, nfe, sidenet_calls, wall, sidenet_time = [], set(), 0, 0.0, 0.0
        for start in range(0, grid.num_samples, grid.batch_size):
            sl = slice(start, start + grid.batch_size)
            result = sample(backbone, solver, noise[sl], None if labels is None else labels[sl], nfe=cell.nfe,
                            schedule=cell.schedule, cfg_scale=cell.cfg_scale, cfg_interval=cell.cfg_interval)
            out.append(result.samples)
            nfe.add(result.nfe)
            sidenet_calls = max(sidenet_calls, result.sidenet_calls)
            wall += result.wall_time
            sidenet_time += result.sidenet_time
        stats = {
            "nfe_measured": max(nfe) if len(nfe) == 1 else float("nan"),
            "nfe_measured_max": max(nfe),
            "sidenet_calls": sidenet_calls,
            "wall_time": wall,
            "wall_time_per_sample": wall / grid.num_samples,
            "sidenet_time": sidenet_time,  # seconds of wall_time spent in the SideNet
        }
        return torch.cat(out), stats

    def measure(self, cell: Cell, backbone: Any, samples: torch.Tensor,
                labels: Optional[torch.Tensor]) -> dict[str, Any]:
        def data(n: int, draw: int = 0):
            return backbone.sample_data(n, data_generator(cell.seed, draw),
                                        labels=labels[:n] if labels is not None else None)

        ctx = MetricContext(samples=samples, labels=None if labels is None else labels.to(samples.device),
                            backbone=backbone, cfg_scale=cell.cfg_scale, cfg_interval=cell.cfg_interval,
                            seed=cell.seed, reference_fn=lambda: self.reference(cell), data_fn=data,
                            extras={"cache_dir": self.cache_dir, "metric_options": self.grid.metric_options},
                            memo=self._metric_memo)
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
        path = self.out_dir / "samples" / f"{cell_id}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # written whole or not at all
        torch.save({"samples": samples[:n].cpu(), "labels": None if labels is None else labels[:n]}, tmp)
        os.replace(tmp, path)


def run_grid(grid: Grid, results_dir: str | Path = "results", *, force: bool = False,
             progress: bool = True) -> ResultsTable:
    if grid.kind == "lte":
        from solverbench.lte.study import run_lte_study  # the study imports this module: import it late

        return run_lte_study(grid, results_dir, force=force, progress=progress)
    return Runner(grid, results_dir, force=force, progress=progress).run()


def describe_row(row: Any) -> str:
    """A sweep row as the closing summary lists it: solver label, NFE, guidance and seed."""
    nfe = "adaptive" if row["nfe"] is None or row["nfe"] != row["nfe"] else f"nfe={int(row['nfe'])}"
    return f"{row['solver_label']} {nfe} cfg={row['cfg_scale']:g} seed={row['seed']}"
