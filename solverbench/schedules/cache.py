"""Learn a time grid once per (backbone, solver, NFE, guidance, schedule settings) and reuse it from disk.

The file is ``<cache_dir>/schedules/<name>/<hash>.pt``, the hash over everything that defines
the grid: the backbone's identity, the solver and its parameters (or, for a schedule that
depends on the solver only through its intervals, the intervals), the budget, the guidance and
every setting.  Written whole (a rename) by one process (rank 0 under torchrun); read back with
``weights_only``.  A file that cannot be used (torn, foreign, learned for another problem) is
moved aside, named in one line, and learned again (``solverbench.cache_entry``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from solverbench.backbone import backbone_identity
from solverbench.cache_entry import UnfitEntry, load_tensors, read_entry, save_atomically
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
    stored = read_entry(path, "learned time grid", lambda p: read_grid(p, key))
    if stored is not None:
        return stored
    grid = schedule.learn(problem)
    save_atomically({"times": grid.times, "seconds": grid.seconds, "parameters": grid.parameters,
                     "stats": canonical_json(grid.stats), "key": canonical_json(key)}, path)
    return grid


def read_grid(path: Path, key: dict[str, Any]) -> LearnedGrid:
    """The grid a cache file holds, checked: learned for ``key``."""
    stored = load_tensors(path, ("times", "seconds", "parameters", "stats", "key"))
    if stored["key"] != canonical_json(key):
        raise UnfitEntry("was learned for another problem than its name says (stored key differs)")
    return LearnedGrid(stored["times"], float(stored["seconds"]), int(stored["parameters"]),
                       json.loads(stored["stats"]))
