"""One small parser per section of a grid file; each checks its section and returns value objects.

Every mistake is a one-line ``GridError`` naming the key it sits under, the bad value and
what is allowed.
"""
from __future__ import annotations

import inspect
import itertools
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from solverbench.backbone import has_network, resolve_backbone
from solverbench.errors import GridError, grid_error
from solverbench.file_params import file_digests, resolve_paths
from solverbench.plan import make_plan
from solverbench.precision import Precision
from solverbench.grid.values import DTYPE_NAMES, SEPARATED, BackboneSpec, LauncherSettings, SequentialSamples, \
    SolverSpec
from solverbench.guidance import Guidance, sampler_conventions
from solverbench.reference import Tolerance
from solverbench.noise import LABEL_RULES
from solverbench.registry import BACKBONES, METRICS, SCHEDULES, SOLVERS, load_plugin_file
from solverbench.schedules import is_learned, learned_schedule
from solverbench.solver import IncompleteSolver, PrepareContext, Solver, SolverCheckError, check_implements_solve, \
    solver_label
from solverbench.timegrid import GRIDS, make_time_grid
from solverbench.metrics.shape import OPTION as SHAPE_OPTION, check_exceedance
from solverbench.metric_columns import SEPARABLE
from solverbench.uncertainty import OPTIONS as UNCERTAINTY_OPTIONS
from solverbench.uncertainty import check_resamples

SETTINGS_KEY = "solver_settings"


def as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def positive_ints(key: str, value: Any) -> tuple[int, ...]:
    values = as_list(value)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        grid_error(key, value, "allowed: a positive integer or a non-empty list of them")
    return tuple(values)


def named(key: str, entry: Any, keys: tuple[str, ...]) -> tuple[str, dict, dict]:
    """``(name, params, entry)`` of a list entry given as a name or as ``{name, params, ...}``."""
    if isinstance(entry, str):
        return entry, {}, {}
    if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
        grid_error(key, entry, "allowed: a name or a mapping with a 'name' key")
    if set(entry) - set(keys):
        grid_error(key, entry, "allowed keys: " + ", ".join(keys))
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        grid_error(f"{key}.params", params, "allowed: a mapping of parameter names to values")
    return entry["name"], params, entry


def name_of(raw: Mapping[str, Any], path: Optional[Path]) -> str:
    name = raw.get("name") or (path.stem if path is not None else "grid")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        grid_error("name", name, "allowed: letters, digits, '-' and '_'")
    return name


def plugins(raw: Mapping[str, Any], base: Path) -> None:
    """Load the grid's plugin files (read next to the grid file)."""
    for i, plugin in enumerate(as_list(raw.get("plugins", []))):
        plugin_path = Path(plugin) if Path(plugin).is_absolute() else base / plugin
        if not plugin_path.is_file():
            grid_error(f"plugins[{i}]", plugin, f"no such file ({plugin_path})")
        load_plugin_file(plugin_path)


