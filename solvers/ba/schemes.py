"""The BA-solver's two sampling schemes, each one backbone call (one NFE) per interval.

Symbols as in BA_SOLVER.md: an interval ``[t, t - H]``, its rule's nodes ``c`` on [0, 1]
(a node ``c`` sits at time ``t - c H``) and weights ``w``; ``v0`` the anchor velocity at the
start, ``v1`` the terminal anchor.  For the 4-point rules ``c = (0, a, 1 - a, 1)`` and
``w = (w0, w1, w2, w3)``.
"""
from __future__ import annotations

import torch

from solverbench.field import VelocityField
from solvers.ba.node_velocities import Anchor, NodeVelocities
from solvers.ba.quadrature import QuadratureRule


def bi_anchor_interval(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                       anchor0: Anchor, t: float, H: float, last: bool) -> tuple[torch.Tensor, Anchor | None]:
    """One interval of the bi-anchor scheme (BA_SOLVER.md, "Sampling: bi-anchor").

    1. forward probe from ``(x, v0, t)`` at ``a H, (1 - a) H, H``: ``f_a, f_b, f_end``;
    2. predictor ``x_pred = x - H (w0 v0 + w1 f_a + w2 f_b + w3 f_end)`` (returned on the last interval);
    3. terminal anchor ``v1 = v(x_pred, t - H)``: the interval's only NFE;
    4. backward refinement from ``(x_pred, v1, t - H)`` of the nodes nearer the terminal
       (``c >= 1/2``; offset ``-(1 - c) H``): ``g_b``; nodes nearer the start keep ``f``;
    5. corrector ``x <- x - H (w0 v0 + w1 f_a + w2 g_b + w3 v1)``.
    Returns the new state and ``v1``'s raw velocities, the next interval's ``v0``.
    """
    if not rule.has_endpoints:
        raise ValueError(f"the bi-anchor scheme needs a rule with both end points as nodes, not {rule.name}")
    interior = rule.interior
    v0 = field.guide(*anchor0, t)
    *f, f_end = nodes(field, x, anchor0, t, [c * H for c in interior] + [H])  # f_a, f_b, f_end
    x_pred = x - H * rule.combine([v0, *f, f_end])
    if last:
        return x_pred, None
    anchor1 = field.raw(x_pred, t - H, both=True)
    v1 = field.guide(*anchor1, t - H)
    near_end = [i for i, c in enumerate(interior) if c >= 0.5]  # proximity-based partition
    g = nodes(field, x_pred, anchor1, t - H, [-(1 - interior[i]) * H for i in near_end])  # g_b
    for i, g_i in zip(near_end, g):
        f[i] = g_i
    return x - H * rule.combine([v0, *f, v1]), anchor1


def bi_anchor(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
              grid: torch.Tensor) -> torch.Tensor:
    """N intervals for N NFE: ``v0`` at t = 1, then each interval's ``v1`` is the next ``v0``."""
    n = len(grid) - 1
    anchor = field.raw(x, float(grid[0]), both=True)
    for k in range(n):
        t, t_next = float(grid[k]), float(grid[k + 1])
        x, anchor = bi_anchor_interval(field, nodes, rule, x, anchor, t, t - t_next, last=k == n - 1)
    return x


def bi_anchor_local_step(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                         t: float, t_next: float) -> torch.Tensor:
    """One mid-run interval (predictor and corrector) from an exact state with an exact ``v0``,
    for the local-truncation-error study: 2 NFE (``v0`` and ``v1``)."""
    anchor0 = field.raw(x, t, both=True)
    x, _ = bi_anchor_interval(field, nodes, rule, x, anchor0, t, t - t_next, last=False)
    return x


def single_anchor(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                  grid: torch.Tensor) -> torch.Tensor:
    """BA_SOLVER.md, "Sampling: single-anchor": per interval ``v0 = v(x, t)`` (1 NFE), node
    velocities from ``(x, v0, t)`` at ``c_i H``, and ``x <- x - H sum_i w_i v_i``.  An interval
    is one step: under the ``step`` guidance decision its nodes are guided as its anchor is
    (the authors' sampler)."""
    for k in range(len(grid) - 1):
        t, t_next = float(grid[k]), float(grid[k + 1])
        H = t - t_next
        with field.at_step(t):
            anchor0 = field.raw(x, t, both=True)
            x = x - H * rule.combine(nodes(field, x, anchor0, t, [c * H for c in rule.nodes]))
    return x
