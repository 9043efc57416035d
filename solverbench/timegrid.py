"""Time grids ``1 = t_0 > t_1 > ... > t_N = 0`` by name, and checks for explicit ones.

Besides grids in t, the schedules of the diffusion-sampler literature, written for a noise
level ``sigma`` in the VE sense (``sigma / alpha``, EDM's sigma), are grids here through
``t = sigma / (1 + sigma)``, the flow time of that noise level (docs/backbones/diffusion.md):
``logsnr`` (equal steps in the log-SNR ``lambda = log((1 - t) / t) = -log sigma``) and
``karras`` (EDM's). Such a schedule gives N noise levels ``sigma_max = s_0 > ... > s_{N-1} =
sigma_min`` for N steps and ends at 0, as EDM's and diffusers' samplers do; a sampler starts
at ``sigma_max`` from pure noise, where solverbench starts at t = 1. So the grid is
``[1, t(s_1), ..., t(s_{N-1}), 0]``: its first point is 1 in place of ``t(sigma_max)``, the
others are the schedule's, and it spends as many steps as the sampler.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

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


EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0  # EDM's noise levels (Karras et al. 2022), the defaults below


def flow_times(sigmas: torch.Tensor) -> torch.Tensor:
    """A diffusion sampler's decreasing noise levels ``s_0 > ... > s_{N-1}`` (VE sense) as a grid of N
    intervals: ``[1, t(s_1), ..., t(s_{N-1}), 0]`` with ``t(s) = s / (1 + s)`` (the first level gives way to t = 1)."""
    t = sigmas / (1 + sigmas)
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return torch.cat([one, t[1:], zero])


def _noise_level(name: str, sigma: Optional[float], t: Optional[float], default: float) -> float:
    """One end of a schedule as a VE noise level: ``sigma_NAME`` as given, ``t_NAME`` as ``t / (1 - t)``, or the
    default; giving both is refused."""
    if sigma is not None and t is not None:
        raise ValueError(f"give sigma_{name} or t_{name}, not both (got sigma_{name}={sigma}, t_{name}={t})")
    if t is not None:
        if not 0 < t < 1:
            raise ValueError(f"t_{name} must lie in (0, 1), got {t}")
        return t / (1 - t)
    sigma = default if sigma is None else sigma
    if not 0 < sigma < math.inf:
        raise ValueError(f"sigma_{name} must be a positive number, got {sigma}")
    return float(sigma)


def _noise_levels(sigma_min: Optional[float], sigma_max: Optional[float], t_min: Optional[float] = None,
                  t_max: Optional[float] = None) -> tuple[float, float]:
    low = _noise_level("min", sigma_min, t_min, EDM_SIGMA_MIN)
    high = _noise_level("max", sigma_max, t_max, EDM_SIGMA_MAX)
    if not low < high:
        raise ValueError(f"the schedule's noise levels must satisfy sigma_min < sigma_max, got {low} and {high}")
    return low, high


@_grid("logsnr")
def logsnr(n_intervals: int, sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
           t_min: Optional[float] = None, t_max: Optional[float] = None) -> torch.Tensor:
    """Equal steps in the log-SNR ``lambda = log((1 - t) / t) = -log sigma`` (DPM-Solver's "logSNR" steps):
    ``lambda_i`` from ``-log sigma_max`` to ``-log sigma_min`` in N levels, then t = 0; the first level gives
    way to t = 1 (``flow_times``).  Each end is a VE noise level or a flow time (``t_min``, ``t_max``);
    the defaults are EDM's, 0.002 and 80."""
    low, high = _noise_levels(sigma_min, sigma_max, t_min, t_max)
    lambdas = torch.linspace(-math.log(high), -math.log(low), n_intervals, dtype=torch.float64)
    return flow_times(torch.exp(-lambdas))


@_grid("karras")
def karras(n_intervals: int, sigma_min: float = EDM_SIGMA_MIN, sigma_max: float = EDM_SIGMA_MAX,
           rho: float = 7.0) -> torch.Tensor:
    """EDM's noise levels (Karras et al. 2022, eq. 5), ``sigma_i = (sigma_max^(1/rho) + i / (N - 1)
    (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`` for i < N, then t = 0; the first level gives way to
    t = 1 (``flow_times``)."""
    low, high = _noise_levels(sigma_min, sigma_max)
    if not 0 < rho < math.inf:
        raise ValueError(f"rho must be a positive number, got {rho}")
    ramp = torch.linspace(0, 1, n_intervals, dtype=torch.float64)
    return flow_times((high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho)


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
