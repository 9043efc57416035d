"""Distribution metrics for vector data against fresh data samples with the same labels.

Each value comes with its bootstrap interval over the cell's samples (the data set held
fixed) and with the noise floor: the same metric between two independent data draws of the
cell's size and labels, what a perfect sampler would score.
"""
from __future__ import annotations

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
SORTED_DRAWS_UP_TO = 512  # bootstrap draws of at most this many samples gather and sort (_gather_and_sort)
CACHE_ELEMENTS = 1 << 17  # projected values a bootstrap draw works on at once (with its index buffers: a few MB)


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


def _distance(px: np.ndarray, py: np.ndarray) -> float:
    """SW2 from the sorted projections ``(projections, n)`` of the two sets (float64)."""
    squared = np.subtract(px, py)
    np.square(squared, out=squared)
    # the mean taken by torch over the (n, projections) layout: the same sum, in the same order, as
    # ``(px - py).pow(2).mean()`` on projections sorted along dim 0 by torch (which sorts strided columns slowly)
    return torch.from_numpy(np.ascontiguousarray(squared.T)).mean().sqrt().item()


def _projections(x: torch.Tensor, theta: torch.Tensor) -> np.ndarray:
    """``x @ theta`` as ``(projections, n)``, each direction's projections in a contiguous row (float64)."""
    return np.ascontiguousarray((x.cpu() @ theta).numpy().T)


def _sorted_projections(x: torch.Tensor, theta: torch.Tensor) -> np.ndarray:
    """The projections of ``x``, each row sorted (by numpy: several times torch's speed on a CPU)."""
    rows = _projections(x, theta)
    rows.sort(axis=1)
    return rows


