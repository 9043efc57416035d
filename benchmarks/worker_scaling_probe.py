"""A plugin file that records, in each solverbench process it is loaded into, where the process's time went
while it ran a grid: the cells it took, the store's lock, the reference solve and the collectives.

benchmarks/worker_scaling.py loads it into every process of a run (``python -m solverbench --plugin
THIS run ...``: the single process, each ``--workers`` worker and their parent, each torchrun rank) and
names a folder in ``WORKER_SCALING_RECORDS``; at its exit each process writes ``<pid>.json`` there:

- ``cells``: per unit of the grid the process took up, ``[start, end, ran]`` (epoch seconds; ``ran``: it
  wrote the unit's rows, rather than finding another process holding or having done it);
- ``lock``: per hold of the results folder's lock (``ResultsTable.locked``), ``[wait, held, inside]``
  (seconds; ``inside``: during a unit the process took up);
- ``reference``: per reference asked of the workspace, ``[seconds, solved, inside]`` (``solved``: the
  adaptive solve ran here, else the endpoints were read from the cache);
- ``collectives``: seconds in torch.distributed's exchanges between ranks (waiting for the slowest rank
  included; 0 outside torchrun), ``inside`` units and ``outside`` them;
- ``threads``: torch's CPU threads; ``loaded`` and ``exited``: epoch seconds of this file's load and of
  the process's exit.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import solverbench.distributed as distributed
import solverbench.engine.loop as loop
import solverbench.engine.workspace as workspace
import solverbench.reference as reference
from solverbench.results import ResultsTable

FOLDER = os.environ.get("WORKER_SCALING_RECORDS")
if not FOLDER:
    raise RuntimeError("WORKER_SCALING_RECORDS is not set: this probe is loaded by benchmarks/worker_scaling.py, "
                       "which names the folder its records go to")

RECORD: dict[str, Any] = {"pid": os.getpid(), "parent": os.getppid(), "argv": sys.argv[1:],
                          "rank": os.environ.get("RANK"), "loaded": time.time(), "cells": [], "lock": [],
                          "reference": [], "collectives": {"inside": 0.0, "outside": 0.0}}
_solves = [0]  # reference solves run so far in this process
_depth = [0]  # nesting of the collectives being timed (only the outermost is counted)
_inside = [False]  # whether a unit is running


def write_record() -> None:
    import torch

    RECORD["exited"], RECORD["threads"] = time.time(), torch.get_num_threads()
    (Path(FOLDER) / f"{os.getpid()}.json").write_text(json.dumps(RECORD))


def hook(owner: Any, name: str, wrap: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` by ``wrap(owner.name)``; one the code lacks is an error naming it."""
    if not hasattr(owner, name):
        raise RuntimeError(f"worker_scaling_probe: {getattr(owner, '__name__', owner)}.{name} is gone; update the "
                           "probe to the engine")
    setattr(owner, name, wrap(getattr(owner, name)))


def timed_lock(locked: Callable) -> Callable:
    @contextmanager
    @functools.wraps(locked)
    def wrapper(self: ResultsTable) -> Iterator[None]:
        asked = time.perf_counter()
        with locked(self):
            held = time.perf_counter()
            try:
                yield
            finally:
                RECORD["lock"].append([held - asked, time.perf_counter() - held, _inside[0]])
    return wrapper


def timed_reference(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, solves = time.perf_counter(), _solves[0]
        try:
            return fn(*args, **kwargs)
        finally:
            RECORD["reference"].append([time.perf_counter() - start, _solves[0] > solves, _inside[0]])
    return wrapper


def counted_solve(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _solves[0] += 1
        return fn(*args, **kwargs)
    return wrapper


def timed_unit(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(table: Any, unit: Any, force: bool, bar: Any, outcome: Any, ranks: Any) -> Any:
        start, ran = time.time(), outcome.ran
        _inside[0] = True
        try:
            return fn(table, unit, force, bar, outcome, ranks)
        finally:
            _inside[0] = False
            RECORD["cells"].append([start, time.time(), outcome.ran > ran])
    return wrapper


def timed_collective(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(self: distributed.World, *args: Any, **kwargs: Any) -> Any:
        if not self.sharded:
            return fn(self, *args, **kwargs)
        start = time.perf_counter()
        _depth[0] += 1
        try:
            return fn(self, *args, **kwargs)
        finally:
            _depth[0] -= 1
            if _depth[0] == 0:
                RECORD["collectives"]["inside" if _inside[0] else "outside"] += time.perf_counter() - start
    return wrapper


hook(ResultsTable, "locked", timed_lock)
hook(workspace, "reference_endpoints", timed_reference)
hook(reference, "solve_reference", counted_solve)
hook(loop, "_run_claimed", timed_unit)
for method in ("agree", "all_objects", "_gather"):
    hook(distributed.World, method, timed_collective)
atexit.register(write_record)
