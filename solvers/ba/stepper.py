"""The bi-anchor scheme one interval at a time, with each interval's embedded error estimate.

Every inner interval computes a predictor (B3, the forward probe's quadrature) and a corrector (B6, the
bi-anchor quadrature) of the same new state from one NFE; their difference estimates the interval's local
error at no extra cost.  The last interval returns its predictor and makes no estimate (docs/ba-solver.md).
Walked along a fixed grid the stepper gives ``bi_anchor``'s samples: the same intervals in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from solverbench.field import VelocityField
from solverbench.solver import Stepper, error_estimate
from solvers.ba.node_velocities import Anchor, NodeVelocities
from solvers.ba.quadrature import QuadratureRule
from solvers.ba.schemes import bi_anchor_step, cfg_anchor

ESTIMATE_ORDER = 2  # the predictor's error, and so the estimate, shrinks as H^2 (a SideNet's answers err by O(H))


@dataclass(frozen=True)
class BiAnchorStepper(Stepper):
    """The bi-anchor scheme standing at ``(x, t)`` with the anchor velocities there (None after a last interval)."""

    field: VelocityField
    nodes: NodeVelocities
    rule: QuadratureRule
    x: torch.Tensor
    t: float
    anchor: Optional[Anchor]
    order: int = ESTIMATE_ORDER

    @classmethod
    def start(cls, field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
              t: float) -> "BiAnchorStepper":
        """At ``(x, t)``, its anchor evaluated there (one NFE; its unconditional half wherever the field guides at
        all, since the interval it anchors is not chosen yet)."""
        return cls(field, nodes, rule, x, float(t), cfg_anchor(field, x, float(t), None))

    def step(self, t_next: float, left: Optional[int] = None) -> tuple["BiAnchorStepper", Optional[torch.Tensor]]:
        if self.anchor is None:
            raise ValueError("the bi-anchor stepper took its last interval; it steps no further")
        t_next, last = float(t_next), left == 1
        H = self.t - t_next
        state, anchor, predicted = bi_anchor_step(self.field, self.nodes, self.rule, self.x, self.anchor, self.t, H,
                                                  last, next_times=None)
        moved = BiAnchorStepper(self.field, self.nodes, self.rule, state, t_next, anchor, self.order)
        return moved, None if last else error_estimate(predicted, state)
