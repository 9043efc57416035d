"""The solver a pipeline call asks for, by name and parameters, checked before any work.

A ``checkpoint`` is a BA SideNet file, given to the solvers that take one (``ba``, ``ba-single``); a BA solver with
its SideNet on and no checkpoint would train a SideNet first, which a pipeline call never does: it is refused, naming
``train-sidenet`` and ``sidenet='off'``.  The scheduler runs only the solvers that evaluate once per step, at the
step's time (``SCHEDULER_SOLVERS``); ``generate`` runs every one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from backbones.diffusers_flow.pipelines.supported import PipelineError
from solverbench.plan import check_nfe
from solverbench.registry import SOLVERS, UnknownNameError
from solverbench.solver import Solver, get_solver

SCHEDULER_SOLVERS = ("euler", "flow-dpm", "flow-unipc", "ba")


def pipeline_solver(name: Any, checkpoint: Optional[str | Path], params: Mapping[str, Any]) -> Solver:
    """The solver ``name`` with ``params`` (and ``checkpoint``, a SideNet file, where given); one line where the name,
    a parameter or the checkpoint's file is wrong, or where a BA solver would have to train its SideNet."""
    if not isinstance(name, str):
        raise PipelineError(f"solver must be a registered solver's name (e.g. 'flow-unipc'), got {name!r}")
    try:
        cls = SOLVERS.get(name)
    except UnknownNameError as err:
        raise PipelineError(str(err)) from None
    params = dict(params)
    if checkpoint is not None:
        if "checkpoint" not in getattr(cls, "path_params", ()):
            raise PipelineError(f"checkpoint= is a BA SideNet file; the solver {name!r} takes none")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            what = "a folder" if path.is_dir() else "no such file"
            raise PipelineError(f"checkpoint {str(path)!r}: {what}; give a SideNet file (python -m solverbench "
                                "train-sidenet diffusers ... writes one)")
        params["checkpoint"] = str(path)
    try:
        solver = get_solver(name, **params)
    except (TypeError, ValueError) as err:
        raise PipelineError(" ".join(str(err).split())) from None
    if getattr(solver, "sidenet_on", False) and not getattr(solver, "checkpoint", None):
        raise PipelineError(f"{name} with its SideNet on needs checkpoint=FILE, a SideNet trained for this "
                            "transformer (python -m solverbench train-sidenet diffusers ... writes one), or "
                            "sidenet='off' (training-free)")
    return solver


def pipeline_budget(nfe: Any) -> Optional[int]:
    """An NFE budget (None, or a whole number >= 1), as ``solverbench.sample`` takes it; one line otherwise."""
    try:
        return check_nfe(nfe)
    except (TypeError, ValueError) as err:
        raise PipelineError(str(err)) from None


def check_scheduler_solver(solver: Solver) -> None:
    """The scheduler runs the solvers that evaluate once per step, at the step's time; one line for the others."""
    name = solver.registered_name
    if name in SCHEDULER_SOLVERS:
        return
    why = f"spends {solver.stages} evaluations per step" if solver.stages > 1 else "is not one of them"
    raise PipelineError(f"SolverbenchScheduler runs the solvers that evaluate once per step, at the step's time: "
                        f"{', '.join(SCHEDULER_SOLVERS)}; {name} {why}: generate(pipe, prompts, solver={name!r}, "
                        "...) runs every solver")
