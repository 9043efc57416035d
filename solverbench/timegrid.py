"""Time grids ``1 = t_0 > t_1 > ... > t_N = 0`` by name, and checks for explicit ones."""
from __future__ import annotations

from typing import Callable

import torch

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
    return shift * t / (1 + (shift - 1) * t)


def make_time_grid(schedule: str | dict, n_intervals: int) -> torch.Tensor:
    """A grid by name (``"uniform"``) or spec (``{"name": "shifted", "shift": 3}``)."""
    spec = {"name": schedule} if isinstance(schedule, str) else dict(schedule)
    name = spec.pop("name", None)
    if name not in GRIDS:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(sorted(GRIDS))}")
    if int(n_intervals) < 1:
        raise ValueError(f"a time grid needs at least one interval, got {n_intervals}")
    return check_time_grid(GRIDS[name](int(n_intervals), **spec))


def check_time_grid(grid) -> torch.Tensor:
    """A 1-D, strictly decreasing grid in [0, 1] with at least two points, as float64."""
    grid = torch.as_tensor(grid, dtype=torch.float64).flatten()
    if grid.numel() < 2:
        raise ValueError("a time grid needs at least two points")
    if not torch.all(grid[1:] < grid[:-1]):
        raise ValueError(f"a time grid must be strictly decreasing (from noise t=1 toward data t=0), got {grid.tolist()}")
    if grid[0] > 1 or grid[-1] < 0:
        raise ValueError(f"a time grid must lie in [0, 1], got {grid[0].item()} ... {grid[-1].item()}")
    return grid
