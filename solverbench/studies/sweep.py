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

With sequential sample sizes (``num_samples: {start, max, until: separated}``) a unit is a column of
cells (``columns``: the solvers a table compares on the same samples), sampled look by look until
its solvers are separated or it takes ``max`` samples (``solverbench.studies.sequential``); each
row records the samples it used, ``num_samples_max``, ``looks`` and ``stop_reason``.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
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
from solverbench.grid.values import SEPARATED, BackboneSpec, Grid, SolverSpec
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json, file_sha256, spec_hash
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.metrics.image.adm_npz import LABELS, BatchWriter
from solverbench.metrics.shape import OPTION as SHAPE_OPTION, shape_columns
from solverbench.paired import RESAMPLES
from solverbench.paired_arrays import write_paired_arrays
from solverbench.registry import METRICS, register_study
from solverbench.results import TABLE, read_table
from solverbench.sampling import sample
from solverbench.solver import Solver
from solverbench.studies.sequential import MAX_REACHED, Measured, judge_look, look_level


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


@dataclass
class CellRun:
    """One cell as it is sampled and measured: its row so far, what it samples with, its samples so far (those of a
    plain run of as many) and each of their batches' ``(nfe, wall time, counters)``, and its metrics' values and
    paired arrays on them."""

    cell: Cell
    cell_id: str
    row: dict[str, Any]
    backbone: Any = None  # the backbone its metrics measure with
    sampler: Any = None  # the backbone it samples with (under the grid's autocast, compiled where asked)
    solver: Optional[Solver] = None
    times: Optional[torch.Tensor] = None  # a learned time grid
    samples: Optional[torch.Tensor] = None  # samples 0 .. n - 1
    costs: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    looks: int = 0  # the looks it took (sequential sample sizes)

    @property
    def n(self) -> int:
        """How many samples it has."""
        return 0 if self.samples is None else len(self.samples)


def record_error(run: CellRun, err: BaseException) -> None:
    """The cell raised: its row says what, with the traceback (reported at the end of the sweep)."""
    run.row.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))


def attempt(run: CellRun, step: Callable[[], bool]) -> bool:
    """``step()``, False where the cell failed (its row says why) or raised (``record_error``)."""
    try:
        return step()
    except Exception as err:  # recorded, reported at the end of the sweep
        record_error(run, err)
        return False


def columns(listed: list[tuple[Cell, str]]) -> list[list[tuple[Cell, str]]]:
    """The grid's ``(cell, cell id)`` grouped into columns: the cells that share backbone, NFE, schedule, guidance
    and seed (the solvers a table compares on the same samples), in the order of their first cell."""
    grouped: dict[tuple, list[tuple[Cell, str]]] = {}
    for cell, cell_id in listed:
        key = (cell.backbone.key, cell.nfe, canonical_json(cell.schedule), cell.guidance, cell.seed)
        grouped.setdefault(key, []).append((cell, cell_id))
    return list(grouped.values())