def check_paths(key: str, base: Path, owner: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the paths among ``owner.path_params`` read next to the grid file; each must exist."""
    resolved = resolve_paths(base, owner, params)
    for name in getattr(owner, "path_params", ()):
        value = params.get(name)
        if isinstance(value, (str, Path)) and not Path(resolved[name]).expanduser().exists():
            grid_error(f"{key}.{name}", value, f"no such file or folder: {resolved[name]} (relative paths are read "
                                               "next to the grid file)")
    return resolved


def backbones(raw: Mapping[str, Any], base: Path) -> tuple[BackboneSpec, ...]:
    if not raw.get("backbones"):
        grid_error("backbones", raw.get("backbones"), "required: a non-empty list")
    specs = []
    for i, entry in enumerate(as_list(raw["backbones"])):
        key = f"backbones[{i}]"
        name, params, _ = named(key, entry, ("name", "params"))
        if name not in BACKBONES:
            grid_error(f"{key}.name", name, "known backbones: " + ", ".join(BACKBONES.names()))
        owner = BACKBONES.get(name)
        resolved = check_paths(f"{key}.params", base, owner, params)
        try:
            instance = resolve_backbone(name, **resolved)
        except (TypeError, ValueError) as err:
            grid_error(f"{key}.params", params, f"{name} refuses them: {err}")
        specs.append(BackboneSpec(name, params, instance, file_digests(base, owner, params)))
    return tuple(specs)


def build_solver(key: str, name: str, params: Mapping[str, Any]) -> Solver:
    cls = SOLVERS.get(name)
    try:
        check_implements_solve(cls)
    except IncompleteSolver as err:
        grid_error(key.rsplit(".", 1)[0] + ".name", name, str(err))
    try:
        return cls(**params)
    except TypeError as err:
        allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        grid_error(key, dict(params), f"{name} accepts the parameters: {', '.join(allowed) or 'none'} ({err})")
    except ValueError as err:
        grid_error(key, dict(params), f"{name} refuses them: {err}")


def written_label(solver: Solver, params: Mapping[str, Any]) -> str:
    """The solver's label with its file parameters as the grid wrote them (not resolved)."""
    shown = dict(solver.params())
    for name in solver.path_params:
        if name in shown and name in params:
            shown[name] = params[name]
    return solver_label(solver.registered_name, shown)


def solvers(raw: Mapping[str, Any], base: Path, budgets: tuple[int, ...], need_budgets: bool
            ) -> tuple[SolverSpec, ...]:
    """Every solver entry, list-valued parameters expanded to their product, each combination built once."""
    if not raw.get("solvers"):
        grid_error("solvers", raw.get("solvers"), "required: a non-empty list")
    specs = []
    for i, entry in enumerate(as_list(raw["solvers"])):
        key = f"solvers[{i}]"
        name, params, spec = named(key, entry, ("name", "params", "nfe", "schedule", "backbones"))
        only_on = None
        if "backbones" in spec:
            only_on = tuple(as_list(spec["backbones"]))
            if not only_on or not all(isinstance(b, str) for b in only_on):
                grid_error(f"{key}.backbones", spec["backbones"], "allowed: a backbone name or a list of them (the "
                                                                  "grid's backbones this solver runs on)")
        if name not in SOLVERS:
            grid_error(f"{key}.name", name, "known solvers: " + ", ".join(SOLVERS.names()))
        own = positive_ints(f"{key}.nfe", spec["nfe"]) if "nfe" in spec else None
        for combo in itertools.product(*(as_list(v) for v in params.values())):
            written = dict(zip(params, combo))
            resolved = check_paths(f"{key}.params", base, SOLVERS.get(name), written)
            solver = build_solver(f"{key}.params", name, resolved)
            if solver.adaptive:
                cell_budgets: tuple[Optional[int], ...] = (None,)
            elif need_budgets and not (own or budgets):
                grid_error("nfe", raw.get("nfe"), f"required for solver {name!r}: a list of NFE budgets")
            else:
                cell_budgets = own or budgets
                for nfe in cell_budgets:  # a budget the solver cannot spend is refused now, not per cell
                    try:
                        make_plan(solver, nfe=nfe)
                    except ValueError as err:
                        grid_error(f"{key}.nfe" if own else "nfe", nfe, str(err))
            own_schedules = (checked_schedules(f"{key}.schedule", spec["schedule"], solver, cell_budgets)
                             if "schedule" in spec else None)
            specs.append(SolverSpec(name, written, resolved, cell_budgets, solver, written_label(solver, written),
                                    file_digests(base, SOLVERS.get(name), written), own_schedules, only_on, i))
    return tuple(specs)


def solver_backbones(raw: Mapping[str, Any], backbone_specs: tuple[BackboneSpec, ...],
                     solver_specs: tuple[SolverSpec, ...]) -> None:
    """Refuse a solver entry's ``backbones:`` naming a backbone the grid does not have."""
    names = {b.name for b in backbone_specs}
    entries = as_list(raw["solvers"])
    for spec in solver_specs:
        unknown = sorted(set(spec.backbones or ()) - names)
        if unknown:
            i = next(i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("backbones") is not None
                     and set(unknown) <= set(as_list(e["backbones"])))
            grid_error(f"solvers[{i}].backbones", entries[i]["backbones"],
                       f"the grid's backbones are: {', '.join(sorted(names))}")


def schedules(raw: Mapping[str, Any], solver_specs: tuple[SolverSpec, ...] = ()) -> tuple[Any, ...]:
    """The grid's schedules (every solver without a ``schedule:`` of its own samples on each), checked
    against those solvers."""
    values = checked_schedules("schedule", raw.get("schedule", "uniform"))
    for spec in solver_specs:
        if spec.schedules is None:
            checked_schedules("schedule", values, spec.instance, spec.budgets)
    return values


def checked_schedules(key: str, value: Any, solver: Optional[Solver] = None,
                      budgets: tuple[Optional[int], ...] = ()) -> tuple[Any, ...]:
    """A schedule or list of them: closed-form ones by name or ``{name, ...params}``, learned ones
    (``solverbench.schedules``) with their settings checked, and checked against ``solver`` and the
    intervals its ``budgets`` make (a learned schedule may not be able to give as many)."""
    values = as_list(value)
    known = ", ".join(sorted(GRIDS)) + "; learned: " + ", ".join(SCHEDULES.names())
    for i, schedule in enumerate(values):
        where = f"{key}[{i}]"
        try:
            if is_learned(schedule):
                learner = learned_schedule(schedule)
                if solver is not None:
                    learner.check_solver(solver)
            else:
                make_time_grid(schedule, 2)
        except (TypeError, ValueError) as err:
            grid_error(where, schedule, f"known schedules: {known} ({err})")
        if solver is not None and is_learned(schedule):
            for nfe in (n for n in budgets if n is not None):
                try:
                    learner.check_intervals(make_plan(solver, nfe=nfe).intervals)
                except ValueError as err:
                    grid_error(where, schedule, f"{solver.label()} at NFE {nfe}: {err}")
    return tuple(values)


GUIDANCE_KEYS = {"scale": "a number >= 0, a list of them, or a mapping NFE -> scale (one scale per budget, e.g. "
                          "a paper's table; 'default' for adaptive solvers)",
                 "interval": "[t_lo, t_hi] or a list of such pairs",
                 "rule": "project (t_lo < t <= t_hi, any scale != 1) or repa (t_lo <= t <= t_hi, scale > 1)",
                 "decision": "evaluation (each evaluation's time) or step (once per step, from its start)",
                 "channels": "guide only the first k channels (SiT's forward_with_cfg: 3); absent: all",
                 "sampler": "sit or repa: the conventions of that code base's sampler, in one option"}


def guidances_by_nfe(raw: Mapping[str, Any], specs: tuple[BackboneSpec, ...], solvers: tuple[SolverSpec, ...]
                     ) -> tuple[tuple[Guidance, ...], Optional[dict[Any, tuple[Guidance, ...]]]]:
    """``(every guidance of the grid, None)``, or with ``scale`` a mapping NFE -> scale, ``(every guidance,
    {nfe: guidances of that budget})``; every budget of the grid's solvers must have its scale."""
    section = raw.get("guidance", {}) or {}
    scale = section.get("scale") if isinstance(section, dict) else None
    if not isinstance(scale, dict):
        return guidances(raw, specs), None
    by_nfe: dict[Any, tuple[Guidance, ...]] = {}
    for key, value in scale.items():
        if not (key == "default" or (isinstance(key, int) and not isinstance(key, bool) and key >= 1)):
            grid_error("guidance.scale", scale, "allowed as a mapping: NFE budgets (positive integers) or 'default' "
                                                "-> a scale each")
        by_nfe[key] = guidances({**raw, "guidance": {**section, "scale": value}}, specs)
    needed = {nfe for solver in solvers for nfe in solver.budgets}
    missing = sorted((n for n in needed if (n if n is not None else "default") not in by_nfe), key=str)
    if missing:
        grid_error("guidance.scale", scale, "a scale per NFE needs one for every budget of the grid's solvers; "
                                            f"missing: {', '.join('default (adaptive solvers)' if n is None else str(n) for n in missing)}")
    every = tuple(dict.fromkeys(g for group in by_nfe.values() for g in group))
    return every, by_nfe


def guidances(raw: Mapping[str, Any], specs: tuple[BackboneSpec, ...]) -> tuple[Guidance, ...]:
    """Every (scale, interval) combination, scales outer; each a checked ``Guidance`` with the
    section's conventions (solverbench.guidance)."""
    section = raw.get("guidance", {}) or {}
    if not isinstance(section, dict) or set(section) - set(GUIDANCE_KEYS):
        grid_error("guidance", section, "allowed: a mapping with the keys " + "; ".join(
            f"{k}: {v}" for k, v in GUIDANCE_KEYS.items()))
    written = {k: section[k] for k in ("sampler", "rule", "decision", "channels") if k in section}
    try:
        conventions = sampler_conventions(**written)
        Guidance(**conventions)
    except (TypeError, ValueError) as err:
        grid_error("guidance", written, str(err))
    scales = as_list(section.get("scale", 1.0))
    interval = section.get("interval", [0.0, 1.0])
    intervals = interval if interval and isinstance(interval[0], (list, tuple)) else [interval]
    out = []
    for scale in scales:
        for pair in intervals:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                grid_error("guidance.interval", pair, "allowed: [t_lo, t_hi] with 0 <= t_lo < t_hi <= 1, or a list "
                                                      "of such pairs")
            try:
                out.append(Guidance(scale, tuple(pair), **conventions))
            except TypeError:
                grid_error("guidance.scale", scale, "allowed: non-negative numbers")
            except ValueError as err:
                which = "scale" if "cfg_scale" in str(err) else "interval"
                grid_error(f"guidance.{which}", scale if which == "scale" else pair,
                           "allowed: non-negative numbers" if which == "scale"
                           else "allowed: [t_lo, t_hi] with 0 <= t_lo < t_hi <= 1, or a list of such pairs")
    for spec in specs if out else ():  # the conventions (channels among them) are those of every scale and interval
        try:
            out[0].check_fits(spec.instance.sample_shape)
        except ValueError as err:
            key = "channels" if "channels" in section else "sampler"  # given, or set by a sampler's conventions
            grid_error(f"guidance.{key}", section.get(key), f"backbone {spec.name!r}: {err}")
    if any(g.on for g in out):
        for spec in specs:
            if getattr(spec.instance, "null_label", None) is None:
                grid_error("guidance.scale", scales, f"backbone {spec.name!r} has no null label, so only scale 1 "
                                                     "is allowed")
    return tuple(out)


def seeds(raw: Mapping[str, Any]) -> tuple[int, ...]:
    values = as_list(raw.get("seeds", [0]))
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values):
        grid_error("seeds", raw.get("seeds"), "allowed: a list of non-negative integers")
    return tuple(values)


