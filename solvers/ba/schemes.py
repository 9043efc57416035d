"""The BA-solver's two sampling schemes, each one backbone call (one NFE) per interval.

Symbols as in docs/ba-solver.md ("Conventions"): an interval ``[t, t - H]``, its rule's nodes ``c`` on [0, 1]
(a node ``c`` sits at time ``t - c H``) and weights ``w``; ``v0`` the anchor velocity at the
start, ``v1`` the terminal anchor.  For the 4-point rules ``c = (0, a, 1 - a, 1)`` and
``w = (w0, w1, w2, w3)``.

With guidance an anchor's unconditional velocity is evaluated (in the same NFE) only where
guidance applies at some time its velocities are used for (``cfg_anchor``): its own time, the
node times of the forward probe it anchors and, as an interval's terminal anchor, those of
the backward refinement.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from solverbench.field import VelocityField
from solverbench.plan import time_values
from solvers.ba.node_velocities import Anchor, NodeVelocities
from solvers.ba.quadrature import QuadratureRule


def cfg_anchor(field: VelocityField, x: torch.Tensor, t: float, used_at: Optional[Sequence[float]]) -> Anchor:
    """``(v_c, v_u)`` at ``(x, t)``: one NFE; ``v_u`` only if guidance applies at ``t`` or at a time of
    ``used_at`` (the times its velocities are carried to); ``used_at`` None (not known yet: the next interval
    is still to be chosen): wherever the field guides at all, which changes no result."""
    if used_at is None:
        return field.raw(x, t, both=True)
    return field.raw(x, t, both=any(field.guided_at(s) for s in used_at))


def node_times(t: float, offsets: Sequence[float]) -> list[float]:
    """The times ``t - h`` of the nodes at ``offsets`` from an anchor at ``t``, computed as the node
    sources compute them (so a guidance decision made on them is theirs to the last bit)."""
    return [t - h for h in offsets]


def probe_offsets(rule: QuadratureRule, H: float) -> list[float]:
    """The forward probe's offsets ``a H, (1 - a) H, H``."""
    return [c * H for c in rule.interior] + [H]


def refined_backward(c: float) -> bool:
    """Whether the backward refinement from the terminal anchor answers the node ``c`` (nearer the terminal:
    ``c >= 1/2``); the nodes nearer the start keep the forward probe's answer (proximity-based partition)."""
    return c >= 0.5


def refinement_offsets(rule: QuadratureRule, H: float) -> list[float]:
    """The backward refinement's offsets ``-(1 - c) H`` of the nodes it answers (``refined_backward``)."""
    return [-(1 - c) * H for c in rule.interior if refined_backward(c)]


def check_bi_anchor_rule(rule: QuadratureRule) -> None:
    """The bi-anchor scheme anchors both ends of an interval: its rule must have them as nodes."""
    if not rule.has_endpoints:
        raise ValueError(f"the bi-anchor scheme needs a rule with both end points as nodes, not {rule.name}")


class BiAnchorInterval(NamedTuple):
    """What one interval of the bi-anchor scheme gives: the state it carries on (the corrector's; the
    predictor's on a last interval), the terminal anchor (None on a last interval) and its predictor."""

    state: torch.Tensor
    anchor: Optional[Anchor]
    predictor: torch.Tensor


def bi_anchor_interval(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                       anchor0: Anchor, t: float, H: float, last: bool, next_times: Optional[Sequence[float]] = ()
                       ) -> tuple[torch.Tensor, Anchor | None]:
    """One interval of the bi-anchor scheme: its new state and terminal anchor (``bi_anchor_step``)."""
    state, anchor1, _ = bi_anchor_step(field, nodes, rule, x, anchor0, t, H, last, next_times)
    return state, anchor1


