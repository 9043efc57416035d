"""Time grids ``1 = t_0 > t_1 > ... > t_N = 0`` by name, and checks for explicit ones."""
from __future__ import annotations

from typing import Callable

import torch

from solverbench.registry import SCHEDULES

GRIDS: dict[str, Callable[..., torch.Tensor]] = {}


def _grid(name: str):
    def decorator(fn):
        GRIDS[name] = fn
        return fn

    return decorator


@_grid("uniform")
def uniform(n_intervals: int, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    """Equal steps in t."""
    return torch.linspace(t_start, t_end, n_intervals + 1, dtype=torch.float64)


@_grid("shifted")
def shifted(n_intervals: int, shift: float = 3.0, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    """The uniform grid mapped by ``t' = s t / (1 + (s - 1) t)`` (SD3's time shift)."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    t = uniform(n_intervals, t_start, t_end)
    # 0 and 1 map to themselves; pinned, since the division can land a rounding error off them (s = 0.4: 1 -> 1 - 2e-16)
    return torch.where((t == 0) | (t == 1), t, shift * t / (1 + (shift - 1) * t))


def make_time_grid(schedule: str | dict, n_intervals: int) -> torch.Tensor:
    """A grid by name (``"uniform"``) or spec (``{"name": "shifted", "shift": 3}``)."""
    spec = {"name": schedule} if isinstance(schedule, str) else dict(schedule)
    name = spec.pop("name", None)
    if name not in GRIDS and isinstance(name, str) and name in SCHEDULES:
        raise ValueError(f"schedule {name!r} is learned per (backbone, solver, NFE, guidance): name it in a grid file, "
                         f"or learn it with solverbench.schedules.learn_time_grid and sample with time_grid=")
    if name not in GRIDS:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(sorted(GRIDS))}")
    if int(n_intervals) < 1:
        raise ValueError(f"a time grid needs at least one interval, got {n_intervals}")
    return check_time_grid(GRIDS[name](int(n_intervals), **spec))


def check_time_grid(grid, *, partial: bool = False) -> torch.Tensor:
    """A 1-D, strictly decreasing grid from noise ``t = 1`` to data ``t = 0``, as float64.

    Every time grid a sampler is given passes here.  ``partial=True`` also accepts a grid
    that starts below 1 or ends above 0 (sampling part of the way, e.g. from a state a
    caller already holds); without it such a grid is refused, since its end state is not a
    sample.  A strictly decreasing grid inside ``[0, 1]`` with at least two points is
    required either way.
    """
    if isinstance(grid, (str, bytes)):
        raise TypeError(f"a time grid must be a 1-D sequence of times, got the string {grid!r}")
    if isinstance(grid, torch.Tensor) and grid.requires_grad:  # a grid being learned keeps its graph
        if grid.dtype != torch.float64:
            raise TypeError(f"a time grid that carries gradients must be float64, got {grid.dtype}")
        _check_values(grid.detach(), partial)
        return grid
    try:
        grid = torch.as_tensor(grid, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"a time grid must be a 1-D sequence of times, got {grid!r}") from None
    _check_values(grid, partial)
    return grid


def _check_values(grid: torch.Tensor, partial: bool) -> None:
    if grid.dim() != 1:
        raise ValueError(f"a time grid must be 1-D, got shape {tuple(grid.shape)}")
    if grid.numel() < 2:
        raise ValueError("a time grid needs at least two points")
    if not torch.all(grid[1:] < grid[:-1]):
        raise ValueError(f"a time grid must be strictly decreasing (from noise t=1 toward data t=0), got {grid.tolist()}")
    first, last = grid[0].item(), grid[-1].item()
    if first > 1 or last < 0:
        raise ValueError(f"a time grid must lie in [0, 1], got {first} ... {last}")
    if not partial and (first != 1.0 or last != 0.0):
        where = " and ".join(
            f"{what} at {_short(value, goal)}, not {goal}" for what, value, goal in (("starts", first, 1), ("ends", last, 0))
            if value != goal)
        raise ValueError(f"a time grid must run from noise t=1 to data t=0, this one {where}; pass partial=True "
                         "to integrate only part of the way (the result is then the state at the grid's last time, "
                         "not a sample)")


def _short(value: float, differs_from: float) -> str:
    """``value`` in 6 significant digits, or in full where those would read as ``differs_from``."""
    short = f"{value:.6g}"
    return short if float(short) != differs_from else repr(value)