def labels(raw: Mapping[str, Any], specs: tuple[BackboneSpec, ...] = ()) -> str:
    """The label rule; one other than the default needs a class-conditional backbone in the grid."""
    rule = raw.get("labels", "uniform")
    if rule not in LABEL_RULES:
        grid_error("labels", rule, "allowed: " + "; ".join(f"{name} ({what})" for name, what in LABEL_RULES.items()))
    if rule != "uniform" and specs and all(getattr(s.instance, "num_classes", None) is None for s in specs):
        grid_error("labels", rule, f"the grid's backbones ({', '.join(s.name for s in specs)}) are unconditional "
                                   "(num_classes is None): their samples take no labels; leave labels out")
    return rule


def sample_counts(raw: Mapping[str, Any]) -> tuple[int, int]:
    """``(num_samples, batch_size)``; the batch size changes no sample (noise is drawn per index).  With sequential
    sample sizes (``num_samples: {start, max, until}``) ``num_samples`` is their ``max`` and the batch size (by
    default ``start``) must divide ``start``: each look then adds whole batches, the batches of a plain run."""
    written = raw.get("num_samples", 256)
    if isinstance(written, dict):
        start, most = sequential_sizes(written)
        batch_size = positive_ints("batch_size", raw.get("batch_size", start))
        if len(batch_size) > 1:
            grid_error("batch_size", raw.get("batch_size"), "allowed: a single positive integer")
        if start % batch_size[0]:
            grid_error("batch_size", batch_size[0], f"with sequential sample sizes it must divide num_samples.start "
                                                    f"({start}), so that each look adds whole batches (the samples of "
                                                    "a plain run of as many)")
        return most, batch_size[0]
    num_samples = positive_ints("num_samples", written)
    batch_size = positive_ints("batch_size", raw.get("batch_size", num_samples[0]))
    if len(num_samples) > 1 or len(batch_size) > 1:
        grid_error("num_samples", raw.get("num_samples"), "allowed: a single positive integer")
    return num_samples[0], batch_size[0]


