"""The harness's own metrics; importing this package registers them."""
from solverbench.metrics import distribution, likelihood, trajectory  # noqa: F401
from solverbench.metrics import image  # noqa: F401  (FID, sFID, KID, precision/recall, IS)
from solverbench.metrics.context import MetricContext, NotApplicable

__all__ = ["MetricContext", "NotApplicable"]
