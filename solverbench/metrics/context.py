"""What a metric sees: the samples of one cell and lazy access to what they are compared with.

A metric is a function ``metric(ctx: MetricContext) -> dict[str, float]`` registered with
``@register_metric(name)``.  It raises ``NotApplicable`` where it has no meaning (the exact
likelihood of a backbone that has none, say); the runner then leaves its columns empty
and records why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Optional

import torch


class NotApplicable(Exception):
    """The metric has no meaning for this cell; the message says why."""


@dataclass
class MetricContext:
    samples: torch.Tensor
    labels: Optional[torch.Tensor]
    backbone: Any
    cfg_scale: float
    cfg_interval: tuple[float, float]
    seed: int
    reference_fn: Callable[[], torch.Tensor]
    data_fn: Callable[[int], tuple[torch.Tensor, Optional[torch.Tensor]]]
    extras: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def reference(self) -> torch.Tensor:
        """Endpoints of the reference solve from the same noise, labels and guidance."""
        return self.reference_fn()

    def data(self, n: int):
        """``n`` fresh data samples ``(x0, y)`` with this cell's labels where it has them."""
        return self.data_fn(n)
