"""Trajectory error: per-sample RMS distance to the reference endpoint from the same noise."""
from __future__ import annotations

import torch

from solverbench.metrics.context import MetricContext
from solverbench.registry import register_metric
from solverbench.uncertainty import mean_interval, with_interval


def per_sample_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sqrt(mean over elements of (a - b)^2)`` for each sample, in float64."""
    diff = (a.double() - b.double()).flatten(1)
    return diff.pow(2).mean(dim=1).sqrt()


@register_metric("trajectory_error")
def trajectory_error(ctx: MetricContext) -> dict[str, float]:
    """Mean per-sample RMS distance to the reference solve's endpoint from the same noise (and the worst sample's)."""
    err = per_sample_rms(ctx.samples, ctx.reference)
    mean, interval = mean_interval(err, seed=ctx.seed, name="trajectory_error", strata=ctx.labels, memo=ctx.memo)
    ctx.keep("per_sample", "trajectory_error", err)
    return {**with_interval("trajectory_error", mean, interval), "trajectory_error_max": err.max().item()}
trajectory_error.per_sample = True  # its values sample by sample: quantiles and paired comparisons (metrics.shape)
