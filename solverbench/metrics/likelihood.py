"""Exact mean data log-likelihood of the samples, for backbones with a known density."""
from __future__ import annotations

from typing import Any, Optional

from solverbench.guidance import Guidance
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.registry import register_metric
from solverbench.uncertainty import mean_interval, with_interval


def _applies(backbone: Any, guidance: Guidance) -> Optional[str]:
    if getattr(backbone, "log_prob", None) is None:
        return "the backbone has no exact log-density"
    if guidance.on:
        return "the data log-likelihood is the target only without guidance (cfg 1)"
    return None


@register_metric("log_likelihood")
def log_likelihood(ctx: MetricContext) -> dict[str, float]:
    """Mean exact data log-density log p(x | y) of the samples; only at cfg 1 (guidance changes the target)."""
    why = _applies(ctx.backbone, ctx.guidance)
    if why:
        raise NotApplicable(why)
    values = ctx.backbone.log_prob(ctx.samples, ctx.labels)
    mean, interval = mean_interval(values, seed=ctx.seed, name="log_likelihood", strata=ctx.labels, memo=ctx.memo)
    ctx.keep("per_sample", "log_likelihood", values)
    return with_interval("log_likelihood", mean, interval)


log_likelihood.applies = _applies
log_likelihood.per_sample = True  # its values sample by sample: quantiles and paired comparisons (metrics.shape)
