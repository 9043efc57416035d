"""Learn a time grid once per (backbone, solver, NFE, guidance, schedule settings) and reuse it from disk.

The file is ``<cache_dir>/schedules/<name>/<hash>.pt``, the hash over everything that defines
the grid: the backbone's identity, the solver and its parameters (or, for a schedule that
depends on the solver only through its intervals, the intervals), the budget, the guidance and
every setting.  Written whole (a rename) by one process; read back with ``weights_only``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_identity
from solverbench.hashing import canonical_json, spec_hash
from solverbench.schedules.learner import LearnedGrid, LearnedSchedule, ScheduleProblem

FORMAT = 1


def cache_key(schedule: LearnedSchedule, problem: ScheduleProblem) -> dict[str, Any]:
    g = problem.guidance
    solver = ({"solver": problem.solver.registered_name, "solver_params": problem.solver.params(), "nfe": problem.nfe}
              if schedule.per_solver else {"intervals": problem.intervals})
    return {"format": FORMAT, "schedule": schedule.key(), "backbone": backbone_identity(problem.backbone), **solver, "dtype": str(problem.dtype).removeprefix("torch."),
            "guidance": {"scale": g.scale, "interval": list(g.interval), "rule": g.rule, "decision": g.decision,
                         "channels": g.channels}}


def cache_path(cache_dir: str | Path, schedule: LearnedSchedule, problem: ScheduleProblem) -> Path:
    return path_of(cache_dir, schedule, cache_key(schedule, problem))


def path_of(cache_dir: str | Path, schedule: LearnedSchedule, key: dict[str, Any]) -> Path:
    return Path(cache_dir) / "schedules" / schedule.registered_name / f"{spec_hash(key)}.pt"


def cached_time_grid(schedule: LearnedSchedule, problem: ScheduleProblem,
                     cache_dir: Optional[str | Path]) -> LearnedGrid:
    """The grid from the cache, or learned (and stored, where there is a ``cache_dir``)."""
    schedule.check_solver(problem.solver)
    if cache_dir is None:
        return schedule.learn(problem)
    key = cache_key(schedule, problem)
    path = path_of(cache_dir, schedule, key)
    if path.is_file():
        return read_grid(path, key)
    grid = schedule.learn(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"times": grid.times, "seconds": grid.seconds, "parameters": grid.parameters,
                "stats": canonical_json(grid.stats), "key": canonical_json(key)}, tmp)
    os.replace(tmp, path)
    return grid


def read_grid(path: Path, key: dict[str, Any]) -> LearnedGrid:
    try:
        stored = torch.load(path, weights_only=True)
        times, seconds, parameters = stored["times"], float(stored["seconds"]), int(stored["parameters"])
        stored_key = stored["key"]
    except Exception as err:  # a torn or foreign file: say which, never learn over it silently
        raise ValueError(f"learned time grid {str(path)!r} cannot be read ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]}); delete it to learn the grid again") from None
    if stored_key != canonical_json(key):
        raise ValueError(f"learned time grid {str(path)!r} was learned for another problem than its name says "
                         f"(stored key differs); delete it to learn the grid again")
    return LearnedGrid(times, seconds, parameters, json.loads(stored["stats"]))
