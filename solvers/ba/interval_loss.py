"""``solve_loss: endpoints``: the solve questions' loss on the states a bi-anchor interval builds from the SideNet's
answers, not on each answer alone.

An interval ``[t, t - H]`` of a bi-anchor solve (schemes.py) turns node velocities into a state with its rule's
weights ``w``: on every interval but the last the corrector ``x - H (w0 v0 + w1 f_a + w2 g_b + w3 v1)``, on the
last the predictor ``x - H (w0 v0 + w1 f_a + w2 f_b + w3 f_end)``.  On an exact trajectory (``x``, ``v0`` and
``v1`` exact) the SideNet's share of that state's error is ``H`` times

    r = sum_i w_i (v_hat_i - u_i)

over the nodes it answers, ``u_i`` the exact velocity there.  ``solve_loss: nodes`` (the default) regresses each
``v_hat_i`` on its ``u_i`` alone, all alike; ``endpoints`` regresses ``r`` on 0, per interval: the answers the state
does not use (an inner interval's forward ``f_b`` and ``f_end``, which its corrector replaces) are not asked, each
answer counts with its weight (the Lobatto predictor's inner nodes 5/12, its end 1/12), and node errors that
cancel in the sum cost nothing.  The effect of the predictor's error on ``v1 = v(x_pred)`` (second order in ``H``)
and the quadrature's own error (no SideNet can remove it) are left out.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, TypeVar

import torch

from solverbench.guidance import cfg_combine
from solvers.ba.quadrature import QuadratureRule
from solvers.ba.schemes import check_bi_anchor_rule, probe_offsets, refined_backward, refinement_offsets


class Term(NamedTuple):
    """One SideNet answer an interval's state is built from: the velocity at ``t - h`` asked from the anchor at ``t``,
    weighted ``weight`` in the state."""

    t: float
    h: float
    weight: float


def interval_terms(rule: QuadratureRule, grid: Sequence[float]) -> list[list[Term]]:
    """Per interval of a bi-anchor solve over ``grid`` (decreasing), the answers its state is built from: the
    corrector's (forward nodes ``c < 1/2`` from ``t``, backward nodes ``c >= 1/2`` from ``t - H``) but on the last
    interval, the predictor's (every forward node and the end)."""
    check_bi_anchor_rule(rule)
    interior = rule.interior
    inner_weights = rule.weights[1:-1]
    last = len(grid) - 2
    intervals = []
    for k, (t, s) in enumerate(zip(grid, grid[1:])):
        H = t - s
        if k == last:
            intervals.append([Term(t, h, w) for h, w in zip(probe_offsets(rule, H), rule.weights[1:])])
            continue
        forward = [Term(t, c * H, w) for c, w in zip(interior, inner_weights) if not refined_backward(c)]
        backward = [Term(s, h, w) for h, w in zip(refinement_offsets(rule, H),
                                                  [w for c, w in zip(interior, inner_weights) if refined_backward(c)])]
        intervals.append(forward + backward)
    return intervals


Drawn = TypeVar("Drawn", bound=tuple)


class DrawnIntervals(NamedTuple):
    """Drawn intervals as flat rows, one per answer: the trajectory, the anchor's and the answer's time index, ``t``,
    ``h``, the answer's weight and the drawn interval it belongs to; and per drawn interval, whether it is its solve's
    first and whether its last."""

    trajectory: torch.Tensor
    anchor: torch.Tensor
    answer: torch.Tensor
    t: torch.Tensor
    h: torch.Tensor
    weight: torch.Tensor
    interval: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor


def on_device(drawn: Drawn, device: str | torch.device) -> Drawn:
    """Drawn questions or intervals (a named tuple of tensors) moved to ``device``."""
    return type(drawn)(*(field.to(device) for field in drawn))


