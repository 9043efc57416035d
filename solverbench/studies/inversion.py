"""``kind: inversion``: every solver run from data to noise and back, and class edits (docs/inversion.md).

A cell is one (backbone, solver, NFE, schedule, guidance, seed), as in a sweep, and, where the grid
names ``inversion: {t0: [...]}``, one of those times: the cell inverts to t0 and regenerates from it
(``invert(..., t_end=t0)``, ``sample(..., t_start=t0)``: the whole budget each way on [0, t0]).  Without
``t0`` every cell runs the whole way (t0 = 1); a cell at t0 = 1 is that same cell, with the same id.
From data draw 0 of the seed (with the samples' labels) it records:

- ``inversion_error``: per-sample RMS of the solver's inverted state to the exact inversion (the
  reference solve from t = 0 to t0, float64, the grid's tolerance; to t0 = 1 cached as references are);
- ``roundtrip_error``: per-sample RMS to the data of the sample regenerated from that state by the
  same solver, NFE, schedule, labels and guidance;
- on the backbones named under ``inversion: {edits: [...]}``: class edits.  Each sample is inverted
  to t0 under its own label without guidance (scale 1), then regenerated from t0 under another label
  (``noise.edit_labels_for``) with the cell's guidance.  The backbone's classifier (its
  ``default_feature_extractor`` with a ``logits`` head) scores the edits (``edit_accuracy``: what
  changed) and the unedited data (``source_accuracy``); ``edit_distance``, the per-sample RMS to the
  source, is what was kept.  The first ``save_samples`` sources and edits are kept in
  ``RESULTS/<grid>/edits/<cell id>.pt`` for the report.

Every mean carries its 95% bootstrap interval over samples, stratified by label.  Solvers that cannot
invert and learned time grids (made for sampling) are refused when the grid is read.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import traceback
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from solverbench.engine import Unit
from solverbench.engine.rows import row_head
from solverbench.errors import GridError, grid_error
from solverbench.grid.values import Grid
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json, spec_hash
from solverbench.inversion import invert
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.registry import FEATURE_EXTRACTORS, register_study
from solverbench.sampling import sample
from solverbench.schedules import is_learned
from solverbench.studies.partial_reference import exact_partial_inversions
from solverbench.studies.sweep import Cell, Sweep, cells, summed_costs
from solverbench.uncertainty import mean_interval, with_interval

NO_GUIDANCE_SCALE = 1.0  # edits invert under the source label unguided (docs/inversion.md)
WHOLE_WAY = 1.0  # the t0 of a cell that inverts all the way to noise (every cell of a grid without t0)


@dataclass(frozen=True)
class InversionSettings:
    edits: tuple[str, ...] = ()  # backbone names whose cells also class-edit
    t0: tuple[float, ...] = ()  # the times cells invert to and regenerate from; empty: all the way (1) only

    @property
    def times(self) -> tuple[float, ...]:
        """The t0 of the grid's cells, in the order they run."""
        return self.t0 or (WHOLE_WAY,)


def parse_inversion_settings(raw: Mapping[str, Any]) -> InversionSettings:
    section = raw.get("inversion")
    if section is None:
        return InversionSettings()
    allowed = ("allowed: {edits: [backbone names], t0: [times in (0, 1]]} (class edits on those backbones: each "
               "needs class labels and a classifier, its default_feature_extractor with a logits head; t0: invert "
               "to each time and regenerate from it, SDEdit-style)")
    if not isinstance(section, dict) or set(section) - {"edits", "t0"}:
        grid_error("inversion", section, allowed)
    edits = section.get("edits", [])
    if not (isinstance(edits, list) and all(isinstance(name, str) for name in edits)):
        grid_error("inversion.edits", edits, allowed)
    return InversionSettings(edits=tuple(edits), t0=parse_t0(section.get("t0")))


def parse_t0(value: Any) -> tuple[float, ...]:
    """``inversion.t0``: a time or a list of distinct times in (0, 1] (empty when not given)."""
    if value is None:
        return ()
    times = value if isinstance(value, list) else [value]
    allowed = "a time in (0, 1] or a list of distinct ones (e.g. [0.3, 0.5, 0.7, 1.0]; 1 inverts all the way)"
    if not times or not all(isinstance(t, numbers.Real) and not isinstance(t, bool) and not math.isnan(t)
                            and 0 < t <= 1 for t in times):
        grid_error("inversion.t0", value, allowed)
    if len(set(times)) != len(times):
        grid_error("inversion.t0", value, "distinct times: each names cells of its own")
    return tuple(float(t) for t in times)


