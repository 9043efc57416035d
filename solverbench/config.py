"""Grid files: parse, validate before any work, and expand into cells.

A grid names backbones, solvers (list-valued solver parameters expand to their product),
NFE budgets, schedules, guidance, seeds, sample counts and metrics.  Every mistake is
reported with the key it sits under, the bad value and what is allowed.
"""
from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from solverbench.backbone import resolve_backbone
from solverbench.file_params import file_digests, resolve_paths
from solverbench.hashing import canonical_json
from solverbench.registry import BACKBONES, METRICS, SOLVERS, UnknownNameError, load_plugin_file
from solverbench.solver import Solver
from solverbench.timegrid import GRIDS, make_time_grid
from solverbench.uncertainty import OPTIONS as UNCERTAINTY_OPTIONS
from solverbench.uncertainty import check_resamples

TOP_LEVEL_KEYS = {
    "name": "the grid's name (default: the file name)",
    "description": "free text",
    "backbones": "list of backbone names or {name, params}",
    "solvers": "list of solver names or {name, params, nfe}",
    "nfe": "list of NFE budgets",
    "schedule": "a schedule name, {name, ...params}, or a list of them",
    "guidance": "{scale: number or list, interval: [t_lo, t_hi] or list of them}",
    "seeds": "list of integer seeds",
    "num_samples": "samples per cell",
    "batch_size": "samples per batch",
    "device": "cpu, cuda, cuda:N",
    "dtype": "float32 or float64",
    "metrics": "list of metric names",
    "metric_options": "mapping of options the grid's metrics read (image metrics: feature_extractor, backend, ...)",
    "reference": "{rtol, atol}: tolerances of the reference solve",
    "plugins": "list of Python files (relative to the grid file) that register solvers/backbones/metrics",
    "save_samples": "how many samples per cell to keep for the report's sample grids",
    "sidenet": "SideNet training settings for ba* solvers",
    "kind": "sweep (the default: sample at NFE budgets) or lte (the local-truncation-error study)",
    "lte": "settings of a grid of kind lte: {step_sizes, start_times} (see solverbench/lte/settings.py)",
}
KINDS = ("sweep", "lte")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class GridError(ValueError):
    """A grid file that cannot run; the message names the key, the value and what is allowed."""


def _fail(key: str, value: Any, allowed: str) -> None:
    raise GridError(f"grid key {key!r}: bad value {value!r}; {allowed}")


@dataclass(frozen=True)
class SolverSpec:
    name: str
    params: dict[str, Any]
    nfe: Optional[tuple[int, ...]]  # overrides the grid's NFE list


@dataclass
class Grid:
    name: str
    path: Optional[Path]
    backbones: list[tuple[str, dict[str, Any]]]
    solvers: list[SolverSpec]
    nfe: tuple[int, ...]
    schedules: list[Any]
    cfg_scales: tuple[float, ...]
    cfg_intervals: tuple[tuple[float, float], ...]
    seeds: tuple[int, ...]
    num_samples: int
    batch_size: int
    device: str
    dtype: str
    metrics: tuple[str, ...]
    reference: dict[str, float]
    save_samples: int
    sidenet: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    metric_options: dict[str, Any] = field(default_factory=dict)
    kind: str = "sweep"
    lte: Optional[Any] = None  # LTESettings of a grid of kind lte
    built: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # see backbone()

    def backbone(self, name: str, params: dict[str, Any]) -> Any:
        """The backbone of one ``backbones`` entry, built once: parsing builds it to check its
        parameters, and the run uses that instance (a SiT checkpoint is read one time).
        Relative file paths in ``params`` are read next to the grid file."""
        key = canonical_json([name, params])
        if key not in self.built:
            self.built[key] = build_backbone(self.path, name, params)
        return self.built[key]

    @property
    def base(self) -> Path:
        """Where the grid's relative file paths are read from: the grid file's folder."""
        return grid_base(self.path)

    def file_digests(self, backbone: str, backbone_params: dict, solver: str, solver_params: dict) -> dict:
        """SHA-256 of the files a backbone and solver entry name (checkpoints), by parameter."""
        digests = {f"backbone.{k}": v for k, v in file_digests(self.base, BACKBONES.get(backbone),
                                                                 backbone_params).items()}
        digests.update({f"solver.{k}": v for k, v in file_digests(self.base, SOLVERS.get(solver),
                                                                  solver_params).items()})
        return digests


def grid_base(grid_path: Optional[Path]) -> Path:
    return grid_path.parent if grid_path is not None else Path.cwd()


def build_backbone(grid_path: Optional[Path], name: str, params: dict[str, Any]) -> Any:
    return resolve_backbone(name, **resolve_paths(grid_base(grid_path), BACKBONES.get(name), params))


