"""The Solver contract: (velocity field, noise, time grid) -> samples.

A solver says how many intervals it uses for an NFE budget (``intervals_for``) and how
many NFE it spends on a grid of N intervals (``nfe_for``); the harness checks the NFE
it measured against that.  ``order`` is the theoretical global order (local truncation
error O(H^(order+1))), or ``None`` where no order is claimed.

For the local-truncation-error study a solver takes one step from exact states
(``local_step``); ``history_length`` says how many states that step uses (1 for one-step
methods, k for a k-step multistep method, which then implements ``local_step`` itself).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from solverbench.field import VelocityField
from solverbench.registry import SOLVERS


class NoExactHistoryStep(NotImplementedError):
    """A multistep solver that does not implement ``local_step``: it cannot step from exact history."""


class Solver:
    """Base class of every solver. Subclasses implement ``solve``."""

    registered_name: str = "?"
    order: Optional[int] = None
    nfe_per_interval: int = 1
    adaptive: bool = False  # adaptive solvers choose their own steps; NFE is only measured
    uses_sidenet: bool = False
    path_params: tuple[str, ...] = ()  # parameters that name files (solverbench.file_params)
    analysis_only: bool = False  # an analysis tool (e.g. an oracle), never ranked as a sampler
    history_length: int = 1  # states one step uses: 1 for one-step methods, k for a k-step multistep method

    def intervals_for(self, nfe: int) -> int:
        """Number of grid intervals this solver uses for a budget of ``nfe`` evaluations."""
        nfe = int(nfe)
        if nfe < 1:
            raise ValueError(f"{self.registered_name}: an NFE budget must be at least 1, got {nfe}")
        return -(-nfe // self.nfe_per_interval)

    def nfe_for(self, n_intervals: int) -> int:
        """Evaluations spent on a grid of ``n_intervals`` intervals."""
        return self.nfe_per_interval * int(n_intervals)

    def prepare(self, backbone: Any, *, cache_dir: Optional[str] = None, **context: Any) -> None:
        """One-off preparation for a backbone (e.g. training a SideNet); no-op by default."""

    def solve(self, field: VelocityField, x: torch.Tensor, grid: torch.Tensor, *, nfe: Optional[int] = None) -> torch.Tensor:
        """Integrate ``dx/dt = field(x, t)`` along ``grid`` (from ``grid[0]`` to ``grid[-1]``).

        ``nfe`` is the budget the grid was built for (``None`` for an explicit grid);
        solvers that split a budget unevenly across intervals use it.
        """
        raise NotImplementedError

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
        grid = torch.tensor([float(history_times[-1]), float(t_next)], dtype=torch.float64)
        return self.solve(field, history_states[-1], grid)

    def params(self) -> dict[str, Any]:
        """The parameters that distinguish this instance (logged with every result)."""
        return {}

    def label(self) -> str:
        """A short display name: the registered name plus its distinguishing parameters."""
        return solver_label(self.registered_name, self.params())

    @property
    def sidenet_calls(self) -> int:
        """SideNet evaluations so far (per sample); not NFE, but counted and reported."""
        return 0

    @property
    def sidenet_seconds(self) -> float:
        """Wall time spent in SideNet evaluations so far, apart from the backbone's."""
        return 0.0

    def row_fields(self) -> dict[str, Any]:
        """Extra columns for every result row of this solver (e.g. SideNet size)."""
        return {}

    def __repr__(self) -> str:
        return self.label()


def solver_label(name: str, params: dict[str, Any]) -> str:
    """``name(k=v, ...)``, or the bare name without parameters."""
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")


def get_solver(name: str | Solver, **params: Any) -> Solver:
    """A solver instance from its registered name and parameters."""
    if isinstance(name, Solver):
        if params:
            raise TypeError("parameters can only be given with a solver name, not an instance")
        return name
    cls = SOLVERS.get(name)
    try:
        return cls(**params)
    except TypeError as err:
        raise TypeError(f"solver {name!r}: {err}") from None
