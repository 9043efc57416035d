"""What a grid file says, once it has been read and checked: frozen value objects.

Every backbone and solver is built once here (paths read next to the grid file), and the
run uses those instances.  Parameters are kept as written too: rows, labels and cell ids
use them, so a grid moved with its files keeps its cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Optional

from solverbench.precision import DTYPES, Precision
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json, spec_hash
from solverbench.reference import Tolerance
from solverbench.registry import SOLVERS
from solverbench.solver import Solver

DTYPE_NAMES = DTYPES


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    params: Mapping[str, Any]  # as written
    instance: Any = field(compare=False, repr=False)  # built once, paths resolved
    files: Mapping[str, str] = field(default_factory=dict)  # SHA-256 of the files its path parameters name

    @property
    def key(self) -> str:
        return canonical_json([self.name, self.params])


@dataclass(frozen=True)
class SolverSpec:
    name: str
    params: Mapping[str, Any]  # one combination, as written
    resolved: Mapping[str, Any]  # the same with file paths read next to the grid file
    budgets: tuple[Optional[int], ...]  # the NFE budgets of its cells; (None,) for an adaptive solver
    instance: Solver = field(compare=False, repr=False)  # built once from ``resolved``
    label: str = ""  # as the tables name it (file paths as written)
    files: Mapping[str, str] = field(default_factory=dict)
    schedules: Optional[tuple[Any, ...]] = None  # its own schedule list (the entry's schedule:); None: the grid's
    backbones: Optional[tuple[str, ...]] = None  # the backbone names it runs on (the entry's backbones:); None: all
    entry: int = field(default=0, compare=False)  # its entry's index in the grid's solvers: list (for messages)

    def runs_on(self, backbone: "BackboneSpec") -> bool:
        return self.backbones is None or backbone.name in self.backbones

    @property
    def key(self) -> str:
        return canonical_json([self.name, self.params])

    def build(self) -> Solver:
        """Another instance, for another backbone (an instance is prepared for one backbone)."""
        return SOLVERS.get(self.name)(**self.resolved)


SEPARATED = "separated"  # the one stopping rule of sequential sample sizes


@dataclass(frozen=True)
class SequentialSamples:
    """``num_samples: {start, max, until: separated, on}``: a sweep samples each column of cells (the solvers that
    share backbone, NFE, schedule, guidance and seed) look by look, ``start`` samples, then twice as many, ... up to
    ``max``, until every solver but the best is separated from it in every deciding column
    (``solverbench.studies.sequential``)."""

    start: int
    max: int
    until: str  # "separated"
    on: tuple[str, ...]  # the deciding metric columns (ranked, keeping paired arrays)
    written_on: bool = False  # whether the grid named them (else: every such column of the grid's metrics)

    def looks(self) -> tuple[int, ...]:
        """The sample sizes of the looks: ``start * 2^k`` while below ``max``, then ``max`` (256, 512, 1000)."""
        sizes = []
        n = self.start
        while n < self.max:
            sizes.append(n)
            n *= 2
        return (*sizes, self.max)

    def identity(self) -> dict[str, Any]:
        """What a cell id holds in ``num_samples``'s place: the key as written."""
        return {"start": self.start, "max": self.max, "until": self.until,
                **({"on": list(self.on)} if self.written_on else {})}


@dataclass(frozen=True)
class LauncherSettings:
    """The grid's ``launcher:`` section: how ``run --launcher`` submits the grid's workers, each field None where the
    section leaves it to the command line or to Slurm (the command line wins).  Not part of what the grid
    computes: the grid's hash and its cell ids leave it out."""

    workers: Optional[int] = None
    gpus_per_worker: Optional[int] = None
    partition: Optional[str] = None
    time_limit: Optional[int] = None  # minutes
    account: Optional[str] = None
    slurm_params: Mapping[str, Any] = field(default_factory=dict)  # any other submitit Slurm parameter
    shared_results: Optional[bool] = None  # the results folder is shared by the nodes whatever its filesystem


@dataclass(frozen=True)
class Grid:
    name: str
    path: Optional[Path]  # the grid file; None for a grid given in Python
    kind: str  # the study kind that runs it (sweep, lte, ...)
    backbones: tuple[BackboneSpec, ...]
    solvers: tuple[SolverSpec, ...]
    schedules: tuple[Any, ...]
    guidances: tuple[Guidance, ...]
    seeds: tuple[int, ...]
    num_samples: int  # samples per cell; with sequential sample sizes the most a cell may take (their max)
    batch_size: int
    device: str
    dtype: str
    metrics: tuple[str, ...]
    metric_options: Mapping[str, Any]
    tolerance: Tolerance  # of the reference solve
    save_samples: int
    solver_settings: Mapping[str, Mapping[str, Any]]  # family -> its settings
    study: Any = None  # the settings of the study kind (e.g. the LTE study's step sizes), parsed by it
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    guidance_by_nfe: Optional[Mapping[Any, tuple[Guidance, ...]]] = None  # a scale per NFE budget (paper tables)
    labels: str = "uniform"  # how sample indices get class labels (solverbench.noise.LABEL_RULES)
    precision: Precision = Precision()  # dtype (again), tf32, compile: how the networks compute
    sequential: Optional[SequentialSamples] = None  # num_samples: {start, max, until}; None for a plain integer
    launcher: LauncherSettings = LauncherSettings()  # the launcher: section (not in ``raw``, nor in the hash)

    @cached_property
    def hash(self) -> str:
        """``spec_hash(raw)``, every row's ``grid_hash``: computed once (a grid that lists many cells is long)."""
        return spec_hash(self.raw)

    @property
    def base(self) -> Path:
        """Where the grid's relative file paths are read from: the grid file's folder."""
        return self.path.parent if self.path is not None else Path.cwd()

    def schedules_for(self, solver: SolverSpec) -> tuple[Any, ...]:
        """The schedules ``solver`` samples on: its own (its entry's ``schedule:``) or the grid's."""
        return solver.schedules if solver.schedules is not None else self.schedules

    def guidances_for(self, nfe: Optional[int]) -> tuple[Guidance, ...]:
        """The guidance settings of cells at budget ``nfe`` (every one of the grid unless scales are per NFE;
        an adaptive solver, NFE None, takes the ``default`` entry)."""
        if self.guidance_by_nfe is None:
            return self.guidances
        return self.guidance_by_nfe[nfe if nfe is not None else "default"]

    def settings_for(self, solver: SolverSpec) -> Mapping[str, Any]:
        """The grid-level settings of the solver's family ({} where it has none)."""
        return self.solver_settings.get(solver.instance.family, {}) if solver.instance.family else {}
