"""Read a grid file: its kind first (the study that runs it reads its own section), then every
section through its parser (``solverbench.grid.sections``), into one frozen ``Grid``.  A key given
twice in one mapping is refused (YAML would keep the last silently)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from solverbench.errors import GridError, grid_error
from solverbench.grid import sections
from solverbench.grid.values import Grid
from solverbench.registry import STUDIES

KEYS = {
    "name": "the grid's name (default: the file name)",
    "description": "free text",
    "kind": "the study that runs the grid: sweep (the default), lte, or a plugin's",
    "backbones": "list of backbone names or {name, params}",
    "solvers": "list of solver names or {name, params, nfe}",
    "nfe": "list of NFE budgets",
    "schedule": "a schedule name, {name, ...params}, or a list of them",
    "guidance": "{scale: number, list or NFE -> scale mapping, interval: [t_lo, t_hi] or list of them, rule, "
                "decision, channels} (solverbench.guidance)",
    "seeds": "list of integer seeds",
    "labels": "how samples get class labels: uniform (the default: drawn per sample) or balanced (sample i gets "
              "class i mod num_classes)",
    "num_samples": "samples per cell, or sequential sample sizes {start, max, until: separated, on} (kind: sweep)",
    "batch_size": "samples per batch",
    "device": "cpu, cuda, cuda:N",
    "dtype": "float32 or float64; bfloat16 or float16: the networks under autocast, the ODE state in float32 "
             "(solverbench.precision)",
    "tf32": "true: CUDA float32 matmuls and convolutions in TF32 while cells sample",
    "compile": "true: torch.compile the backbone and the solver's networks (once per input shape)",
    "metrics": "list of metric names",
    "metric_options": "mapping of options the grid's metrics read (image metrics: feature_extractor, backend, ...)",
    "reference": "{rtol, atol}: tolerances of the reference solve",
    "plugins": "list of Python files (relative to the grid file) that register solvers/backbones/metrics/...",
    "save_samples": "how many samples per cell to keep for the report's sample grids",
    "launcher": "{workers, gpus_per_worker, partition, time_limit, account, slurm_params, shared_results}: how run "
                "--launcher submits the grid's workers (not part of the grid's identity: its hash leaves it out)",
    sections.SETTINGS_KEY: "{family: {...}}: grid-level settings of a solver family (e.g. ba: how it trains its network)",
}
DEFAULT_KIND = "sweep"


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping of a YAML file."""


