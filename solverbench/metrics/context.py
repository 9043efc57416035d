"""What a metric sees: the samples of one cell and lazy access to what they are compared with.

A metric is a function ``metric(ctx: MetricContext) -> dict[str, float]`` registered with
``@register_metric(name)``.  Each value it reports comes with its 95% interval
(``solverbench.uncertainty``: ``name``, ``name_ci_low``, ``name_ci_high``); a metric that
compares with data also reports its data-versus-data noise floor (``name_floor`` and its
interval).  It raises ``NotApplicable`` where it has no meaning (the exact likelihood of a
backbone that has none, say); the study then leaves its columns empty and records why.

A metric may declare ``fn.applies(backbone, guidance) -> None or reason``: the grid is
refused before any work when a metric applies to none of its cells.

A metric also ``keep``s what a paired comparison with the other cells of its table needs: a
per-sample metric its values sample by sample, a resampled one its bootstrap replicates
(``solverbench.paired_arrays``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Optional

import numpy as np
import torch

from solverbench.guidance import Guidance
from solverbench.paired_arrays import KINDS
from solverbench.uncertainty import DEFAULT_RESAMPLES


class NotApplicable(Exception):
    """The metric has no meaning for this cell; the message says why."""


@dataclass
class MetricContext:
    samples: torch.Tensor
    labels: Optional[torch.Tensor]
    backbone: Any
    guidance: Guidance
    seed: int
    reference_fn: Callable[[], torch.Tensor]
    data_fn: Callable[..., tuple[torch.Tensor, Optional[torch.Tensor]]]  # (n, draw=0) -> (x0, y)
    extras: dict[str, Any] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)  # shared by the cells of one run: noise floors, data
    # draws and their sorted projections, bootstrap draws
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # "KIND/COLUMN" -> values, see keep

    def keep(self, kind: str, column: str, values: Any) -> None:
        """Keep metric column ``column``'s ``values`` for paired comparisons: ``kind`` ``"per_sample"`` (one
        value per sample, in sample order) or ``"bootstrap"`` (the replicates, in draw order)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        values = values.detach().double().cpu().numpy() if isinstance(values, torch.Tensor) else values
        self.kept[f"{kind}/{column}"] = np.asarray(values, dtype=np.float64).reshape(-1)

    @cached_property
    def reference(self) -> torch.Tensor:
        """Endpoints of the reference solve from the same noise, labels and guidance."""
        return self.reference_fn()

    def data(self, n: int, draw: int = 0):
        """``n`` fresh data samples ``(x0, y)`` with this cell's labels where it has them.

        ``draw`` 0 is the set the cell's samples are compared with (the same for every
        solver of a seed); draw 1 is an independent second set, for the noise floor.
        """
        return self.data_fn(n, draw)

    @property
    def resamples(self) -> int:
        """Bootstrap draws behind each interval (metric option ``bootstrap_resamples``)."""
        return int((self.extras.get("metric_options") or {}).get("bootstrap_resamples", DEFAULT_RESAMPLES))

    def memoised(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run for ``key`` (a value every cell of the run shares)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]