class SolveIntervals:
    """The intervals of the solves over ``grids`` (one per NFE) as index tables into ``times`` (every time their
    answers start from or ask about, rounded to 12 digits)."""

    def __init__(self, grids: Sequence[Sequence[float]], times: Sequence[float], rule: QuadratureRule):
        index = {t: i for i, t in enumerate(times)}
        per_grid = [interval_terms(rule, grid) for grid in grids]
        self.count = torch.tensor([len(intervals) for intervals in per_grid])
        shape = (len(grids), int(self.count.max()), max(len(terms) for ivs in per_grid for terms in ivs))
        self.anchor = torch.zeros(shape, dtype=torch.long)
        self.answer = torch.zeros(shape, dtype=torch.long)
        self.t, self.h, self.weight = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)  # weight 0: padding
        self.first = torch.zeros(shape[:2], dtype=torch.bool)
        self.last = torch.zeros(shape[:2], dtype=torch.bool)
        for k, intervals in enumerate(per_grid):
            for j, terms in enumerate(intervals):
                self.first[k, j], self.last[k, j] = j == 0, j == len(intervals) - 1
                for r, (t, h, w) in enumerate(terms):
                    self.anchor[k, j, r], self.answer[k, j, r] = index[round(t, 12)], index[round(t - h, 12)]
                    self.t[k, j, r], self.h[k, j, r], self.weight[k, j, r] = t, h, w

    def draw(self, n: int, per_trajectory: int, generator: torch.Generator) -> DrawnIntervals:
        """``per_trajectory`` intervals for each of ``n`` trajectories, from the solve of an NFE drawn per trajectory,
        each interval of it equally likely."""
        nfe = torch.randint(len(self.count), (n, 1), generator=generator)
        pick = (torch.rand(n, per_trajectory, generator=generator) * self.count[nfe]).long()
        trajectory = torch.arange(n).repeat_interleave(per_trajectory)
        nfe, pick = nfe.expand(-1, per_trajectory).flatten(), pick.flatten()
        weight = self.weight[nfe, pick]
        used = weight > 0
        interval = torch.arange(len(nfe)).unsqueeze(1).expand_as(weight)[used]
        return DrawnIntervals(trajectory[interval], self.anchor[nfe, pick][used], self.answer[nfe, pick][used],
                              self.t[nfe, pick][used], self.h[nfe, pick][used], weight[used], interval,
                              self.first[nfe, pick], self.last[nfe, pick])


def endpoint_residuals(S: Any, x: torch.Tensor, drawn: DrawnIntervals, v: torch.Tensor, target: torch.Tensor,
                       y: Optional[torch.Tensor]) -> torch.Tensor:
    """``r = sum_i w_i (v + S(x, v, t, h, y) - v')_i`` per drawn interval, the sum over its rows: ``x``, ``v`` the
    anchors' states and velocities, ``target`` the exact velocities at the answers' times."""
    terms = drawn.weight.view(-1, *[1] * (x.dim() - 1)) * (v + S(x, v, drawn.t, drawn.h, y) - target)
    return terms.new_zeros(len(drawn.first), *terms.shape[1:]).index_add(0, drawn.interval, terms)


def endpoint_loss(S: Any, x: torch.Tensor, drawn: DrawnIntervals,
                  answers: Sequence[tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]],
                  weight: Optional[torch.Tensor] = None, guidance: Optional[float] = None) -> torch.Tensor:
    """``|| r ||^2`` (``endpoint_residuals``) averaged over the drawn intervals (a mean weighted by ``weight``, one
    per interval, where given) and then over the branches; ``answers``: per branch ``(y, v, v')`` at the rows.
    With ``guidance`` w (two branches, conditional first): ``|| r_u + w (r_c - r_u) ||^2`` instead, the residual of
    the state a guided solve builds from the guided answers ``u + w (c - u)`` (``solve_target: guided``; ``r`` is
    linear in the answers' errors)."""
    def mean(r: torch.Tensor) -> torch.Tensor:
        error = r.pow(2).flatten(1).mean(1)
        return error.mean() if weight is None else (error * weight).sum() / weight.sum()
    residuals = [endpoint_residuals(S, x, drawn, v, target, y) for y, v, target in answers]
    if guidance is not None:
        return mean(cfg_combine(*residuals, guidance))
    return torch.stack([mean(r) for r in residuals]).mean()
