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
from solverbench.uncertainty import bootstrap_replicates, interval_from_replicates, with_interval

N_PROJECTIONS = 256
MAX_ELEMENTS = 4096  # vector metrics are for vector data; images have their own (FID, ...)
CACHE_ELEMENTS = 1 << 17  # float32 values a bootstrap draw works on at once (512 KB: in a core's L2 cache)


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
    x, y = x.double().flatten(1), y.double().flatten(1)
    if x.shape != y.shape:
        raise ValueError(f"sliced Wasserstein needs equal-size sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    theta = _directions(x.shape[1], seed, n_projections)
    px, py = _sorted_projections(x, theta), _sorted_projections(y, theta)  # (projections, n)
    squared = np.square(np.subtract(px, py, out=px), out=px)
    # the mean taken by torch over the (n, projections) layout: the same sum, in the same order, as
    # ``(px - py).pow(2).mean()`` on projections sorted along dim 0 by torch (which sorts strided columns slowly)
    return torch.from_numpy(np.ascontiguousarray(squared.T)).mean().sqrt().item()


def _sorted_projections(x: torch.Tensor, theta: torch.Tensor, dtype: type = np.float64) -> np.ndarray:
    """``x @ theta`` as ``(projections, n)``, each direction's projections in a contiguous row, sorted."""
    rows = np.ascontiguousarray((x.cpu() @ theta).numpy().T, dtype=dtype)
    rows.sort(axis=1)
    return rows


def sliced_wasserstein_resampled(x: torch.Tensor, y: torch.Tensor, seed: int) -> Callable[[torch.Tensor], float]:
    """``indices -> SW2(x[indices], y)`` for bootstrap draws: the projections computed once, in float32
    (a draw's spread is all that is read from it), sorted by numpy (several times torch's speed on a CPU).

    A draw works in place in one ``(projections, n)`` buffer, a few projections at a time (they stay
    in the cache from the gather to the square); it is the same float32 arithmetic as
    ``mean((sort(px[:, indices]) - py) ** 2)``, bit for bit.  The statistic reuses that buffer: call
    it from one thread at a time.
    """
    x, y = x.double().flatten(1), y.double().flatten(1)
    if x.shape != y.shape:
        raise ValueError(f"sliced Wasserstein needs equal-size sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    theta = _directions(x.shape[1], seed)
    px = np.ascontiguousarray((x.cpu() @ theta).numpy().T, dtype=np.float32)  # (projections, n)
    py = _sorted_projections(y, theta, np.float32)
    squared = np.empty_like(px)
    rows = max(1, CACHE_ELEMENTS // px.shape[1])  # projections per block

    def statistic(indices: torch.Tensor) -> float:
        # in increasing order: the gather reads each row forwards (the multiset, all that counts, is the same)
        indices = np.sort(indices.numpy())
        for block in range(0, len(px), rows):
            resampled = squared[block:block + rows]
            np.take(px[block:block + rows], indices, axis=1, out=resampled, mode="clip")  # in range: no check
            resampled.sort(axis=1)
            np.square(np.subtract(resampled, py[block:block + rows], out=resampled), out=resampled)
        return float(np.sqrt(np.mean(squared)))

    return statistic


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (the V-statistic), Szekely's energy distance."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def energy_distance_resampled(x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], float]:
    """``indices -> energy_distance(x[indices], y)``: with counts ``c`` of each sample in the draw,
    ``2 c . mean_j |x_i - y_j| / n - c^T |x_i - x_k| c / n^2 - E|Y - Y'|``."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    n = len(x)
    to_y, d_xx, e_yy = torch.cdist(x, y).mean(dim=1), torch.cdist(x, x), torch.cdist(y, y).mean()

    def statistic(idx: torch.Tensor) -> float:
        c = torch.bincount(idx, minlength=n).double()
        return (2 * (c @ to_y) / n - (c @ d_xx @ c) / n ** 2 - e_yy).item()

    return statistic


def _applies(backbone: Any, guidance: Guidance) -> Optional[str]:
    if not has_data(backbone):
        return "the backbone cannot draw data samples"
    if int(torch.Size(backbone.sample_shape).numel()) > MAX_ELEMENTS:
        return f"vector metric: samples have more than {MAX_ELEMENTS} elements (use the image metrics)"
    return None


def _with_floor(ctx: MetricContext, name: str, value: Callable[[torch.Tensor, torch.Tensor], float],
                resampled: Callable[[torch.Tensor, torch.Tensor], Callable[[torch.Tensor], float]]
                ) -> dict[str, float]:
    """The metric of the samples against data draw 0, and of data draw 1 against draw 0 (the floor)."""
    why = _applies(ctx.backbone, ctx.guidance)
    if why:
        raise NotApplicable(why)
    n = len(ctx.samples)
    data, _ = ctx.data(n)

    def measured(x: torch.Tensor, column: str) -> tuple[dict[str, float], np.ndarray]:
        estimate = value(x, data)
        replicates = bootstrap_replicates(resampled(x, data), n, seed=ctx.seed, name=column, resamples=ctx.resamples,
                                          strata=ctx.labels)
        return with_interval(column, estimate, interval_from_replicates(estimate, replicates, True)), replicates

    labels = None if ctx.labels is None else ctx.labels.tolist()
    key = (name, canonical_json(data_identity(ctx.backbone)), ctx.seed, n, canonical_json(labels), ctx.resamples)
    values, replicates = measured(ctx.samples, name)
    ctx.keep("bootstrap", name, replicates)
    return {**values, **ctx.memoised(key, lambda: measured(ctx.data(n, 1)[0], f"{name}_floor")[0])}


@register_metric("sliced_wasserstein")
def sliced_wasserstein(ctx: MetricContext) -> dict[str, float]:
    """Sliced Wasserstein-2 distance (256 random directions) to as many fresh data samples with the same labels."""
    return _with_floor(ctx, "sliced_wasserstein", lambda x, y: sliced_wasserstein2(x, y, seed=ctx.seed),
                       lambda x, y: sliced_wasserstein_resampled(x, y, ctx.seed))


@register_metric("energy_distance")
def energy(ctx: MetricContext) -> dict[str, float]:
    """Energy distance (Szekely, V-statistic) to as many fresh data samples with the same labels."""
    return _with_floor(ctx, "energy_distance", energy_distance, energy_distance_resampled)


sliced_wasserstein.applies = _applies
energy.applies = _applies