def bi_anchor_step(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                   anchor0: Anchor, t: float, H: float, last: bool, next_times: Optional[Sequence[float]] = ()
                   ) -> BiAnchorInterval:
    """One interval of the bi-anchor scheme (docs/ba-solver.md, "The bi-anchor scheme").

    1. forward probe from ``(x, v0, t)`` at ``a H, (1 - a) H, H``: ``f_a, f_b, f_end``;
    2. predictor ``x_pred = x - H (w0 v0 + w1 f_a + w2 f_b + w3 f_end)`` (returned on the last interval);
    3. terminal anchor ``v1 = v(x_pred, t - H)``: the interval's only NFE (its unconditional half where
       guidance applies at its own time, its backward nodes or ``next_times``, where the next
       interval uses it; ``next_times`` None: the next interval is not chosen yet, see ``cfg_anchor``);
    4. backward refinement from ``(x_pred, v1, t - H)`` of the nodes nearer the terminal
       (``c >= 1/2``; offset ``-(1 - c) H``): ``g_b``; nodes nearer the start keep ``f``;
    5. corrector ``x <- x - H (w0 v0 + w1 f_a + w2 g_b + w3 v1)``.
    Returns the new state, ``v1``'s raw velocities (the next interval's ``v0``) and the predictor; the
    predictor minus the corrector is the interval's embedded error estimate.
    """
    check_bi_anchor_rule(rule)
    interior = rule.interior
    v0 = field.guide(*anchor0, t)
    *f, f_end = nodes(field, x, anchor0, t, probe_offsets(rule, H))  # f_a, f_b, f_end
    x_pred = x - H * rule.combine([v0, *f, f_end])
    if last:
        return BiAnchorInterval(x_pred, None, x_pred)
    back = refinement_offsets(rule, H)
    used_at = None if next_times is None else node_times(t - H, back) + list(next_times)
    anchor1 = cfg_anchor(field, x_pred, t - H, used_at)
    v1 = field.guide(*anchor1, t - H)
    near_end = [i for i, c in enumerate(interior) if refined_backward(c)]
    for i, g_i in zip(near_end, nodes(field, x_pred, anchor1, t - H, back)):  # g_b
        f[i] = g_i
    return BiAnchorInterval(x - H * rule.combine([v0, *f, v1]), anchor1, x_pred)


def bi_anchor(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
              grid: torch.Tensor) -> torch.Tensor:
    """N intervals for N NFE: ``v0`` at t = 1, then each interval's ``v1`` is the next ``v0``; the last interval
    returns its predictor."""
    x, anchor, t, H = bi_anchor_to_last_interval(field, nodes, rule, x, grid)
    return bi_anchor_interval(field, nodes, rule, x, anchor, t, H, last=True)[0]


def bi_anchor_to_last_interval(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                               grid: torch.Tensor) -> tuple[torch.Tensor, Anchor, float, float]:
    """``bi_anchor`` up to its last interval: the state there, its anchor (the previous interval's ``v1``, or
    ``v0`` at t = 1 for one interval), the interval's start ``t`` and size ``H``."""
    n = len(grid) - 1
    times = time_values(grid)
    starts = times[:n]
    sizes = [times[k] - times[k + 1] for k in range(n)]
    # where interval k's start anchor is used: its own time and its forward probe
    uses = [[starts[k]] + node_times(starts[k], probe_offsets(rule, sizes[k])) for k in range(n)]
    anchor = cfg_anchor(field, x, starts[0], uses[0])
    for k in range(n - 1):
        x, anchor = bi_anchor_interval(field, nodes, rule, x, anchor, starts[k], sizes[k], last=False,
                                       next_times=uses[k + 1])
    return x, anchor, starts[-1], sizes[-1]


def bi_anchor_local_step(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                         t: float, t_next: float) -> torch.Tensor:
    """One mid-run interval (predictor and corrector) from an exact state with an exact ``v0``,
    for the local-truncation-error study: 2 NFE (``v0`` and ``v1``)."""
    anchor0 = cfg_anchor(field, x, t, node_times(t, probe_offsets(rule, t - t_next)))
    x, _ = bi_anchor_interval(field, nodes, rule, x, anchor0, t, t - t_next, last=False)
    return x


def single_anchor(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                  grid: torch.Tensor) -> torch.Tensor:
    """docs/ba-solver.md, "The single-anchor scheme": per interval ``v0 = v(x, t)`` (1 NFE), node
    velocities from ``(x, v0, t)`` at ``c_i H``, and ``x <- x - H sum_i w_i v_i``.  An interval
    is one step: under the ``step`` guidance decision its nodes are guided as its anchor is
    (the authors' sampler)."""
    times = time_values(grid)
    for k in range(len(grid) - 1):
        t, t_next = times[k], times[k + 1]
        H = t - t_next
        with field.at_step(t):
            offsets = [c * H for c in rule.nodes]
            anchor0 = cfg_anchor(field, x, t, node_times(t, offsets))
            x = x - H * rule.combine(nodes(field, x, anchor0, t, offsets))
    return x