BOOL_TAG, STR_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str"


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (merge keys ``<<`` aside), and reading a key
    written as a plain word as that word: YAML 1.1 would read ``on`` (sequential sample sizes' ``on:``), ``off``,
    ``yes`` and ``no`` as booleans (their values are still read as booleans)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == BOOL_TAG and key_node.style is None and key_node.value.lower() not in ("true", "false"):
                key_node.tag = STR_TAG
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise DuplicateKey(f"key {key!r} is given twice in one mapping (lines {lines[key]} and {line}); "
                                       "keep one")
                lines[key] = line
            except TypeError:  # an unhashable key: the loader refuses it itself
                continue
        return super().construct_mapping(node, deep=deep)


def load_grid(path: str | Path, *, here: bool = True) -> Grid:
    """The grid file at ``path``, read and checked; ``here=False`` for a grid submitted to other machines (its
    device need not be available on this one)."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.yaml"))
        raise GridError(f"grid file {str(path)!r} is a folder; give a grid file (YAML)"
                        + (f", e.g. {str(path / inside[0])!r}" if inside else ""))
    if not path.is_file():
        raise GridError(f"grid file {str(path)!r} does not exist")
    with open(path) as f:
        try:
            raw = yaml.load(f, Loader=UniqueKeyLoader)
        except DuplicateKey as err:
            raise GridError(f"grid file {str(path)!r}: {err}") from None
        except yaml.YAMLError as err:
            raise GridError(f"grid file {str(path)!r} is not valid YAML: {' '.join(str(err).split())}") from None
    return parse_grid(raw, path=path, here=here)


def known_keys() -> dict[str, str]:
    """Every top-level key a grid may hold: the common ones, each study kind's own and each
    solver family's older settings key."""
    keys = dict(KEYS)
    for kind in STUDIES.names():
        study = STUDIES.get(kind)
        if study.settings_key:
            keys[study.settings_key] = f"settings of a grid of kind {kind}"
    for old, family in sections.legacy_settings_keys().items():
        keys.setdefault(old, f"the {family} family's settings (deprecated: write {sections.SETTINGS_KEY}: "
                             f"{{{family}: ...}})")
    return keys


def parse_grid(raw: Any, path: Optional[Path] = None, *, here: bool = True) -> Grid:
    """A grid from its raw mapping (its files read next to ``path``); ``here=False``: its device need not be
    available on this machine.  The ``launcher:`` section is kept apart from ``raw``: the grid's hash leaves it out."""
    base = path.parent if path is not None else Path.cwd()
    if isinstance(raw, dict):
        sections.plugins(raw, base)  # first: a plugin may add a study kind, a solver family, ...
    keys = known_keys()
    if not isinstance(raw, dict):
        raise GridError(f"a grid must be a mapping of keys ({', '.join(keys)}), got {type(raw).__name__}")
    for key in raw:
        if key not in keys:
            grid_error(key, raw[key], "unknown key; allowed keys: " + ", ".join(keys))

    kind = raw.get("kind", DEFAULT_KIND)
    if kind not in STUDIES:
        grid_error("kind", kind, "allowed: " + ", ".join(STUDIES.names()))
    study = STUDIES.get(kind)
    for key in study.unused_keys:
        if key in raw:
            grid_error(key, raw[key], f"not used by a grid of kind {kind}")
    for other in STUDIES.names():
        other_key = STUDIES.get(other).settings_key
        if other != kind and other_key and other_key != study.settings_key and other_key in raw:
            grid_error(other_key, raw[other_key], f"only a grid of kind {other} takes {other_key} settings")
    study_settings = study.parse_settings(raw)

    specs = sections.backbones(raw, base)
    budgets = sections.positive_ints("nfe", raw["nfe"]) if "nfe" in raw else ()
    solvers = sections.solvers(raw, base, budgets, need_budgets=study.needs_budgets)
    sections.solver_backbones(raw, specs, solvers)
    guidance, guidance_by_nfe = sections.guidances_by_nfe(raw, specs, solvers)
    num_samples, batch_size = sections.sample_counts(raw)
    metrics = sections.metrics(raw, specs, guidance)
    if isinstance(raw.get("num_samples"), dict) and not getattr(study, "sequential_samples", False):
        grid_error("num_samples", raw["num_samples"], f"sequential sample sizes are for kind: sweep; a grid of kind "
                                                      f"{kind} takes a positive integer")
    sequential = sections.sequential_samples(raw, metrics)
    settings = sections.solver_settings(raw, solvers)
    launcher = sections.launcher(raw)
    grid = Grid(
        name=sections.name_of(raw, path), path=path, kind=kind, backbones=specs, solvers=solvers,
        schedules=sections.schedules(raw, solvers), guidances=guidance, seeds=sections.seeds(raw), num_samples=num_samples,
        batch_size=batch_size, device=sections.device(raw, here), dtype=sections.dtype(raw), metrics=metrics,
        metric_options=sections.metric_options(raw, metrics), tolerance=sections.tolerance(raw),
        save_samples=sections.save_samples(raw), solver_settings=settings,
        study=study_settings, raw={key: value for key, value in raw.items() if key != "launcher"},
        guidance_by_nfe=guidance_by_nfe, labels=sections.labels(raw, specs), precision=sections.precision(raw, specs),
        sequential=sequential, launcher=launcher,
    )
    study.check_grid(grid)
    sections.solvers_on_backbones(specs, solvers, settings, base)  # last: it may load checkpoints
    return grid