def ranked_count(column: list[tuple[Cell, str]]) -> int:
    """How many cells of a column are ranked (not analysis-only)."""
    return sum(not cell.solver.instance.analysis_only for cell, _ in column)


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
    sequential_samples = True  # num_samples: {start, max, until: separated}: a column per unit, look by look
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
        """A unit per cell; with sequential sample sizes a unit per column (``columns``), run look by look."""
        varying = self.varying_keys()
        listed = [(cell, spec_hash(cell.identity(self.grid))) for cell in cells(self.grid)]
        plan = self.grid.sequential
        if plan is None:
            units = [Unit([cell_id], self.cell_text(cell, varying),
                          lambda cell=cell, cell_id=cell_id: [self.run_cell(cell, cell_id)],
                          redo=self.owes_npz([cell_id]))
                     for cell, cell_id in listed]
        else:
            grouped = columns(listed)
            units = [Unit([cell_id for _, cell_id in column], self.column_text(column, varying),
                          lambda column=column: self.run_column(column),
                          redo=self.owes_npz([cell_id for _, cell_id in column]))
                     for column in grouped]
        ranks = world()
        if self.export.npz and ranks.main:
            self.note_missing_exports([cid for unit in units for cid in unit.ids])
        first = self.grid.num_samples if plan is None else plan.start
        batches = -(-first // self.grid.batch_size)
        if batches < ranks.size and ranks.main:
            tqdm.write(f"{ranks.size} processes share the {batches} batch(es) of each cell"
                       f"{'' if plan is None else ' at its first look'}: {ranks.size - batches} idle; give batch_size "
                       f"at most {'num_samples' if plan is None else 'num_samples.start'} / {ranks.size}",
                       file=sys.stderr)
        if plan is not None and ranks.main:
            self.note_inseparable(grouped)
        return units

    def owes_npz(self, cell_ids: list[str]) -> Optional[Callable[[], bool]]:
        """With export asked: whether a cell of a unit done has no ADM .npz yet (the unit runs again)."""
        if not self.export.npz:
            return None
        return lambda: any(not self.npz_path(cell_id).is_file() for cell_id in cell_ids)

    def note_inseparable(self, grid_columns: list[list[tuple[Cell, str]]]) -> None:
        """One line where some columns can never be separated: their ``m`` per-sample comparisons share Holm's level
        ``ALPHA / K`` and the first of them faces at most ``ALPHA / K / m``, which no paired bootstrap p-value reaches
        below ``1 / (1 + RESAMPLES)``; such a column runs to max."""
        plan = self.grid.sequential
        per_sample = [c for c in plan.on if getattr(METRICS.get(c), "per_sample", False)]
        level = look_level(len(plan.looks()))
        smallest = 1 / (1 + RESAMPLES)
        stuck = [ranked_count(column) for column in grid_columns
                 if per_sample and level / max(1, (ranked_count(column) - 1) * len(per_sample)) < smallest]
        if stuck:
            m = (max(stuck) - 1) * len(per_sample)
            tqdm.write(f"num_samples: {len(stuck)} column(s) of up to {max(stuck)} ranked solvers can never be "
                       f"separated: their {m} comparisons in {', '.join(per_sample)} share a look's level {level:.3g} "
                       f"({len(plan.looks())} looks), and the first faces {level / m:.2g} under Holm, below the "
                       f"smallest p-value of a paired bootstrap (1/{1 + RESAMPLES}); they run to max (decide on fewer "
                       "columns with on:, or take fewer looks)", file=sys.stderr)

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
        return " ".join([cell.solver.label, self.setting_text(cell, varying)])

    def column_text(self, column: list[tuple[Cell, str]], varying: list[str]) -> str:
        """A column as the progress bar names it: how many solvers, their NFE and whatever else varies in the grid."""
        return " ".join([f"{len(column)} solver(s)", self.setting_text(column[0][0], varying)])

    def setting_text(self, cell: Cell, varying: list[str]) -> str:
        """NFE and the cell keys besides the solver that vary in the grid, as the progress bar says them."""
        values = {"backbone": cell.backbone.name, "schedule": canonical_json(cell.schedule),
                  "guidance": f"{cell.guidance.scale:g} on {list(cell.guidance.interval)}", "seed": str(cell.seed)}
        nfe = "adaptive" if cell.nfe is None else f"nfe={cell.nfe}"
        return " ".join([nfe] + [f"{key}={values[key]}" for key in varying])

    # -- one cell ---------------------------------------------------------------------
    def run_cell(self, cell: Cell, cell_id: str) -> dict[str, Any]:
        """The row of one cell: its ``num_samples`` samples, measured."""
        run = self.start_cell(cell, cell_id)
        if attempt(run, lambda: self.prepare(run)) and attempt(run, lambda: self.grow(run, self.grid.num_samples)):
            attempt(run, lambda: self.finish(run))
        return run.row

    def start_cell(self, cell: Cell, cell_id: str) -> CellRun:
        """The cell before any work: its row's head (what it is and how it is made)."""
        grid = self.grid
        row = row_head(grid, "sweep", cell_id, cell.backbone, cell.solver, cell.guidance, cell.seed)
        row.update(nfe=cell.nfe, schedule=canonical_json(cell.schedule), batch_size=grid.batch_size)
        return CellRun(cell, cell_id, row)

    def prepare(self, run: CellRun) -> bool:
        """What the cell samples and measures with: the backbone, the prepared solver, a learned time grid (their
        row fields in its row)."""
        cell, workspace = run.cell, self.workspace
        run.backbone = workspace.backbone(cell.backbone)
        run.solver = workspace.solver(cell.solver, cell.backbone)
        run.row.update(run.solver.row_fields())
        run.row.update(run.solver.cell_fields(cell.nfe, cell.guidance))
        learned = workspace.learned_grid(cell.backbone, cell.solver, cell.nfe, cell.guidance, cell.schedule)
        if learned is not None:
            run.row.update(learned.row_fields())
        run.times = None if learned is None else learned.times
        run.sampler = workspace.sampling_backbone(cell.backbone)
        return True

    def grow(self, run: CellRun, n: int) -> bool:
        """Sample the cell's samples ``run.n .. n - 1`` and keep them after the earlier ones; the row's costs are
        those of every batch so far.  False where some of its samples are not finite (the row says so: failed)."""
        new, costs = self.sample_range(run, run.n, n)
        run.samples = new if run.samples is None else torch.cat([run.samples, new])
        run.costs += costs
        run.row.update(self.cost_fields(run.costs, run.n))
        run.row.update(self.costs(run.cell, run.backbone, run.solver, run.times))
        bad = (~torch.isfinite(run.samples.flatten(1)).all(dim=1)).sum().item()
        if bad:
            run.row.update(status="failed", error=f"{bad} of {run.n} samples are not finite (NaN or inf)")
            return False
        return True

    def finish(self, run: CellRun) -> bool:
        """Measure the cell's samples and write what it keeps (the ADM .npz fed with the image metrics' images where
        export is asked)."""
        writes = world().main  # every rank measures the gathered samples; rank 0 writes
        with (self.npz_writer(run.cell_id, run.n) if self.export.npz and writes else nullcontext()) as export:
            # under torchrun the image metrics split their images across ranks: rank 0 makes them all again
            # for the export (export_rest)
            self.measure_run(run, None if export is None or world().sharded else export.add)
            if export is not None:
                self.export_rest(export, run.backbone, run.samples, self.labels_of(run))
        self.write_outputs(run)
        return True

    def measure_run(self, run: CellRun, sample_images: Optional[Callable[[torch.Tensor], None]] = None) -> None:
        """Every metric of the grid on the cell's samples so far, into its row (and what they keep, into ``run``)."""
        run.values, run.kept = self.measure(run.cell, run.backbone, run.samples, sample_images)
        run.row.update(run.values)

    def write_outputs(self, run: CellRun) -> None:
        """Rank 0 writes the cell's first samples (the report's sample grids) and its paired arrays; the row is ok."""
        if world().main:
            labels = self.labels_of(run)
            self.save_samples(run.cell_id, run.samples, labels)
            kept = {**run.kept, "labels": labels.cpu().numpy()} if run.kept and labels is not None else run.kept
            write_paired_arrays(self.workspace.results_dir / self.grid.name, run.cell_id, kept)
        run.row.update(status="ok", error=None)

    def labels_of(self, run: CellRun) -> Optional[torch.Tensor]:
        """The class labels of the cell's samples so far (None for an unconditional backbone)."""
        labels = self.workspace.draws(run.cell.backbone, run.cell.seed).labels()
        return None if labels is None else labels[:run.n]

    def sample_range(self, run: CellRun, start: int, stop: int
                     ) -> tuple[torch.Tensor, list[tuple[int, float, dict[str, float]]]]:
        """Samples ``start .. stop - 1`` of the cell in batches of ``batch_size`` from ``start`` (a multiple of it:
        the batches of a run of ``stop`` samples; under torchrun each rank solves its batches and all gather them),
        and each batch's ``(nfe, wall time, counters)`` (of every rank)."""
        cell, grid, ranks = run.cell, self.grid, world()
        draws = self.workspace.draws(cell.backbone, cell.seed)
        noise = draws.noise(self.workspace.dtype)
        labels = draws.labels()
        batches = [slice(first, min(first + grid.batch_size, stop)) for first in range(start, stop, grid.batch_size)]
        costs: list[tuple[int, float, dict[str, float]]] = []

        def solve(b: int) -> torch.Tensor:
            sl = batches[b]
            with grid.precision.matmuls():
                result = sample(run.sampler, run.solver, noise[sl].to(grid.device),
                                None if labels is None else labels[sl].to(grid.device), nfe=cell.nfe,
                                time_grid=run.times, schedule="uniform" if run.times is not None else cell.schedule,
                                guidance=cell.guidance)
            costs.append((result.nfe, result.wall_time, result.counters))
            return result.samples

        out = ranks.map_batches(solve, len(batches))
        return torch.cat(out), [cost for part in ranks.all_objects(costs) for cost in part]

    def cost_fields(self, costs: list[tuple[int, float, dict[str, float]]], n: int) -> dict[str, Any]:
        """What solving ``n`` samples cost, summed over their batches (and ranks)."""
        nfe, wall, counters = summed_costs(costs)
        return {
            "nfe_measured": nfe,
            "nfe_measured_max": max(batch_nfe for batch_nfe, _, _ in costs),
            "wall_time": wall,
            "wall_time_per_sample": wall / n,
            "processes": world().size,
            **counters,
        }

    # -- a column of cells, look by look (sequential sample sizes) -------------------------
    def run_column(self, column: list[tuple[Cell, str]]) -> list[dict[str, Any]]:
        """The rows of a column's cells, sampled look by look until the column is separated or takes ``max``
        samples (``solverbench.studies.sequential``): a cell that fails or raises leaves the column, the others
        go on; each row records the samples it used, ``num_samples_max``, ``looks`` and (where ok) ``stop_reason``."""
        plan = self.grid.sequential
        looks = plan.looks()
        runs = [self.start_cell(cell, cell_id) for cell, cell_id in column]
        running = [run for run in runs if attempt(run, lambda run=run: self.prepare(run))]
        stop = MAX_REACHED
        for n in looks:
            running = [run for run in running if attempt(run, lambda run=run: self.look(run, n))]
            if not running:
                break
            try:
                separated = world().decide(lambda: self.separated(running, n, len(looks)))
            except Exception as err:  # recorded in every running cell's row, reported at the end of the sweep
                for run in running:
                    record_error(run, err)
                running = []
                break
            if separated:
                stop = SEPARATED
                break
        for run in runs:
            run.row.update(num_samples=run.n, num_samples_max=plan.max, looks=run.looks)
        for run in running:
            run.row.update(stop_reason=stop)
            attempt(run, lambda run=run: self.close(run))
        return [run.row for run in runs]

    def look(self, run: CellRun, n: int) -> bool:
        """One look of a cell: its samples up to ``n``, and every metric measured on all of them."""
        run.looks += 1
        if not self.grow(run, n):
            return False
        self.measure_run(run)
        return True

    def separated(self, running: list[CellRun], n: int, looks: int) -> bool:
        """Whether every ranked solver of the column but the best is shown worse than it in every deciding column,
        on its ``n`` samples (``sequential.judge_look``, each look at level ``ALPHA / looks``)."""
        cell = running[0].cell
        labels = self.workspace.draws(cell.backbone, cell.seed).labels()
        measured = [Measured(run.cell.solver.label, not run.cell.solver.instance.analysis_only, run.values, run.kept)
                    for run in running]
        return judge_look(measured, self.grid.sequential.on, samples=n, seed=cell.seed,
                         labels=None if labels is None else labels[:n].cpu().numpy(), level=look_level(looks)).separated

    def close(self, run: CellRun) -> bool:
        """Write what a cell of a stopped column keeps: its last look's samples and arrays (its ADM .npz made from its
        samples, where export is asked)."""
        if self.export.npz and world().main:
            with self.npz_writer(run.cell_id, run.n) as export:
                self.export_rest(export, run.backbone, run.samples, self.labels_of(run))
        self.write_outputs(run)
        return True

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
        n = len(samples)  # samples 0 .. n - 1 of the cell's seed
        ctx = MetricContext(samples=samples, labels=None if labels is None else labels[:n].to(samples.device),
                            backbone=backbone, guidance=cell.guidance, seed=cell.seed,
                            reference_fn=lambda: workspace.reference(cell.backbone, cell.seed, cell.guidance, n),
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
