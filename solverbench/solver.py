"""The Solver contract: (velocity field, noise, NFE plan) -> samples.

A solver states once how it spends a budget: ``stages`` evaluations per interval and the
stage counts its last interval may take (``partial_stages``); ``solverbench.plan`` turns a
budget into the plan it solves along, and the harness checks the NFE it counted against
the plan.  ``order`` is the theoretical global order (local truncation error
O(H^(order+1))), or ``None`` where no order is claimed.

A solver that needs preparation (a network of its own, a learned grid) implements
``prepare(backbone, context)``; the ``PrepareContext`` carries all it may use.  What would make
``prepare`` fail on a backbone (a checkpoint made for another one) it refuses while a grid is
read, in ``check_backbone(backbone, context)``, for every backbone the grid runs it on.  A solver
family that reads grid-level settings names itself in ``family`` (the key of its mapping
under the grid's ``solver_settings:``) and checks them in ``check_settings``.  What a
solver counts besides NFE (network calls of its own, their seconds) it reports in
``counters()``; the harness stores each as a result column without knowing what it is.

A solver whose ``solve`` passes gradients from ``plan.times`` through to its result (it computes with
``plan.time_values()`` / ``plan.steps()`` in torch arithmetic) declares ``differentiable_times``: a
time grid can then be learned by backpropagating through it (LD3, ``solverbench.schedules``).

A solver that computes only through the velocity field inverts unchanged on the mirrored field
(``solverbench.inversion``, docs/inversion.md) and declares ``invertible``; one that holds something made
for one direction (a learned transformation, a scheduler's own grid) does not, and says why in
``inversion_refusal``.

For the local-truncation-error study a solver takes one step from exact states
(``local_step``); ``history_length`` says how many states that step uses (1 for one-step
methods, k for a k-step multistep method, which then implements ``local_step`` itself).

A predictor-corrector solver may offer an embedded estimate of each interval's local error, the
predictor minus the corrector, at no extra NFE: it declares ``embedded_error`` and implements
``stepper(field, x, t)``, a ``Stepper`` that takes the solve one interval at a time, each interval's
end chosen as it goes, and reports the estimate of each (``error_estimate``: per sample, the RMS over
elements).  The adaptive schedule (``solverbench.adaptive``) chooses the intervals from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from solverbench.field import VelocityField
from solverbench.plan import Plan, make_plan
from solverbench.registry import SOLVERS, defined_at


class NoExactHistoryStep(NotImplementedError):
    """A multistep solver that does not implement ``local_step``: it cannot step from exact history."""


class SolverCheckError(ValueError):
    """A solver that cannot run on a backbone, found by ``Solver.check_backbone``; ``key`` names what is at
    fault where one thing is: ``params.NAME`` (a parameter) or ``settings.NAME`` (a family setting)."""

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(message)
        self.key = key


class IncompleteSolver(TypeError):
    """A registered solver class that does not implement ``Solver.solve``."""


@dataclass(frozen=True)
class PrepareContext:
    """What ``Solver.prepare`` may use: where to cache, on which device, whether to show progress,
    the grid file's folder, the solver family's grid settings, and the (NFE budget, guidance) pairs
    the grid will sample with this solver (``uses``; for what is learned per budget and guidance,
    e.g. a Bespoke transformation)."""

    cache_dir: Optional[Path] = None  # None: keep what is made in memory only
    device: str = "cpu"
    progress: bool = True
    grid_dir: Optional[Path] = None  # None outside a grid (the Python API)
    settings: Mapping[str, Any] = field(default_factory=dict)
    uses: tuple[tuple[Optional[int], Any], ...] = ()  # (nfe, Guidance) pairs; () outside a grid


def error_estimate(predicted: torch.Tensor, corrected: torch.Tensor) -> torch.Tensor:
    """The embedded local-error estimate of an interval: per sample, the RMS over elements of the predictor
    minus the corrector, shape ``(N,)``, in float64."""
    return (corrected.to(torch.float64) - predicted.to(torch.float64)).flatten(1).pow(2).mean(dim=1).sqrt()


class Stepper:
    """One solve taken an interval at a time, each interval's end chosen as it goes (``Solver.stepper``).

    ``t`` and ``x`` are where it stands.  ``step(t_next, left)`` takes the interval to ``t_next`` as the
    solver's ``solve`` takes it on a grid that ends at t = 0 with ``left`` intervals still to take, this one
    included (1: the final interval, which a solver may take without an evaluation at its end; None: not
    known yet, more than one; None with ``t_next`` 0: the final interval taken, where the solver can, as an
    inner one, for its estimate, an evaluation at t = 0 spent on it: how a pilot measures the final
    interval), and returns the stepper standing at ``t_next`` with the interval's estimate
    (``error_estimate``, ``(N,)``), or None where the interval makes none (a final interval, an uncorrected
    step).  ``step`` leaves its stepper as it was: stepping from it again retries the interval (spending its
    evaluations again).  ``order``: the estimate shrinks as ``H^order`` with the interval's size ``H``.
    Walked along a grid, a stepper spends the NFE and gives the samples of ``solve`` on that grid.
    """

    t: float
    x: torch.Tensor
    order: int = 2

    def step(self, t_next: float, left: Optional[int] = None) -> tuple["Stepper", Optional[torch.Tensor]]:
        raise NotImplementedError


class Solver:
    """Base class of every solver. Subclasses implement ``solve``."""

    registered_name: str = "?"
    order: Optional[int] = None
    stages: int = 1  # NFE per interval
    partial_stages: tuple[int, ...] = ()  # stage counts the last interval of an uneven budget may take
    last_stages: tuple[int, ...] = ()  # if given, the stage counts the last interval must take (a scheduler's own)
    adaptive: bool = False  # adaptive solvers choose their own steps; NFE is only measured
    path_params: tuple[str, ...] = ()  # parameters that name files (solverbench.file_params)
    analysis_only: bool = False  # an analysis tool (e.g. an oracle), never ranked as a sampler
    history_length: int = 1  # states one step uses: 1 for one-step methods, k for a k-step multistep method
    family: Optional[str] = None  # the key of this family's settings under a grid's solver_settings:
    legacy_settings_keys: tuple[str, ...] = ()  # older top-level grid keys of those settings (deprecated)
    differentiable_times: bool = False  # solve() backpropagates into plan.times (see the module docstring)
    invertible: bool = False  # runs from data to noise on the mirrored field (solverbench.inversion)
    backbone_dtype: Optional[torch.dtype] = None  # the dtype it runs the backbone in (a cast copy); None: the state's
    embedded_error: bool = False  # offers each interval's local-error estimate through ``stepper`` (module docstring)

    def prepare(self, backbone: Any, context: PrepareContext) -> None:
        """One-off preparation for a backbone (e.g. training a network of its own); no-op by default."""

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Refuse bad family settings while a grid is read (raise ValueError); accepts all by default."""

    def check_backbone(self, backbone: Any, context: PrepareContext) -> None:
        """Refuse, while a grid is read, a backbone that ``prepare(backbone, context)`` would fail on (raise
        ``SolverCheckError``, or another ValueError): e.g. a checkpoint made for another backbone.  The context
        is the one ``prepare`` gets, but on the CPU and without a cache folder (the results folder is not known
        yet).  Cheap: no training; what it loads it may keep for ``prepare``.  Accepts every backbone by default."""

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        """Integrate ``dx/dt = field(x, t)`` along ``plan.times`` (from the first time to the last),
        spending ``plan.stages[k]`` evaluations on interval k."""
        raise NotImplementedError

    def stepper(self, field: VelocityField, x: torch.Tensor, t: float) -> Stepper:
        """A ``Stepper`` standing at ``(x, t)`` (its first evaluation spent there), for a solver that declares
        ``embedded_error``."""
        raise NotImplementedError(f"{self.label()} offers no embedded local-error estimate (embedded_error is "
                                  "False)")

    def local_step(self, field: VelocityField, history_times: Sequence[float],
                   history_states: Sequence[torch.Tensor], t_next: float) -> torch.Tensor:
        """One step to ``t_next`` from exact states, as a run holding this history would take it.

        ``history_times`` are the ``history_length`` times the step uses, decreasing (the
        oldest first, the step's start ``t`` last); ``history_states`` are the exact states
        there; ``t_next < t``.  Velocities are evaluated through ``field`` (at the history
        states too: a multistep solver re-evaluates what a run would have cached).  The
        default, for one-step methods, is one ``solve`` over the grid ``[t, t_next]``;
        a multistep solver (``history_length > 1``) must override it.
        """
        if self.history_length != 1:
            raise NoExactHistoryStep(
                f"no exact-history step: {self.label()} uses {self.history_length} past states "
                "but does not implement Solver.local_step(field, history_times, history_states, t_next)"
            )
        if len(history_times) != 1 or len(history_states) != 1:
            raise ValueError(f"{self.label()} is a one-step method: give one history time and state, "
                             f"got {len(history_times)} and {len(history_states)}")
        plan = make_plan(self, times=[float(history_times[-1]), float(t_next)], partial=True)
        return self.solve(field, history_states[-1], plan)

    @classmethod
    def inversion_refusal(cls) -> Optional[str]:
        """Why this solver cannot run from data to noise, or None where it can (``invertible``)."""
        if cls.invertible:
            return None
        return ("it does not declare that it inverts (Solver.invertible); a solver that computes only through the "
                "velocity field inverts unchanged on the mirrored field and may set invertible = True")

    def params(self) -> dict[str, Any]:
        """The parameters that distinguish this instance (logged with every result)."""
        return {}

    def label(self) -> str:
        """A short display name: the registered name plus its distinguishing parameters."""
        return solver_label(self.registered_name, self.params())

    def counters(self) -> dict[str, float]:
        """Running totals of what the solver counts besides NFE (e.g. calls of a network of its own
        and their seconds); each becomes a result column holding a cell's total."""
        return {}

    def use_precision(self, precision: Any) -> None:
        """Run the solver's own networks (none by default) as ``precision`` (solverbench.precision)
        says: under its autocast, compiled.  A sweep calls it once the solver is prepared."""

    def row_fields(self) -> dict[str, Any]:
        """Extra columns for every result row of this solver, once prepared (e.g. a network's size)."""
        return {}

    def cell_fields(self, nfe: Optional[int], guidance: Any) -> dict[str, Any]:
        """Columns of the row of one cell (budget ``nfe``, ``guidance``), over ``row_fields``: for what a solver
        prepares per budget (e.g. ``train_seconds`` and ``trainable_params`` of that budget's transformation)."""
        return {}

    def __repr__(self) -> str:
        return self.label()


def solver_label(name: str, params: Mapping[str, Any]) -> str:
    """``name(k=v, ...)``, or the bare name without parameters."""
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")


def check_implements_solve(cls: type) -> None:
    """Raise ``IncompleteSolver`` (one line naming the class and where it is defined) unless ``cls``
    implements ``solve``."""
    if getattr(cls, "solve", None) is Solver.solve:
        name = getattr(cls, "registered_name", "?")
        what = f"solver {name!r} (class {cls.__qualname__}, " if name != "?" else f"solver class {cls.__qualname__} ("
        raise IncompleteSolver(f"{what}{defined_at(cls)}) does not implement solve(self, field, x, plan) -> samples, "
                               "which every solver must")


def get_solver(name: str | Solver, **params: Any) -> Solver:
    """A solver instance from its registered name and parameters."""
    if isinstance(name, Solver):
        if params:
            raise TypeError("parameters can only be given with a solver name, not an instance")
        check_implements_solve(type(name))
        return name
    cls = SOLVERS.get(name)
    check_implements_solve(cls)
    try:
        return cls(**params)
    except TypeError as err:
        raise TypeError(f"solver {name!r}: {err}") from None
