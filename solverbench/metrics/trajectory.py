"""Trajectory error: per-sample RMS distance to the reference endpoint from the same noise."""
from __future__ import annotations

import torch

from solverbench.metrics.context import MetricContext
from solverbench.registry import register_metric


def per_sample_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sqrt(mean over elements of (a - b)^2)`` for each sample, in float64."""
    diff = (a.double() - b.double()).flatten(1)
    return diff.pow(2).mean(dim=1).sqrt()


@register_metric("trajectory_error")
def trajectory_error(ctx: MetricContext) -> dict[str, float]:
    err = per_sample_rms(ctx.samples, ctx.reference)
    return {"trajectory_error": err.mean().item(), "trajectory_error_max": err.max().item()}
