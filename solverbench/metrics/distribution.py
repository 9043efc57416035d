"""Distribution metrics for vector data against fresh data samples with the same labels."""
from __future__ import annotations

import torch

from solverbench.backbone import has_data
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.registry import register_metric

N_PROJECTIONS = 256


def sliced_wasserstein2(x: torch.Tensor, y: torch.Tensor, n_projections: int = N_PROJECTIONS, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between two equal-size point clouds.

    ``SW2 = sqrt(E_theta W2^2(theta.x, theta.y))`` over directions uniform on the sphere;
    in one dimension W2 is the RMS difference of the sorted projections.
    """
    x, y = x.double().flatten(1), y.double().flatten(1)
    if x.shape != y.shape:
        raise ValueError(f"sliced Wasserstein needs equal-size sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x.cpu() @ theta, dim=0)
    py, _ = torch.sort(y.cpu() @ theta, dim=0)
    return (px - py).pow(2).mean().sqrt().item()


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (the V-statistic), Szekely's energy distance."""
    x, y = x.double().flatten(1).cpu(), y.double().flatten(1).cpu()
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def _data_like(ctx: MetricContext) -> torch.Tensor:
    if not has_data(ctx.backbone):
        raise NotApplicable("the backbone cannot draw data samples")
    if ctx.samples[0].numel() > 4096:
        raise NotApplicable("vector metric: samples have more than 4096 elements")
    x0, _ = ctx.data(len(ctx.samples))
    return x0


@register_metric("sliced_wasserstein")
def sliced_wasserstein(ctx: MetricContext) -> dict[str, float]:
    return {"sliced_wasserstein": sliced_wasserstein2(ctx.samples, _data_like(ctx), seed=ctx.seed)}


@register_metric("energy_distance")
def energy(ctx: MetricContext) -> dict[str, float]:
    return {"energy_distance": energy_distance(ctx.samples, _data_like(ctx))}
