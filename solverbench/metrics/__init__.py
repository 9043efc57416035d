"""The harness's own metrics; importing this package registers them."""
from solverbench.metrics import distribution, likelihood, trajectory  # noqa: F401
from solverbench.metrics.context import MetricContext, NotApplicable

__all__ = ["MetricContext", "NotApplicable"]
