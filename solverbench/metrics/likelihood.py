"""Exact mean data log-likelihood of the samples, for backbones with a known density."""
from __future__ import annotations

from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.registry import register_metric


@register_metric("log_likelihood")
def log_likelihood(ctx: MetricContext) -> dict[str, float]:
    """Mean ``log p(x | y)`` under the data density; only at cfg 1 (guidance changes the target)."""
    log_prob = getattr(ctx.backbone, "log_prob", None)
    if log_prob is None:
        raise NotApplicable("the backbone has no exact log-density")
    if ctx.cfg_scale != 1.0:
        raise NotApplicable("the data log-likelihood is the target only without guidance (cfg 1)")
    return {"log_likelihood": log_prob(ctx.samples, ctx.labels).mean().item()}