SEQUENTIAL_KEYS = {"start": "the samples of the first look", "max": "the most samples a cell takes (the last look)",
                   "until": f"{SEPARATED} (stop a column once every solver but the best is shown worse than it)",
                   "on": "the metric columns that decide (default: every ranked one that keeps paired arrays)"}


def sequential_sizes(written: Mapping[str, Any]) -> tuple[int, int]:
    """``(start, max)`` of sequential sample sizes, every key of the mapping checked."""
    unknown = [key for key in written if key not in SEQUENTIAL_KEYS]
    if unknown:
        grid_error("num_samples", dict(written), "allowed: a positive integer, or sequential sample sizes with the "
                   "keys " + "; ".join(f"{key}: {what}" for key, what in SEQUENTIAL_KEYS.items())
                   + (" (the key True: YAML 1.1 reads an unquoted on as true; quote it, or read the file with "
                      "solverbench.grid.load_grid)" if any(key is True for key in unknown) else ""))
    for key in ("start", "max", "until"):
        if key not in written:
            grid_error("num_samples", dict(written), f"sequential sample sizes need {key}: {SEQUENTIAL_KEYS[key]}")
    for key in ("start", "max"):
        value = written[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            grid_error(f"num_samples.{key}", value, f"allowed: a positive integer ({SEQUENTIAL_KEYS[key]})")
    if written["max"] < written["start"]:
        grid_error("num_samples.max", written["max"], f"allowed: an integer >= start ({written['start']})")
    if written["until"] != SEPARATED:
        grid_error("num_samples.until", written["until"], f"allowed: {SEQUENTIAL_KEYS['until']}")
    return written["start"], written["max"]


def sequential_samples(raw: Mapping[str, Any], metric_names: tuple[str, ...]) -> Optional[SequentialSamples]:
    """The grid's sequential sample sizes (None for a plain integer), their deciding columns checked against the
    grid's metrics: each a ranked column that keeps paired arrays, of a metric the grid lists."""
    written = raw.get("num_samples")
    if not isinstance(written, dict):
        return None
    start, most = sequential_sizes(written)
    separable = [column for column in SEPARABLE if column in metric_names]
    if "on" not in written:
        if not separable:
            grid_error("num_samples", dict(written), "no metric of the grid can show one solver worse than another "
                       f"(a ranked one that keeps paired arrays: {', '.join(SEPARABLE)}); add one to metrics, or give "
                       "num_samples as an integer")
        return SequentialSamples(start, most, SEPARATED, tuple(separable))
    on = as_list(written["on"])
    if not on or not all(isinstance(column, str) for column in on):
        grid_error("num_samples.on", written["on"], "allowed: a metric column or a non-empty list of them")
    for i, column in enumerate(on):
        if column not in SEPARABLE:
            grid_error(f"num_samples.on[{i}]", column, "allowed: a ranked metric column that keeps paired arrays: "
                                                      + ", ".join(SEPARABLE))
        if column not in metric_names:
            grid_error(f"num_samples.on[{i}]", column, f"the grid's metrics ({', '.join(metric_names)}) do not "
                                                      f"produce it; add {column} to metrics")
        if on.index(column) != i:
            grid_error(f"num_samples.on[{i}]", column, "a column named twice; name it once")
    return SequentialSamples(start, most, SEPARATED, tuple(on), written_on=True)


def device(raw: Mapping[str, Any], here: bool = True) -> str:
    """The grid's device; with ``here`` it must be available on this machine (not so for a grid submitted to
    other machines)."""
    name = str(raw.get("device", "cpu"))
    try:
        torch.device(name)
    except RuntimeError:
        grid_error("device", name, "allowed: cpu, cuda, cuda:N, mps")
    if here and name.startswith("cuda") and not torch.cuda.is_available():
        grid_error("device", name, "CUDA is not available on this machine; allowed: cpu")
    return name


def dtype(raw: Mapping[str, Any]) -> str:
    name = raw.get("dtype", "float32")
    if name not in DTYPE_NAMES:
        grid_error("dtype", name, "allowed: " + ", ".join(DTYPE_NAMES))
    return name


def precision(raw: Mapping[str, Any], specs: tuple[BackboneSpec, ...] = ()) -> Precision:
    """The grid's ``dtype``, ``tf32`` and ``compile`` (solverbench.precision).  A reduced ``dtype`` (autocast of
    the networks) needs a network in every backbone: one without (``gmm``'s closed-form velocity) would give the
    float32 numbers under other cell ids."""
    for key in ("tf32", "compile"):
        if not isinstance(raw.get(key, False), bool):
            grid_error(key, raw[key], "allowed: true or false")
    chosen = Precision(dtype(raw), raw.get("tf32", False), raw.get("compile", False))
    if chosen.autocast is not None:
        for spec in specs:
            if not has_network(spec.instance):
                grid_error("dtype", chosen.dtype, f"backbone {spec.name!r} has no network to run in {chosen.dtype} (no "
                                                  "floating-point parameters, e.g. a closed-form velocity), so its "
                                                  "cells would give the float32 numbers; use float32 (or float64)")
    return chosen


def metrics(raw: Mapping[str, Any], specs: tuple[BackboneSpec, ...], guidance: tuple[Guidance, ...]
            ) -> tuple[str, ...]:
    """The grid's metrics; each must apply to at least one (backbone, guidance) of the grid."""
    names = tuple(as_list(raw.get("metrics", ["trajectory_error"])))
    for i, name in enumerate(names):
        if name not in METRICS:
            grid_error(f"metrics[{i}]", name, "known metrics: " + ", ".join(METRICS.names()))
        applies = getattr(METRICS.get(name), "applies", None)
        if applies is None:
            continue
        reasons = {f"{spec.name} at cfg {g.scale:g}": applies(spec.instance, g) for spec in specs for g in guidance}
        if all(reasons.values()):
            grid_error(f"metrics[{i}]", name, "no cell of this grid can compute it: " + "; ".join(
                f"{where}: {why}" for where, why in reasons.items()))
    return names


def metric_options(raw: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Options for the grid's metrics: each key read by one of them (a metric lists what it reads in
    ``fn.options`` and may check values with ``fn.check_options(options)``, raising ValueError), or by
    the harness for every metric (``bootstrap_resamples``, solverbench.uncertainty; ``exceedance``,
    solverbench.metrics.shape)."""
    options = raw.get("metric_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        grid_error("metric_options", options, "allowed: a mapping of option names to values")
    if "bootstrap_resamples" in options:
        try:
            check_resamples(options["bootstrap_resamples"])
        except ValueError as err:
            grid_error("metric_options.bootstrap_resamples", options["bootstrap_resamples"], str(err))
    readers = [METRICS.get(m) for m in names]
    if SHAPE_OPTION in options:
        per_sample = {m for m, fn in zip(names, readers) if getattr(fn, "per_sample", False)}
        try:
            check_exceedance(options[SHAPE_OPTION], per_sample)
        except ValueError as err:
            grid_error(f"metric_options.{SHAPE_OPTION}", options[SHAPE_OPTION], str(err))
    accepted = set(UNCERTAINTY_OPTIONS) | {SHAPE_OPTION} | {key for fn in readers for key in getattr(fn, "options", {})}
    for key, value in options.items():
        if key not in accepted:
            grid_error(f"metric_options.{key}", value, "options read by the grid's metrics: "
                       + (", ".join(sorted(accepted)) or "none"))
    for fn in readers:
        check = getattr(fn, "check_options", None)
        if check is not None:
            try:
                check(options)
            except ValueError as err:
                grid_error("metric_options", options, str(err))
    return dict(options)


def tolerance(raw: Mapping[str, Any]) -> Tolerance:
    section = {"rtol": 1e-9, "atol": 1e-9, **(raw.get("reference") or {})}
    if set(section) - {"rtol", "atol"}:
        grid_error("reference", raw.get("reference"), "allowed: {rtol: positive number, atol: positive number}")
    try:
        return Tolerance(**section)
    except ValueError:
        grid_error("reference", raw.get("reference"), "allowed: {rtol: positive number, atol: positive number}")


def save_samples(raw: Mapping[str, Any]) -> int:
    value = raw.get("save_samples", 64)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        grid_error("save_samples", value, "allowed: a non-negative integer")
    return value


def solvers_on_backbones(specs: tuple[BackboneSpec, ...], solver_specs: tuple[SolverSpec, ...],
                         settings: Mapping[str, Mapping[str, Any]], base: Path) -> None:
    """Each solver checked against every backbone the grid runs it on (``Solver.check_backbone``: e.g. a
    checkpoint of the solver's own made for another backbone), so that no cell fails on what the grid file says."""
    for solver in solver_specs:
        family = solver.instance.family
        context = PrepareContext(grid_dir=base, settings=settings.get(family, {}) if family else {})
        for backbone in specs:
            if not solver.runs_on(backbone):
                continue
            try:
                solver.instance.check_backbone(backbone.instance, context)
            except ValueError as err:
                fault = getattr(err, "key", None) if isinstance(err, SolverCheckError) else None
                where, value = f"solvers[{solver.entry}]", solver.params
                if fault and fault.startswith("params.") and fault[len("params."):] in solver.params:
                    where, value = f"{where}.{fault}", solver.params[fault[len("params."):]]
                elif fault and fault.startswith("settings.") and family:
                    name = fault[len("settings."):]
                    where, value = f"{SETTINGS_KEY}.{family}.{name}", settings.get(family, {}).get(name)
                grid_error(where, value, f"on backbone {backbone.name!r}: {err}")


def legacy_settings_keys() -> dict[str, str]:
    """Older top-level keys of solver families' settings -> the family (e.g. a family's own name)."""
    return {old: cls.family for name in SOLVERS.names() for cls in [SOLVERS.get(name)]
            for old in getattr(cls, "legacy_settings_keys", ()) if getattr(cls, "family", None)}


def solver_settings(raw: Mapping[str, Any], specs: tuple[SolverSpec, ...]) -> dict[str, dict[str, Any]]:
    """``solver_settings: {family: {...}}``, each family's checked by the solvers that read it.

    A family's older top-level key (``legacy_settings_keys``) is still read, with one line
    on stderr saying what to write instead."""
    section = raw.get(SETTINGS_KEY)
    section = {} if section is None else section
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        grid_error(SETTINGS_KEY, section, "allowed: a mapping of solver family -> mapping of its settings")
    settings = {family: dict(values) for family, values in section.items()}
    where = {family: f"{SETTINGS_KEY}.{family}" for family in settings}  # the key each family's settings came under
    for old, family in legacy_settings_keys().items():
        if old not in raw:
            continue
        if family in settings:
            grid_error(old, raw[old], f"the {family!r} settings are given twice: under {SETTINGS_KEY}.{family} and "
                                      f"under the older key {old!r}; keep {SETTINGS_KEY}.{family}")
        if not isinstance(raw[old], dict):
            grid_error(old, raw[old], "allowed: a mapping of settings")
        print(f"solverbench: grid key {old!r} is deprecated; write its settings as {SETTINGS_KEY}: "
              f"{{{family}: {{...}}}}", file=sys.stderr)
        settings[family], where[family] = dict(raw[old]), old
    families = {spec.instance.family for spec in specs if spec.instance.family}
    for family, values in settings.items():
        if family not in families:
            grid_error(where[family], values, f"no solver of this grid reads {family!r} settings"
                       + (f"; the families of its solvers: {', '.join(sorted(families))}" if families else ""))
        for spec in specs:
            if spec.instance.family == family:
                try:
                    spec.instance.check_settings(values)
                except (TypeError, ValueError) as err:
                    raise GridError(f"grid key {where[family]!r}: bad value {values!r}; {err}") from None
    return settings


LAUNCHER_KEYS = {
    "workers": "how many workers (a positive integer)",
    "gpus_per_worker": "GPUs of each worker (a non-negative integer; above 1, each cell runs under torchrun over them)",
    "partition": "the Slurm partition (a name)",
    "time_limit": "each worker's time limit in minutes (a positive integer)",
    "account": "the Slurm account (a name)",
    "slurm_params": "any other parameter of submitit's Slurm executor, {name: value} (e.g. {qos: high, mem: 64G})",
    "shared_results": "true: take the results folder as shared by the cluster's nodes, whatever its filesystem",
}


def launcher(raw: Mapping[str, Any]) -> LauncherSettings:
    """The ``launcher:`` section: how ``run --launcher`` submits the grid's workers."""
    section = raw.get("launcher")
    if section is None:
        return LauncherSettings()
    allowed = "allowed keys: " + "; ".join(f"{key}: {what}" for key, what in LAUNCHER_KEYS.items())
    if not isinstance(section, dict) or set(section) - set(LAUNCHER_KEYS):
        grid_error("launcher", section, allowed)

    def whole(key: str, least: int) -> Optional[int]:
        value = section.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            grid_error(f"launcher.{key}", value, f"allowed: {LAUNCHER_KEYS[key]}")
        return value

    def name(key: str) -> Optional[str]:
        value = section.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            grid_error(f"launcher.{key}", value, f"allowed: {LAUNCHER_KEYS[key]}")
        return value

    params = section.get("slurm_params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params) or \
            not all(isinstance(v, (str, int, float, bool)) for v in params.values()):
        grid_error("launcher.slurm_params", params, f"allowed: {LAUNCHER_KEYS['slurm_params']}, each value a "
                                                    "string, number or boolean")
    shared = section.get("shared_results")
    if shared is not None and not isinstance(shared, bool):
        grid_error("launcher.shared_results", shared, "allowed: true or false")
    return LauncherSettings(workers=whole("workers", 1), gpus_per_worker=whole("gpus_per_worker", 0),
                            partition=name("partition"), time_limit=whole("time_limit", 1), account=name("account"),
                            slurm_params=dict(params), shared_results=shared)
