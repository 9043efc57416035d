"""Distribution metrics for vector data against fresh data samples with the same labels.

Each value comes with its bootstrap interval over the cell's samples (the data set held
fixed) and with the noise floor: the same metric between two independent data draws of the
cell's size and labels, what a perfect sampler would score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from solverbench.backbone import data_identity, has_data
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.registry import register_metric
from solverbench.uncertainty import bootstrap_count_replicates, interval_from_replicates, strata_digest, with_interval

N_PROJECTIONS = 256
MAX_ELEMENTS = 4096  # vector metrics are for vector data; images have their own (FID, ...)


# the counts of each sample in bootstrap draws, ``(n,)`` for one draw or ``(draws, n)``, -> the metric of each draw
Statistic = Callable[[np.ndarray], "np.ndarray | float"]


def _directions(dim: int, seed: int, n_projections: int = N_PROJECTIONS) -> torch.Tensor:
    """Unit directions, uniform on the sphere, one per column."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(dim, n_projections, generator=g, dtype=torch.float64)
    return theta / theta.norm(dim=0, keepdim=True)


def sliced_wasserstein2(x: torch.Tensor, y: torch.Tensor, n_projections: int = N_PROJECTIONS, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between two equal-size point clouds.

    ``SW2 = sqrt(E_theta W2^2(theta.x, theta.y))`` over directions uniform on the sphere;
    in one dimension W2 is the RMS difference of the sorted projections.
    """
    x, y = _equal_size(x, y)
    theta = _directions(x.shape[1], seed, n_projections)
    return _distance(_sorted_projections(x, theta), _sorted_projections(y, theta))


def _equal_size(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = x.double().flatten(1), y.double().flatten(1)
    if x.shape != y.shape:
        raise ValueError(f"sliced Wasserstein needs equal-size sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def _distance(px: np.ndarray, py: np.ndarray, scratch: Optional[np.ndarray] = None) -> float:
    """SW2 from the sorted projections ``(projections, n)`` of the two sets (float64); ``scratch``: a spent
    ``(n, projections)`` float64 array to compute in."""
    from solverbench.bootstrap_kernels import squared_differences_transposed

    # the mean taken by torch over the (n, projections) layout: the same sum, in the same order, as
    # ``(px - py).pow(2).mean()`` on projections sorted along dim 0 by torch (which sorts strided columns slowly)
    return torch.from_numpy(squared_differences_transposed(px, py, scratch)).mean().sqrt().item()


def _sorted_projections(x: torch.Tensor, theta: torch.Tensor) -> np.ndarray:
    """The projections ``x @ theta``, each direction's sorted in a row ``(projections, n)`` (by numpy: several
    times torch's speed on a CPU)."""
    from solverbench.bootstrap_kernels import transposed

    rows = transposed((x.cpu() @ theta).numpy())
    rows.sort(axis=1)
    return rows


def _sorted_with_order(x: torch.Tensor, theta: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted projections of ``x`` and, per row, the samples in that order (``sorted[d, k] = x_order[d, k] .
    theta_d``); and the unsorted ``(n, projections)`` array they came from, spent (``_distance``'s scratch)."""
    from solverbench.bootstrap_kernels import sorted_columns_with_order

    projections = np.ascontiguousarray((x.cpu() @ theta).numpy())
    return (*sorted_columns_with_order(projections), projections)


def sliced_wasserstein_resampled(x: torch.Tensor, y: torch.Tensor, seed: int) -> Statistic:
    """``counts -> SW2`` of the bootstrap draws holding ``counts[..., i]`` copies of ``x[i]`` (each row sums to
    ``n``), against ``y``: ``resampled_from_sorted`` of the two sets' sorted projections."""
    x, y = _equal_size(x, y)
    theta = _directions(x.shape[1], seed)
    sorted_x, order, _ = _sorted_with_order(x, theta)
    return resampled_from_sorted(sorted_x, order, FixedSet.of(_sorted_projections(y, theta)))


@dataclass(frozen=True)
class FixedSet:
    """The set a bootstrap compares with, held fixed: its sorted projections ``(projections, n)``, and what every
    draw against it reads, made once (a run's cells share it): the mean of each direction, the cumulative sums of
    the values less that mean, and the sum of their squares."""

    values: np.ndarray
    centre: np.ndarray  # (projections, 1)
    prefix: np.ndarray  # (projections, n + 1): prefix[d, j] = sum of the first j centred values of direction d
    squares: float

    @classmethod
    def of(cls, sorted_values: np.ndarray) -> "FixedSet":
        centre = sorted_values.mean(axis=1, keepdims=True)
        centred = sorted_values - centre
        prefix = np.empty((len(centred), centred.shape[1] + 1))
        prefix[:, 0] = 0.0
        np.cumsum(centred, axis=1, out=prefix[:, 1:])
        return cls(sorted_values, centre, prefix, float(np.square(centred).sum()))


def resampled_from_sorted(sorted_x: np.ndarray, order: np.ndarray, fixed: FixedSet) -> Statistic:
    """``counts -> SW2`` of bootstrap draws of the samples, given as counts (``(n,)`` for one draw: a float;
    ``(draws, n)``: an array), against the ``fixed`` set, from the samples' sorted projections ``(projections,
    n)`` and their order (``_sorted_with_order``).

    With ``x*`` a draw's sorted projections in direction ``d`` and ``y`` the set's, the draw's
    ``sum_d sum_p (x*_{d,p} - y_{d,p})^2`` is ``sum_i c_i |P x_i|^2 - 2 sum_d sum_p x*_{d,p} y_{d,p} +
    sum_d sum_p y_{d,p}^2``: the first term is linear in the counts, the cross term is
    ``solverbench.bootstrap_kernels.sorted_cross_terms`` (one pass per direction and draw, no sort).  Both
    sets are centred on ``y``'s mean in each direction (a shift common to both leaves each W2 unchanged and
    keeps the three terms small).  Float64 throughout: it is the plain computation, sorting each draw's
    projections, to rounding (about 1e-12 relative)."""
    from solverbench.bootstrap_kernels import sorted_cross_terms, squared_norms, weighted_sums

    projections, n = sorted_x.shape
    if fixed.values.shape != sorted_x.shape:
        raise ValueError(f"sliced Wasserstein needs equal-size sets, got {sorted_x.shape} and {fixed.values.shape} "
                         "projections")
    squares = squared_norms(sorted_x, fixed.centre, order)  # each sample's, summed over the directions

    def statistic(counts: np.ndarray) -> np.ndarray | float:
        counts = np.asarray(counts)
        rows = counts.reshape(-1, counts.shape[-1]) if counts.ndim else counts
        if counts.ndim not in (1, 2) or rows.shape[1] != n or (rows.sum(axis=1) != n).any():
            raise ValueError(f"a bootstrap draw of {n} samples: {n} counts summing to {n}, got {counts.shape} "
                             f"summing to {rows.sum(axis=-1)}")
        rows = rows if rows.dtype in (np.uint8, np.int32, np.int64) else rows.astype(np.int64)
        cross = sorted_cross_terms(rows, order, sorted_x, fixed.centre, fixed.prefix)
        total = weighted_sums(rows, squares) - 2 * cross + fixed.squares
        values = np.sqrt(np.maximum(total, 0.0) / (projections * n))
        return float(values[0]) if counts.ndim == 1 else values

    return statistic


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (the V-statistic), Szekely's energy distance."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def energy_distance_resampled(x: torch.Tensor, y: torch.Tensor) -> Statistic:
    """``counts -> energy_distance`` of the bootstrap draws holding ``counts[..., i]`` copies of ``x[i]``, against
    ``y``: ``2 c . mean_j |x_i - y_j| / n - c^T |x_i - x_k| c / n^2 - E|Y - Y'|``."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    n = len(x)
    to_y, d_xx, e_yy = torch.cdist(x, y).mean(dim=1), torch.cdist(x, x), torch.cdist(y, y).mean()

    def statistic(counts: np.ndarray) -> np.ndarray | float:
        c = torch.from_numpy(np.asarray(counts, dtype=np.int64)).double()
        rows = c.reshape(-1, n)
        values = (2 * (rows @ to_y) / n - ((rows @ d_xx) * rows).sum(dim=1) / n ** 2 - e_yy).numpy()
        return float(values[0]) if c.ndim == 1 else values

    return statistic


def _applies(backbone: Any, guidance: Guidance) -> Optional[str]:
    if not has_data(backbone):
        return "the backbone cannot draw data samples"
    if int(torch.Size(backbone.sample_shape).numel()) > MAX_ELEMENTS:
        return f"vector metric: samples have more than {MAX_ELEMENTS} elements (use the image metrics)"
    return None


# (samples, data draw 0, the run's key of that draw) -> (the metric of the samples, its bootstrap statistic)
Prepare = Callable[[torch.Tensor, torch.Tensor, tuple], tuple[float, Statistic]]


def _with_floor(ctx: MetricContext, name: str, prepare: Prepare) -> dict[str, float]:
    """The metric of the samples against data draw 0, and of data draw 1 against draw 0 (the floor).

    Data draw 0, the floor and the bootstrap draws are the same for every cell of a run with the cell's
    seed, size and labels: each is made once (``ctx.memoised``)."""
    why = _applies(ctx.backbone, ctx.guidance)
    if why:
        raise NotApplicable(why)
    n = len(ctx.samples)
    key = (canonical_json(data_identity(ctx.backbone)), ctx.seed, n, strata_digest(ctx.labels))
    data = ctx.memoised(("data draw 0", *key), lambda: ctx.data(n)[0])

    def measured(x: torch.Tensor, column: str) -> tuple[dict[str, float], np.ndarray]:
        estimate, statistic = prepare(x, data, key)
        replicates = bootstrap_count_replicates(statistic, n, seed=ctx.seed, name=column, resamples=ctx.resamples,
                                                strata=ctx.labels, memo=ctx.memo)
        return with_interval(column, estimate, interval_from_replicates(estimate, replicates, True)), replicates

    values, replicates = measured(ctx.samples, name)
    ctx.keep("bootstrap", name, replicates)
    floor = ctx.memoised((name, *key, ctx.resamples), lambda: measured(ctx.data(n, 1)[0], f"{name}_floor")[0])
    return {**values, **floor}


@register_metric("sliced_wasserstein")
def sliced_wasserstein(ctx: MetricContext) -> dict[str, float]:
    """Sliced Wasserstein-2 distance (256 random directions) to as many fresh data samples with the same labels."""
    def prepare(x: torch.Tensor, data: torch.Tensor, key: tuple) -> tuple[float, Statistic]:
        x, data = _equal_size(x, data)
        theta = _directions(x.shape[1], ctx.seed)
        fixed = ctx.memoised(("sliced_wasserstein data projections", *key),
                             lambda: FixedSet.of(_sorted_projections(data, theta)))
        sorted_x, order, spent = _sorted_with_order(x, theta)
        return _distance(sorted_x, fixed.values, spent), resampled_from_sorted(sorted_x, order, fixed)

    return _with_floor(ctx, "sliced_wasserstein", prepare)


@register_metric("energy_distance")
def energy(ctx: MetricContext) -> dict[str, float]:
    """Energy distance (Szekely, V-statistic) to as many fresh data samples with the same labels."""
    return _with_floor(ctx, "energy_distance",
                       lambda x, data, key: (energy_distance(x, data), energy_distance_resampled(x, data)))


sliced_wasserstein.applies = _applies
energy.applies = _applies