def edit_classifier(backbone: Any) -> torch.nn.Module:
    """The classifier that scores class edits on ``backbone``: its default feature extractor, which must
    have a ``logits`` head (ValueError naming what is missing)."""
    name = type(backbone).__name__
    if getattr(backbone, "num_classes", None) is None or getattr(backbone, "null_label", None) is None:
        raise ValueError(f"{name} has no class labels (or no null label for guidance): nothing to edit")
    extractor = getattr(backbone, "default_feature_extractor", None)
    if extractor is None:
        raise ValueError(f"{name} names no default_feature_extractor, so no classifier can score its edits")
    network = FEATURE_EXTRACTORS.get(extractor)()
    if not callable(getattr(network, "logits", None)):
        raise ValueError(f"{name}'s feature extractor {extractor!r} has no logits head to score edits with")
    return network.eval()


@register_study("inversion")
class InversionStudy(Sweep):
    """Invert data with every solver at its budgets, regenerate it, and class-edit where asked."""

    sharded = False  # one process: the cells invert and regenerate whole
    sequential_samples = False  # num_samples is one integer: a cell inverts its data draw whole
    settings_key = "inversion"
    unused_keys = ("metrics", "metric_options", "export")

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any]) -> InversionSettings:
        return parse_inversion_settings(raw)

    @classmethod
    def check_grid(cls, grid: Grid) -> None:
        """Solvers that invert, closed-form time grids, and edits only where a classifier can score them."""
        for spec in grid.solvers:
            reason = spec.instance.inversion_refusal()
            if reason:
                raise GridError(f"grid key 'solvers': {spec.label} cannot invert: {reason}")
            for schedule in grid.schedules_for(spec):
                if is_learned(schedule):
                    raise GridError(f"grid key 'schedule': {canonical_json(schedule)} for {spec.label} is a time "
                                    "grid learned for sampling; an inversion grid takes closed-form schedules")
        settings: InversionSettings = grid.study
        names = [backbone.name for backbone in grid.backbones]
        for name in settings.edits:
            if name not in names:
                raise GridError(f"grid key 'inversion.edits': {name!r} is not a backbone of the grid "
                                f"({', '.join(names)})")
        for backbone in grid.backbones:
            if backbone.name in settings.edits:
                try:
                    edit_classifier(backbone.instance)
                except ValueError as err:
                    raise GridError(f"grid key 'inversion.edits': {err}") from None

    def __init__(self, grid: Grid, workspace: Any):
        super().__init__(grid, workspace)
        self._classifiers: dict[str, torch.nn.Module] = {}
        self._partial_references: dict[tuple, dict[float, torch.Tensor]] = {}  # exact inversions to each t0 < 1

    def units(self) -> list[Unit]:
        varying = self.varying_keys()
        named = bool(self.grid.study.t0)
        units = []
        for cell in cells(self.grid):
            for t0 in self.grid.study.times:
                cell_id = spec_hash(self.identity(cell, t0))
                text = self.cell_text(cell, varying) + (f" t0={t0:g}" if named else "")
                units.append(Unit([cell_id], text, lambda cell=cell, cell_id=cell_id, t0=t0:
                                  [self.run_cell(cell, cell_id, t0)]))
        return units

    def identity(self, cell: Cell, t0: float = WHOLE_WAY) -> dict[str, Any]:
        """What defines the cell's numbers: a sweep cell's, with the edits in place of metrics, and the time it
        inverts to where that is not the whole way (so a cell at t0 = 1 is the cell of a grid without t0)."""
        identity = cell.identity(self.grid)
        identity.pop("metrics")
        return {**identity, "edits": self.edits(cell), **({"t0": t0} if t0 != WHOLE_WAY else {})}

    def describe(self, row: Any) -> str:
        """A sweep row's description, and the time it inverted to where that is not the whole way."""
        t0 = row.get("t0")
        whole = t0 is None or math.isnan(t0) or t0 == WHOLE_WAY  # rows written before cells recorded t0: all the way
        return super().describe(row) + ("" if whole else f" t0={t0:g}")

    def edits(self, cell: Cell) -> bool:
        return cell.backbone.name in self.grid.study.edits

    # -- one cell ---------------------------------------------------------------------
    def run_cell(self, cell: Cell, cell_id: str, t0: float = WHOLE_WAY) -> dict[str, Any]:
        grid, workspace = self.grid, self.workspace
        row = row_head(grid, "inversion", cell_id, cell.backbone, cell.solver, cell.guidance, cell.seed)
        row.update(nfe=cell.nfe, schedule=canonical_json(cell.schedule), batch_size=grid.batch_size,
                   edits=self.edits(cell), t0=t0)
        try:
            solver = workspace.solver(cell.solver, cell.backbone)
            row.update(solver.row_fields())
            row.update(solver.cell_fields(cell.nfe, cell.guidance))
            x0 = workspace.data(cell.backbone, cell.seed)
            labels = workspace.draws(cell.backbone, cell.seed).labels()
            noise, inverted = self.run_batches(cell, solver, invert, x0, labels, cell.guidance, t0)
            regenerated, regeneration = self.run_batches(cell, solver, sample, noise, labels, cell.guidance, t0)
            outputs = {"inverted noise": noise, "regenerated samples": regenerated}
            if self.edits(cell):
                edits, edit_cost = self.edit(cell, solver, x0, labels, noise, t0)
                outputs["edits"] = edits
            bad = {what: int((~torch.isfinite(x.flatten(1)).all(dim=1)).sum()) for what, x in outputs.items()}
            if any(bad.values()):
                row.update(status="failed", error="; ".join(f"{n} of {len(x0)} {what} are not finite (NaN or inf)"
                                                           for what, n in bad.items() if n))
                return row
            exact = self.exact_inversion(cell, labels, t0)
            row.update(self.mean("inversion_error", per_sample_rms(noise, exact), cell, labels))
            row.update(self.mean("roundtrip_error", per_sample_rms(regenerated, x0), cell, labels))
            row.update(nfe_measured=inverted["nfe"], regeneration_nfe_measured=regeneration["nfe"],
                       wall_time=inverted["wall_time"] + regeneration["wall_time"],
                       wall_time_per_sample=(inverted["wall_time"] + regeneration["wall_time"]) / len(x0),
                       **{name: inverted["counters"].get(name, 0) + regeneration["counters"].get(name, 0)
                          for name in {**inverted["counters"], **regeneration["counters"]}})
            if self.edits(cell):
                row.update(self.edit_measures(cell, cell_id, x0, labels, edits, edit_cost))
            row.update(status="ok", error=None)
        except Exception as err:  # recorded, reported at the end of the run
            row.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
        return row

    def run_batches(self, cell: Cell, solver: Any, direction: Any, x: torch.Tensor, labels: Optional[torch.Tensor],
                    guidance: Guidance, t0: float = WHOLE_WAY) -> tuple[torch.Tensor, dict[str, Any]]:
        """``invert`` (to ``t0``) or ``sample`` (from ``t0``) over the cell's batches: the results and what they
        cost, summed."""
        grid, backbone = self.grid, self.workspace.sampling_backbone(cell.backbone)
        part = {} if t0 == WHOLE_WAY else {"t_end" if direction is invert else "t_start": t0}
        outs, costs = [], []
        for start in range(0, len(x), grid.batch_size):
            sl = slice(start, start + grid.batch_size)
            with grid.precision.matmuls():
                result = direction(backbone, solver, x[sl].to(device=grid.device, dtype=self.workspace.dtype),
                                   None if labels is None else labels[sl].to(grid.device), nfe=cell.nfe,
                                   schedule=cell.schedule, guidance=guidance, **part)
            outs.append(result.noise if direction is invert else result.samples)
            costs.append((result.nfe, result.wall_time, result.counters))
        nfe, wall, counters = summed_costs(costs)
        return torch.cat(outs), {"nfe": nfe, "wall_time": wall, "counters": counters}

    def exact_inversion(self, cell: Cell, labels: Optional[torch.Tensor], t0: float) -> torch.Tensor:
        """The exact inversion of the cell's data to ``t0``: the workspace's cached one all the way, else the
        reference solve read at every t0 < 1 of the grid (once per run)."""
        workspace = self.workspace
        if t0 == WHOLE_WAY:
            return workspace.exact_inversion(cell.backbone, cell.seed, cell.guidance)
        key = (cell.backbone.key, cell.seed, cell.guidance)
        if key not in self._partial_references:
            self._partial_references[key] = exact_partial_inversions(
                workspace.backbone(cell.backbone), workspace.data(cell.backbone, cell.seed),
                None if labels is None else labels.to(self.grid.device), cell.guidance,
                [t for t in self.grid.study.times if t != WHOLE_WAY], self.grid.tolerance, self.grid.batch_size,
                workspace.progress)
        return self._partial_references[key][t0]

    def mean(self, name: str, values: torch.Tensor, cell: Cell, labels: Optional[torch.Tensor],
             worst: bool = True) -> dict[str, float]:
        """``name`` (the mean over samples), its 95% bootstrap interval and (``worst``) its largest sample."""
        mean, interval = mean_interval(values.double().cpu(), seed=cell.seed, name=name, strata=labels)
        return {**with_interval(name, mean, interval), **({f"{name}_max": values.max().item()} if worst else {})}

    # -- class edits ------------------------------------------------------------------
    def edit(self, cell: Cell, solver: Any, x0: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor,
             t0: float = WHOLE_WAY) -> tuple[torch.Tensor, dict[str, Any]]:
        """Invert to ``t0`` under the source labels unguided (reusing the round trip's state where the cell is
        unguided too), regenerate from ``t0`` under the target labels with the cell's guidance."""
        unguided = dataclasses.replace(cell.guidance, scale=NO_GUIDANCE_SCALE)
        if cell.guidance.scale != NO_GUIDANCE_SCALE:
            noise, _ = self.run_batches(cell, solver, invert, x0, labels, unguided, t0)
        targets = self.workspace.draws(cell.backbone, cell.seed).edit_labels()
        return self.run_batches(cell, solver, sample, noise, targets, cell.guidance, t0)

    def classifier(self, cell: Cell) -> torch.nn.Module:
        key = cell.backbone.key
        if key not in self._classifiers:
            self._classifiers[key] = edit_classifier(self.workspace.backbone(cell.backbone)).to(self.grid.device)
        return self._classifiers[key]

    def predicted(self, cell: Cell, x: torch.Tensor) -> torch.Tensor:
        """The classifier's labels of samples ``x`` (through the backbone's images, as image metrics see them)."""
        backbone, classifier = self.workspace.backbone(cell.backbone), self.classifier(cell)
        with torch.no_grad():
            return torch.cat([classifier.logits(backbone.to_images(chunk)).argmax(dim=1).cpu()
                              for chunk in x.split(self.grid.batch_size)])

    def edit_measures(self, cell: Cell, cell_id: str, x0: torch.Tensor, labels: torch.Tensor,
                      edits: torch.Tensor, cost: dict[str, Any]) -> dict[str, Any]:
        targets = self.workspace.draws(cell.backbone, cell.seed).edit_labels()
        hits = (self.predicted(cell, edits) == targets).double()
        source_hits = (self.predicted(cell, x0) == labels.cpu()).double()
        self.save_edits(cell_id, x0, edits, labels, targets)
        return {**self.mean("edit_accuracy", hits, cell, labels, worst=False),
                **self.mean("edit_distance", per_sample_rms(edits, x0), cell, labels),
                **self.mean("source_accuracy", source_hits, cell, labels, worst=False),
                "edit_inversion_cfg_scale": NO_GUIDANCE_SCALE, "edit_nfe_measured": cost["nfe"]}

    def save_edits(self, cell_id: str, x0: torch.Tensor, edits: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor) -> None:
        """The first ``save_samples`` sources and edits, for the report's edit grids (written whole, by a rename)."""
        n = min(self.grid.save_samples, len(x0))
        if not n:
            return
        path = self.workspace.results_dir / self.grid.name / "edits" / f"{cell_id}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"source": x0[:n].cpu(), "edited": edits[:n].cpu(), "source_labels": labels[:n].cpu(),
                    "target_labels": targets[:n].cpu()}, tmp)
        os.replace(tmp, path)