def _sorted_with_order(x: torch.Tensor, theta: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The sorted projections of ``x`` and, per row, the samples in that order (``sorted[d, k] = x_order[d, k] .
    theta_d``)."""
    rows = _projections(x, theta)
    order = np.argsort(rows, axis=1)
    return np.take_along_axis(rows, order, axis=1), order


def sliced_wasserstein_resampled(x: torch.Tensor, y: torch.Tensor, seed: int) -> Callable[[np.ndarray], float]:
    """``counts -> SW2`` of the bootstrap draw holding ``counts[i]`` copies of ``x[i]`` (the counts sum to
    ``n``), against ``y``: ``resampled_from_sorted`` of the two sets' sorted projections."""
    x, y = _equal_size(x, y)
    theta = _directions(x.shape[1], seed)
    return resampled_from_sorted(*_sorted_with_order(x, theta), _sorted_projections(y, theta))


def resampled_from_sorted(sorted_x: np.ndarray, order: np.ndarray, sorted_y: np.ndarray
                          ) -> Callable[[np.ndarray], float]:
    """``counts -> SW2`` of a bootstrap draw of the samples, in float32 (a draw's spread is all that is read
    from it): the draw's sorted projections in each direction (``_expand_counts``, or for a few samples
    ``_gather_and_sort``), less the data's, squared and averaged.

    It is the float32 arithmetic of ``mean((sort(px[:, indices]) - py) ** 2)`` for the draw's indices, bit
    for bit: the same sorted values (equal floats are interchangeable; ``-0.0`` and ``0.0`` square alike),
    squared in the same ``(projections, n)`` buffer, summed by the same ``np.mean``.  The buffer is worked on
    a few projections at a time (they stay in the cache) and reused: call it from one thread at a time.
    """
    values = sorted_x.astype(np.float32)  # the cast keeps the order
    py = sorted_y.astype(np.float32)
    projections, n = values.shape
    squared = np.empty_like(values)
    rows = max(1, CACHE_ELEMENTS // max(n, 1))  # projections per block
    begin, fill = (_gather_and_sort if n <= SORTED_DRAWS_UP_TO else _expand_counts)(values, order, rows * n)

    def statistic(counts: np.ndarray) -> float:
        counts = np.asarray(counts, dtype=np.intp)
        if counts.shape != (n,) or counts.sum() != n:
            raise ValueError(f"a bootstrap draw of {n} samples: {n} counts summing to {n}, got {counts.shape} "
                             f"summing to {counts.sum()}")
        draw = begin(counts)
        for block in range(0, projections, rows):
            within, resampled = slice(block, block + rows), squared[block:block + rows]
            fill(draw, within, resampled)
            np.square(np.subtract(resampled, py[within], out=resampled), out=resampled)
        return float(np.sqrt(np.mean(squared)))

    return statistic


def _expand_counts(values: np.ndarray, order: np.ndarray, block_size: int) -> tuple[Callable, Callable]:
    """A draw's sorted projections with no sort: in direction ``d`` they are the sorted values ``values[d]``,
    value ``k`` repeated ``m_k = counts[order[d, k]]`` times; with ``e = cumsum(m)`` (where each value's
    copies end), position ``p`` holds value ``#{k : e_k <= p}``: a histogram of ``e`` and its cumulative sum.
    Over a block's rows flattened, ``e`` and the positions run on into the next row (each row's counts sum to
    ``n``)."""
    copies, ends = np.empty(block_size, dtype=np.intp), np.empty(block_size, dtype=np.intp)

    def fill(counts: np.ndarray, rows: slice, out: np.ndarray) -> None:
        size = out.size
        m, e = copies[:size], ends[:size]
        np.take(counts, order[rows].reshape(-1), out=m, mode="clip")  # in range: no check
        np.cumsum(m, out=e)
        position = np.cumsum(np.bincount(e, minlength=size + 1)[:size], out=m)
        np.take(values[rows].reshape(-1), position, out=out.reshape(-1), mode="clip")

    return (lambda counts: counts), fill


def _gather_and_sort(values: np.ndarray, order: np.ndarray, block_size: int) -> tuple[Callable, Callable]:
    """A draw's sorted projections as the draw's samples' projections, gathered and sorted: for a few samples
    (a sort of at most 512 values runs in the vector registers) faster than ``_expand_counts``'s passes."""
    unsorted = np.empty_like(values)  # (projections, n) in sample order
    np.put_along_axis(unsorted, order, values, axis=1)
    samples = np.arange(values.shape[1])

    def fill(indices: np.ndarray, rows: slice, out: np.ndarray) -> None:
        np.take(unsorted[rows], indices, axis=1, out=out, mode="clip")  # in range: no check
        out.sort(axis=1)

    return (lambda counts: np.repeat(samples, counts)), fill  # the draw's indices, increasing: rows read forwards


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (the V-statistic), Szekely's energy distance."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def energy_distance_resampled(x: torch.Tensor, y: torch.Tensor) -> Callable[[np.ndarray], float]:
    """``counts -> energy_distance`` of the bootstrap draw holding ``counts[i]`` copies of ``x[i]``, against
    ``y``: ``2 c . mean_j |x_i - y_j| / n - c^T |x_i - x_k| c / n^2 - E|Y - Y'|``."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    n = len(x)
    to_y, d_xx, e_yy = torch.cdist(x, y).mean(dim=1), torch.cdist(x, x), torch.cdist(y, y).mean()

    def statistic(counts: np.ndarray) -> float:
        c = torch.from_numpy(np.asarray(counts, dtype=np.int64)).double()
        return (2 * (c @ to_y) / n - (c @ d_xx @ c) / n ** 2 - e_yy).item()

    return statistic


def _applies(backbone: Any, guidance: Guidance) -> Optional[str]:
    if not has_data(backbone):
        return "the backbone cannot draw data samples"
    if int(torch.Size(backbone.sample_shape).numel()) > MAX_ELEMENTS:
        return f"vector metric: samples have more than {MAX_ELEMENTS} elements (use the image metrics)"
    return None


Statistic = Callable[[np.ndarray], float]  # counts of each sample in a bootstrap draw -> the metric of the draw
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
        sorted_data = ctx.memoised(("sliced_wasserstein data projections", *key),
                                   lambda: _sorted_projections(data, theta))
        sorted_x, order = _sorted_with_order(x, theta)
        return _distance(sorted_x, sorted_data), resampled_from_sorted(sorted_x, order, sorted_data)

    return _with_floor(ctx, "sliced_wasserstein", prepare)


@register_metric("energy_distance")
def energy(ctx: MetricContext) -> dict[str, float]:
    """Energy distance (Szekely, V-statistic) to as many fresh data samples with the same labels."""
    return _with_floor(ctx, "energy_distance",
                       lambda x, data, key: (energy_distance(x, data), energy_distance_resampled(x, data)))


sliced_wasserstein.applies = _applies
energy.applies = _applies