@dataclass(frozen=True)
class Cell:
    """One (backbone, solver, NFE, schedule, guidance, seed) combination of a grid."""

    backbone: str
    backbone_params: dict
    solver: str
    solver_params: dict
    nfe: Optional[int]
    schedule: Any
    cfg_scale: float
    cfg_interval: tuple[float, float]
    seed: int

    def key(self, grid: Grid) -> dict[str, Any]:
        """Everything that defines this cell's numbers (not batch size or device)."""
        return {
            "backbone": self.backbone, "backbone_params": self.backbone_params,
            "solver": self.solver, "solver_params": self.solver_params, "nfe": self.nfe,
            "schedule": self.schedule, "cfg_scale": self.cfg_scale, "cfg_interval": list(self.cfg_interval),
            "seed": self.seed, "num_samples": grid.num_samples, "dtype": grid.dtype,
            "metrics": sorted(grid.metrics), "reference": grid.reference, "sidenet": grid.sidenet,
            # only when set, so that the ids of cells without options or files stay as they were
            **({"metric_options": grid.metric_options} if grid.metric_options else {}),
            **({"file_sha256": files} if (files := grid.file_digests(self.backbone, self.backbone_params,
                                                                     self.solver, self.solver_params)) else {}),
        }


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.yaml"))
        raise GridError(f"grid file {str(path)!r} is a folder; give a grid file (YAML)"
                        + (f", e.g. {str(path / inside[0])!r}" if inside else ""))
    if not path.is_file():
        raise GridError(f"grid file {str(path)!r} does not exist")
    with open(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise GridError(f"grid file {str(path)!r} is not valid YAML: {err}") from None
    return parse_grid(raw, path=path)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _positive_ints(key: str, value: Any) -> tuple[int, ...]:
    values = _as_list(value)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        _fail(key, value, "allowed: a positive integer or a non-empty list of them")
    return tuple(values)


def _named(key: str, entry: Any) -> tuple[str, dict]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        return entry["name"], entry
    _fail(key, entry, "allowed: a name or a mapping with a 'name' key")


def parse_grid(raw: Any, path: Optional[Path] = None) -> Grid:
    if not isinstance(raw, dict):
        raise GridError(f"a grid must be a mapping of keys ({', '.join(TOP_LEVEL_KEYS)}), got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            _fail(key, raw[key], "unknown key; allowed keys: " + ", ".join(TOP_LEVEL_KEYS))

    kind, lte = _kind(raw)
    base = path.parent if path is not None else Path.cwd()
    for i, plugin in enumerate(_as_list(raw.get("plugins", []))):
        plugin_path = Path(plugin) if Path(plugin).is_absolute() else base / plugin
        if not plugin_path.is_file():
            _fail(f"plugins[{i}]", plugin, f"no such file ({plugin_path})")
        load_plugin_file(plugin_path)

    for key in ("backbones", "solvers"):
        if not raw.get(key):
            _fail(key, raw.get(key), "required: a non-empty list")

    backbones, built = [], {}
    for i, entry in enumerate(_as_list(raw["backbones"])):
        name, spec = _named(f"backbones[{i}]", entry)
        extra = set(spec) - {"name", "params"}
        if extra:
            _fail(f"backbones[{i}]", entry, "allowed keys: name, params")
        params = spec.get("params") or {}
        if name not in BACKBONES:
            _fail(f"backbones[{i}].name", name, "known backbones: " + ", ".join(BACKBONES.names()))
        if not isinstance(params, dict):
            _fail(f"backbones[{i}].params", params, "allowed: a mapping of parameter names to values")
        _check_paths(f"backbones[{i}].params", base, BACKBONES.get(name), params)
        try:
            built[canonical_json([name, params])] = build_backbone(path, name, params)
        except (TypeError, ValueError) as err:
            _fail(f"backbones[{i}].params", params, f"{name} refuses them: {err}")
        backbones.append((name, params))

    nfe = _positive_ints("nfe", raw["nfe"]) if "nfe" in raw else ()
    solvers, built_solvers = [], []
    for i, entry in enumerate(_as_list(raw["solvers"])):
        name, spec = _named(f"solvers[{i}]", entry)
        extra = set(spec) - {"name", "params", "nfe"}
        if extra:
            _fail(f"solvers[{i}]", entry, "allowed keys: name, params, nfe")
        if name not in SOLVERS:
            _fail(f"solvers[{i}].name", name, "known solvers: " + ", ".join(SOLVERS.names()))
        own_nfe = _positive_ints(f"solvers[{i}].nfe", spec["nfe"]) if "nfe" in spec else None
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            _fail(f"solvers[{i}].params", params, "allowed: a mapping of parameter names to values or lists")
        keys = list(params)
        for combo in itertools.product(*(_as_list(params[k]) for k in keys)):
            solver_params = dict(zip(keys, combo))
            _check_paths(f"solvers[{i}].params", base, SOLVERS.get(name), solver_params)
            solver = _build_solver(f"solvers[{i}].params", name, solver_params)
            built_solvers.append(solver)
            if kind == "sweep" and not solver.adaptive and not (own_nfe or nfe):
                _fail("nfe", raw.get("nfe"), f"required for solver {name!r}: a list of NFE budgets")
            solvers.append(SolverSpec(name, solver_params, own_nfe))

    schedules = _as_list(raw.get("schedule", "uniform"))
    for i, schedule in enumerate(schedules):
        try:
            make_time_grid(schedule, 2)
        except (TypeError, ValueError) as err:
            _fail(f"schedule[{i}]", schedule, f"known schedules: {', '.join(sorted(GRIDS))} ({err})")

    guidance = raw.get("guidance", {}) or {}
    if not isinstance(guidance, dict) or set(guidance) - {"scale", "interval"}:
        _fail("guidance", guidance, "allowed: a mapping with keys scale and interval")
    scales = _as_list(guidance.get("scale", 1.0))
    for s in scales:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or s < 0:
            _fail("guidance.scale", s, "allowed: non-negative numbers")
    intervals_raw = guidance.get("interval", [0.0, 1.0])
    intervals_list = intervals_raw if intervals_raw and isinstance(intervals_raw[0], (list, tuple)) else [intervals_raw]
    intervals = []
    for iv in intervals_list:
        if not (isinstance(iv, (list, tuple)) and len(iv) == 2 and all(isinstance(v, (int, float)) for v in iv)
                and 0 <= iv[0] < iv[1] <= 1):
            _fail("guidance.interval", iv, "allowed: [t_lo, t_hi] with 0 <= t_lo < t_hi <= 1, or a list of such pairs")
        intervals.append((float(iv[0]), float(iv[1])))
    if any(s != 1.0 for s in scales):
        for name, params in backbones:
            if getattr(built[canonical_json([name, params])], "null_label", None) is None:
                _fail("guidance.scale", scales, f"backbone {name!r} has no null label, so only scale 1 is allowed")

    seeds = _as_list(raw.get("seeds", [0]))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        _fail("seeds", raw.get("seeds"), "allowed: a list of non-negative integers")
    num_samples = _positive_ints("num_samples", raw.get("num_samples", 256))
    batch_size = _positive_ints("batch_size", raw.get("batch_size", num_samples[0]))
    if len(num_samples) > 1 or len(batch_size) > 1:
        _fail("num_samples", raw.get("num_samples"), "allowed: a single positive integer")

    device = str(raw.get("device", "cpu"))
    try:
        torch.device(device)
    except RuntimeError:
        _fail("device", device, "allowed: cpu, cuda, cuda:N, mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        _fail("device", device, "CUDA is not available on this machine; allowed: cpu")
    dtype = raw.get("dtype", "float32")
    if dtype not in DTYPES:
        _fail("dtype", dtype, "allowed: " + ", ".join(DTYPES))

    metrics = tuple(_as_list(raw.get("metrics", ["trajectory_error"])))
    for i, m in enumerate(metrics):
        if m not in METRICS:
            _fail(f"metrics[{i}]", m, "known metrics: " + ", ".join(METRICS.names()))
        _check_metric_applies(f"metrics[{i}]", m, [(n, built[canonical_json([n, p])]) for n, p in backbones], scales)
    metric_options = _metric_options(raw.get("metric_options"), metrics)

    reference = {"rtol": 1e-9, "atol": 1e-9, **(raw.get("reference") or {})}
    if set(reference) - {"rtol", "atol"} or not all(isinstance(v, (int, float)) and v > 0 for v in reference.values()):
        _fail("reference", raw.get("reference"), "allowed: {rtol: positive number, atol: positive number}")
    save_samples = raw.get("save_samples", 64)
    if not isinstance(save_samples, int) or save_samples < 0:
        _fail("save_samples", save_samples, "allowed: a non-negative integer")
    sidenet = _solver_settings(raw, "sidenet", built_solvers)

    name = raw.get("name") or (path.stem if path is not None else "grid")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        _fail("name", name, "allowed: letters, digits, '-' and '_'")
    return Grid(
        name=name, path=path, backbones=backbones, solvers=solvers, nfe=nfe, schedules=schedules,
        cfg_scales=tuple(float(s) for s in scales), cfg_intervals=tuple(intervals), seeds=tuple(seeds),
        num_samples=num_samples[0], batch_size=batch_size[0], device=device, dtype=dtype, metrics=metrics,
        reference={k: float(v) for k, v in reference.items()}, save_samples=save_samples, sidenet=sidenet, raw=raw,
        kind=kind, lte=lte, metric_options=metric_options, built=built,
    )


def _check_paths(key: str, base: Path, owner: type, params: dict[str, Any]) -> None:
    """Every file or folder a backbone's or solver's path parameters name exists (read next to the grid file)."""
    for name, value in params.items():
        if name in getattr(owner, "path_params", ()) and isinstance(value, (str, Path)):
            resolved = Path(resolve_paths(base, owner, {name: value})[name]).expanduser()
            if not resolved.exists():
                _fail(f"{key}.{name}", value, f"no such file or folder: {resolved} (relative paths are read next to "
                                              "the grid file)")


def _check_metric_applies(key: str, metric: str, backbones: list[tuple[str, Any]], scales: list) -> None:
    """Refuse a metric that has no meaning for any (backbone, guidance scale) of the grid."""
    applies = getattr(METRICS.get(metric), "applies", None)
    if applies is None:
        return
    reasons = {f"{name} at cfg {float(scale):g}": applies(backbone, float(scale))
               for name, backbone in backbones for scale in scales}
    if all(reasons.values()):
        _fail(key, metric, "no cell of this grid can compute it: " + "; ".join(
            f"{where}: {why}" for where, why in reasons.items()))


def _solver_settings(raw: dict, key: str, solvers: list[Solver]) -> dict[str, Any]:
    """A grid-level settings mapping (``sidenet:``), checked by every solver that reads it
    (``settings_key`` names the mapping; ``check_settings(settings)`` raises ValueError)."""
    settings = raw.get(key)
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        _fail(key, settings, "allowed: a mapping of settings")
    readers = [s for s in solvers if getattr(s, "settings_key", None) == key]
    if not readers:
        _fail(key, settings, f"no solver of this grid reads {key} settings")
    for solver in readers:
        try:
            solver.check_settings(settings)
        except (TypeError, ValueError) as err:
            _fail(key, settings, str(err))
    return settings


def _metric_options(options: Any, metrics: tuple[str, ...]) -> dict[str, Any]:
    """Options for the grid's metrics: each key read by one of them (a metric lists what it reads in
    ``fn.options`` and may check values with ``fn.check_options(options)``, raising ValueError), or by
    the harness for every metric (``bootstrap_resamples``, solverbench.uncertainty)."""
    options = {} if options is None else options
    if not isinstance(options, dict):
        _fail("metric_options", options, "allowed: a mapping of option names to values")
    if "bootstrap_resamples" in options:
        try:
            check_resamples(options["bootstrap_resamples"])
        except ValueError as err:
            _fail("metric_options.bootstrap_resamples", options["bootstrap_resamples"], str(err))
    readers = [METRICS.get(m) for m in metrics]
    accepted = set(UNCERTAINTY_OPTIONS) | {key for fn in readers for key in getattr(fn, "options", {})}
    for key, value in options.items():
        if key not in accepted:
            _fail(f"metric_options.{key}", value, "options read by the grid's metrics: "
                  + (", ".join(sorted(accepted)) or "none"))
    for fn in readers:
        check = getattr(fn, "check_options", None)
        if check is not None:
            try:
                check(options)
            except ValueError as err:
                _fail("metric_options", options, str(err))
    return dict(options)


def _kind(raw: dict) -> tuple[str, Any]:
    """The grid's kind and, for kind lte, its validated study settings."""
    kind = raw.get("kind", "sweep")
    if kind not in KINDS:
        _fail("kind", kind, "allowed: " + ", ".join(KINDS))
    if kind == "lte":
        from solverbench.lte.settings import parse_lte_settings  # imports this module: import it late

        return kind, parse_lte_settings(raw)
    if "lte" in raw:
        _fail("lte", raw["lte"], "only a grid of kind lte takes lte settings")
    return kind, None


def _build_solver(key: str, name: str, params: dict) -> Solver:
    cls = SOLVERS.get(name)
    try:
        return cls(**params)
    except TypeError as err:
        allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        _fail(key, params, f"{name} accepts the parameters: {', '.join(allowed) or 'none'} ({err})")
    except ValueError as err:
        _fail(key, params, f"{name} refuses them: {err}")


def expand_cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid, in a stable order (adaptive solvers get one cell, NFE None)."""
    cells = []
    for backbone, backbone_params in grid.backbones:
        for spec in grid.solvers:
            solver = SOLVERS.get(spec.name)(**spec.params)
            budgets = (None,) if solver.adaptive else (spec.nfe or grid.nfe)
            for nfe, schedule, scale, interval, seed in itertools.product(
                budgets, grid.schedules, grid.cfg_scales, grid.cfg_intervals, grid.seeds
            ):
                cells.append(Cell(backbone, backbone_params, spec.name, spec.params, nfe, schedule,
                                  scale, interval, seed))
    return cells
