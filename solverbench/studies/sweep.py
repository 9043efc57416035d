"""``kind: sweep`` (the default): sample every cell of the grid at its NFE budget and measure it.

A cell is one (backbone, solver, NFE, schedule, guidance, seed); its row holds the measured
NFE, the solver's own counters, wall time, every metric with its interval, and provenance.
Samples are drawn in batches (``batch_size`` changes no sample: noise is drawn per index).

With ``export: {npz: true}`` in the grid (or ``run --export-npz``) each cell also writes all
its samples as an ADM evaluation batch, ``RESULTS/<grid>/npz/<cell id>.npz`` (``arr_0`` the
images of ``backbone.to_images`` as uint8 NHWC RGB, ``arr_1`` the labels where the backbone is
class-conditional), to feed OpenAI's evaluator.  Export is an output, not part of what defines
the numbers: the cell ids stay the same.  A cell counts as done only once its file is written
(written whole, by a rename); a cell done before export was asked owes its file, so the next
run with export runs it again from the same noise (same row) and writes it (``Unit.redo``).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from solverbench.engine import Study, Unit
from solverbench.distributed import world
from solverbench.engine.rows import cell_identity, row_head
from solverbench.errors import GridError, grid_error
from solverbench.flops import solve_cost
from solverbench.grid.values import BackboneSpec, Grid, SolverSpec
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json, file_sha256, spec_hash
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.metrics.image.adm_npz import LABELS, BatchWriter
from solverbench.metrics.shape import OPTION as SHAPE_OPTION, shape_columns
from solverbench.paired_arrays import write_paired_arrays
from solverbench.registry import METRICS, register_study
from solverbench.results import TABLE, read_table
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
        """Everything that defines this cell's numbers (not batch size or device, not what is exported)."""
        files = metric_files(grid)
        return cell_identity(grid, self.backbone, self.solver, self.guidance, self.seed, nfe=self.nfe,
                             schedule=self.schedule, metrics=sorted(grid.metrics),
                             **({"metric_options": grid.metric_options} if grid.metric_options else {}),
                             **({"metric_files_sha256": files} if files else {}))


def metric_hooks(grid: Grid, name: str) -> list[Callable]:
    """The distinct ``name`` hooks of the grid's metrics (image metrics share theirs)."""
    return [hook for hook in dict.fromkeys(getattr(METRICS.get(m), name, None) for m in grid.metrics) if hook]


def metric_files(grid: Grid) -> dict[str, str]:
    """SHA-256 of the files the grid's metric options name (a reference batch: ``fn.files(options, grid
    folder)``): their bytes define the numbers, so they are part of the cell ids."""
    return {key: file_sha256(path) for files in metric_hooks(grid, "files")
            for key, path in files(grid.metric_options, grid.base).items()}


def summed_costs(costs: list[tuple[int, float, dict[str, float]]]) -> tuple[float, float, dict[str, float]]:
    """A cell's cost over its batches, from each batch's ``(nfe, wall time, counters)``: the NFE per sample
    (NaN where batches differ), the total wall time and each counter's total."""
    nfe = {n for n, _, _ in costs}
    counters: dict[str, float] = {}
    for _, _, counted in costs:
        for name, value in counted.items():
            counters[name] = counters.get(name, 0) + value
    return (max(nfe) if len(nfe) == 1 else float("nan")), sum(w for _, w, _ in costs), counters


@dataclass(frozen=True)
class Export:
    """What a sweep writes besides its rows (the grid's ``export:``, or ``run --export-npz``)."""

    npz: bool = False  # every sample of each cell as an ADM batch, RESULTS/<grid>/npz/<cell id>.npz


def parse_export(raw: Mapping[str, Any]) -> Export:
    section = raw.get("export")
    if section is None:
        return Export()
    if not isinstance(section, dict) or set(section) - {"npz"}:
        grid_error("export", section, "allowed: {npz: true or false} (npz: write each cell's samples as an ADM "
                                      "evaluation .npz, RESULTS/<grid>/npz/<cell id>.npz)")
    if not isinstance(section.get("npz", False), bool):
        grid_error("export.npz", section["npz"], "allowed: true or false")
    return Export(npz=section.get("npz", False))


def check_npz_export(grid: Grid, asked: str) -> None:
    """Refuse the ADM .npz export (``asked``: where it was asked, for the message) where a backbone of the grid
    makes no images (it has no ``to_images``)."""
    without = [spec.name for spec in grid.backbones if not callable(getattr(spec.instance, "to_images", None))]
    if without:
        raise GridError(f"{asked}; the ADM .npz export holds images, and backbone(s) {', '.join(map(repr, without))} "
                        "make none (no to_images); export is for image backbones")


def cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid, in a stable order (adaptive solvers get one cell per setting, NFE None)."""
    return [Cell(backbone, solver, nfe, schedule, guidance, seed)
            for backbone in grid.backbones for solver in grid.solvers if solver.runs_on(backbone)
            for nfe in solver.budgets
            for schedule, guidance, seed in itertools.product(grid.schedules_for(solver), grid.guidances_for(nfe),
                                                              grid.seeds)]


@register_study("sweep")
class Sweep(Study):
    """Sample every solver at its NFE budgets and measure the samples (the paper's Table 1)."""

    needs_budgets = True
    sharded = True  # under torchrun each rank samples its share of a cell's batches
    settings_key = "export"

    def __init__(self, grid: Grid, workspace: Any):
        super().__init__(grid, workspace)
        self._costs: dict[tuple, dict[str, Any]] = {}  # a cell shape's FLOPs and peak memory (``costs``)

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any]) -> Export:
        return parse_export(raw)

    @classmethod
    def check_grid(cls, grid: Grid) -> None:
        """What the grid's metrics cannot compute, refused before any work (their ``check_grid`` hooks:
        e.g. a reference batch that lacks what they compare with), and an export a backbone cannot give."""
        for check in metric_hooks(grid, "check_grid"):
            try:
                check(grid)
            except ValueError as err:
                raise GridError(str(err)) from None
        if grid.study is not None and grid.study.npz:
            check_npz_export(grid, "grid key 'export.npz': bad value True")

    @classmethod
    def with_npz_export(cls, grid: Grid) -> Grid:
        """``grid`` exporting every cell's samples as an ADM .npz (``run --export-npz``); same cell ids.  A grid
        with a backbone that makes no images is refused (GridError)."""
        check_npz_export(grid, "--export-npz")
        return dataclasses.replace(grid, study=dataclasses.replace(grid.study or Export(), npz=True))

    @property
    def export(self) -> Export:
        return self.grid.study or Export()

    def units(self) -> list[Unit]:
        varying = self.varying_keys()
        units = []
        for cell in cells(self.grid):
            cell_id = spec_hash(cell.identity(self.grid))
            owes_npz = (lambda cell_id=cell_id: not self.npz_path(cell_id).is_file()) if self.export.npz else None
            units.append(Unit([cell_id], self.cell_text(cell, varying),
                              lambda cell=cell, cell_id=cell_id: [self.run_cell(cell, cell_id)], redo=owes_npz))
        if self.export.npz and world().main:
            self.note_missing_exports([cid for unit in units for cid in unit.ids])
        batches, ranks = -(-self.grid.num_samples // self.grid.batch_size), world()
        if batches < ranks.size and ranks.main:
            tqdm.write(f"{ranks.size} processes share the {batches} batch(es) of each cell: {ranks.size - batches} "
                       f"idle; give batch_size at most num_samples / {ranks.size}", file=sys.stderr)
        return units

    def describe(self, row: pd.Series) -> str:
        nfe = "adaptive" if pd.isna(row["nfe"]) else f"nfe={int(row['nfe'])}"
        return f"{row['solver_label']} {nfe} cfg={row['cfg_scale']:g} seed={row['seed']}"

    def varying_keys(self) -> list[str]:
        """The cell keys besides solver and NFE that take more than one value in this grid."""
        grid = self.grid
        schedules = {canonical_json(s) for solver in grid.solvers for s in grid.schedules_for(solver)}
        counts = {"backbone": len(grid.backbones), "schedule": len(schedules), "guidance": len(grid.guidances),
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
            row.update(solver.cell_fields(cell.nfe, cell.guidance))
            learned = workspace.learned_grid(cell.backbone, cell.solver, cell.nfe, cell.guidance, cell.schedule)
            if learned is not None:
                row.update(learned.row_fields())
            times = None if learned is None else learned.times
            samples, stats = self.sample_cell(cell, workspace.sampling_backbone(cell.backbone), solver, times)
            row.update(stats)
            row.update(self.costs(cell, backbone, solver, times))
            bad = (~torch.isfinite(samples.flatten(1)).all(dim=1)).sum().item()
            if bad:
                row.update(status="failed", error=f"{bad} of {len(samples)} samples are not finite (NaN or inf)")
                return row
            labels = workspace.draws(cell.backbone, cell.seed).labels()
            writes = world().main  # every rank measures the gathered samples; rank 0 writes
            with (self.npz_writer(cell_id, len(samples)) if self.export.npz and writes else nullcontext()) as export:
                # under torchrun the image metrics split their images across ranks: rank 0 makes them all again
                # for the export (export_rest)
                sink = None if export is None or world().sharded else export.add
                values, kept = self.measure(cell, backbone, samples, sink)
                row.update(values)
                if export is not None:
                    self.export_rest(export, backbone, samples, labels)
            if writes:
                self.save_samples(cell_id, samples, labels)
                if kept and labels is not None:
                    kept = {**kept, "labels": labels.cpu().numpy()}
                write_paired_arrays(self.workspace.results_dir / grid.name, cell_id, kept)
            row.update(status="ok", error=None)
        except Exception as err:  # recorded, reported at the end of the sweep
            row.update(status="error", error=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc(limit=8))
        return row

    def sample_cell(self, cell: Cell, backbone: Any, solver: Solver, times: Optional[torch.Tensor] = None
                    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The cell's samples in batches (under torchrun each rank solves its batches and all gather them)
        and what solving them cost, summed over the batches (and ranks); ``times``: a learned grid."""
        grid, draws, ranks = self.grid, self.workspace.draws(cell.backbone, cell.seed), world()
        noise = draws.noise(self.workspace.dtype)
        labels = draws.labels()
        batches = [slice(start, start + grid.batch_size) for start in range(0, grid.num_samples, grid.batch_size)]
        costs: list[tuple[int, float, dict[str, float]]] = []

        def solve(b: int) -> torch.Tensor:
            sl = batches[b]
            with grid.precision.matmuls():
                result = sample(backbone, solver, noise[sl].to(grid.device),
                                None if labels is None else labels[sl].to(grid.device), nfe=cell.nfe,
                                time_grid=times, schedule="uniform" if times is not None else cell.schedule,
                                guidance=cell.guidance)
            costs.append((result.nfe, result.wall_time, result.counters))
            return result.samples

        out = ranks.map_batches(solve, len(batches))
        costs = [cost for part in ranks.all_objects(costs) for cost in part]
        nfe, wall, counters = summed_costs(costs)
        stats = {
            "nfe_measured": nfe,
            "nfe_measured_max": max(n for n, _, _ in costs),
            "wall_time": wall,
            "wall_time_per_sample": wall / grid.num_samples,
            "processes": ranks.size,
            **counters,
        }
        return torch.cat(out), stats

    def costs(self, cell: Cell, backbone: Any, solver: Solver, times: Optional[torch.Tensor]) -> dict[str, Any]:
        """FLOPs per sample of the cell's solve, split into backbone and solver, and its peak memory per sample
        (``solverbench.flops``), counted on its first sample once per cell shape (seeds share it, save an adaptive
        solver's, whose steps depend on the noise); where they cannot be counted, ``flops_error`` says why (the
        cell still counts)."""
        shape = (cell.backbone.key, cell.solver.key, cell.nfe, canonical_json(cell.schedule), cell.guidance,
                 cell.seed if cell.nfe is None else None)
        if shape not in self._costs:
            self._costs[shape] = self.count_costs(cell, backbone, solver, times)
        return self._costs[shape]

    def count_costs(self, cell: Cell, backbone: Any, solver: Solver, times: Optional[torch.Tensor]
                    ) -> dict[str, Any]:
        draws = self.workspace.draws(cell.backbone, cell.seed)
        labels = draws.labels()
        try:
            counted = solve_cost(backbone, solver, draws.noise(self.workspace.dtype)[:1].to(self.grid.device),
                                 None if labels is None else labels[:1].to(self.grid.device), nfe=cell.nfe,
                                 guidance=cell.guidance, schedule="uniform" if times is not None else cell.schedule,
                                 time_grid=times)
        except Exception as err:  # a compiled or exotic network the counter cannot see through
            return {"flops_error": f"{type(err).__name__}: {err}"}
        return counted.row_fields()

    def measure(self, cell: Cell, backbone: Any, samples: torch.Tensor,
                sample_images: Optional[Callable[[torch.Tensor], None]] = None
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Every metric of the grid, and what the metrics keep for paired comparisons
        (``solverbench.paired_arrays``); ``sample_images`` gets the samples' images where an image metric
        makes them."""
        workspace = self.workspace
        draws = workspace.draws(cell.backbone, cell.seed)
        labels = draws.labels()
        ctx = MetricContext(samples=samples, labels=None if labels is None else labels.to(samples.device),
                            backbone=backbone, guidance=cell.guidance, seed=cell.seed,
                            reference_fn=lambda: workspace.reference(cell.backbone, cell.seed, cell.guidance),
                            data_fn=draws.data,
                            extras={"cache_dir": workspace.cache_dir, "metric_options": self.grid.metric_options,
                                    "grid_dir": self.grid.base, "sample_images": sample_images},
                            memo=workspace.metric_memo)
        values: dict[str, Any] = {}
        skipped = {}
        for name in self.grid.metrics:
            try:
                values.update(METRICS.get(name)(ctx))
            except NotApplicable as why:
                skipped[name] = str(why)
        thresholds = self.grid.metric_options.get(SHAPE_OPTION, {})
        for key, per_sample in ctx.kept.items():  # the quantiles behind each per-sample mean
            kind, column = key.split("/", 1)
            if kind == "per_sample":
                values.update(shape_columns(column, per_sample, thresholds.get(column)))
        values["metrics_not_applicable"] = canonical_json(skipped) if skipped else None
        return values, ctx.kept

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

    # -- the ADM .npz export ----------------------------------------------------------------
    def npz_path(self, cell_id: str) -> Path:
        return self.workspace.results_dir / self.grid.name / "npz" / f"{cell_id}.npz"

    def npz_writer(self, cell_id: str, num_samples: int) -> BatchWriter:
        """The cell's ADM batch, fed with the images the image metrics make (else ``export_rest`` makes them)."""
        return BatchWriter(self.npz_path(cell_id), num_samples)

    def export_rest(self, export: BatchWriter, backbone: Any, samples: torch.Tensor,
                    labels: Optional[torch.Tensor]) -> None:
        """Images no image metric made (none ran), then ``arr_1`` the labels of a class-conditional backbone."""
        if export.written == 0:
            for chunk in samples.split(self.grid.batch_size):
                export.add(backbone.to_images(chunk))
        if labels is not None:
            export.add_array(LABELS, labels.cpu().numpy().astype(np.int64))

    def note_missing_exports(self, cell_ids: list[str]) -> None:
        """One line naming how many cells finished before export was asked and have no .npz."""
        rows = read_table(self.workspace.results_dir / self.grid.name / TABLE)
        if "cell_id" not in rows:
            return
        done = set(rows.loc[rows["status"] == "ok", "cell_id"]) & set(cell_ids)
        missing = [cell_id for cell_id in done if not self.npz_path(cell_id).is_file()]
        if missing:
            tqdm.write(f"export: {len(missing)} cell(s) finished before export was asked have no .npz in "
                       f"{self.npz_path('x').parent}; they run again now, from the same noise (same rows)",
                       file=sys.stderr)
