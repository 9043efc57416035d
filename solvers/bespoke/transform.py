"""The scale-time transformation theta of a Bespoke solver and its nodes (Shaul et al., ICLR 2024,
"Bespoke Solvers for Generative Flow Models", sections 2.1-2.2).

Time conventions.  The paper's flow runs from noise at time 0 to data at time 1.  solverbench's
runs from noise at t = 1 to data at t = 0 (``x_t = (1 - t) x0 + t eps``, ``dx/dt = u_t(x)``).
The transformation's own time r runs, as in the paper, from r = 0 (noise) to r = 1 (data); its
time map here is ``t_r = 1 - t^paper_r``, falling from ``t_0 = 1`` to ``t_1 = 0``, so
``tdot_r = dt_r/dr < 0`` where the paper's is positive.  The transformed path
``xbar(r) = s_r x(t_r)`` then obeys the paper's equation unchanged,

    dxbar/dr = ubar_r(xbar) = (sdot_r / s_r) xbar + tdot_r s_r u_{t_r}(xbar / s_r),

with ``s_0 = 1`` (``xbar(0) = x(1)``, the noise) and the sample ``x(0) = xbar(1) / s_1``.

Nodes.  The base solver (RK1 = Euler, RK2 = midpoint) takes N steps of h = 1/N on the uniform r
grid ``r_k = k h``; an RK2 step also evaluates at ``r_k + h/2``.  A budget of m NFE therefore has
one node per evaluation plus the end r = 1: nodes ``j = 0..m``.  ``Layout`` says which node
starts each step and how many evaluations it spends (an RK2 budget that is odd ends with one
transformed RK1 step, with its own nodes).  theta gives at every node

    t_j   (t_0 = 1 > t_1 > ... > t_m = 0),   tdot_j < 0   (j < m),
    s_j > 0 (s_0 = 1),                         sdot_j       (j < m),

through the raw parameters (4m - 1 free numbers; for N steps 4N - 1 with RK1, 8N - 1 with RK2,
the paper's counts):

    t_j    = 1 - sum_{l<j} softmax(xi_1, ..., xi_{m-1}, 0)_l     (t_m = 0 exactly)
    tdot_j = -exp(tau_j),   s_j = exp(sigma_j) (j >= 1),   sdot_j = rho_j.

The paper uses normalised absolute values for the time increments and exp for s; the softmax
here keeps every increment strictly positive (t strictly decreasing) with the ends fixed.
``Transformation.identity`` (xi from the r increments, tau = sigma = rho = 0) is
``t_r = 1 - r, s_r = 1``: the base solver itself on the uniform grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Layout:
    """How a budget is spent: ``stages[k]`` evaluations (1 or 2) on step k, on the uniform r grid."""

    stages: tuple[int, ...]

    def __post_init__(self):
        stages = tuple(int(c) for c in self.stages)
        if not stages or any(c not in (1, 2) for c in stages):
            raise ValueError(f"a Bespoke layout takes steps of 1 (RK1) or 2 (RK2) evaluations, got {self.stages!r}")
        object.__setattr__(self, "stages", stages)

    @property
    def nfe(self) -> int:
        return sum(self.stages)

    @property
    def intervals(self) -> int:
        return len(self.stages)

    @property
    def h(self) -> float:
        """The base solver's step in r."""
        return 1.0 / self.intervals

    def steps(self) -> Iterator[tuple[int, int]]:
        """``(first node, evaluations)`` of every step, in order; step k ends at node ``first + evaluations``."""
        node = 0
        for stages in self.stages:
            yield node, stages
            node += stages

    def node_r(self) -> list[float]:
        """r at every node: the step starts ``k h``, the RK2 midpoints ``k h + h / 2``, and the end 1."""
        r = []
        for k, stages in enumerate(self.stages):
            r += [k * self.h, (k + 0.5) * self.h][:stages]
        return r + [1.0]


@dataclass(frozen=True)
class Nodes:
    """theta at the nodes, in solverbench's time (see the module docstring): ``t``, ``s`` at every node
    (m + 1), ``tdot``, ``sdot`` at the evaluation nodes (m).  Tensors while training; floats for sampling."""

    t: Sequence[Any]
    tdot: Sequence[Any]
    s: Sequence[Any]
    sdot: Sequence[Any]

    def floats(self) -> "Nodes":
        return Nodes(*([float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in values]
                       for values in (self.t, self.tdot, self.s, self.sdot)))


class Transformation(nn.Module):
    """theta of one budget: the raw parameters (xi, tau, sigma, rho), float64."""

    def __init__(self, layout: Layout):
        super().__init__()
        self.layout = layout
        m = layout.nfe
        self.time_logits = nn.Parameter(torch.zeros(m - 1, dtype=torch.float64))  # xi_1..xi_{m-1} (xi_m = 0)
        self.log_speed = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # tau: tdot_j = -exp(tau_j)
        self.log_scale = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # sigma: s_j = exp(sigma_j), j >= 1
        self.scale_rate = nn.Parameter(torch.zeros(m, dtype=torch.float64))  # rho: sdot_j
        with torch.no_grad():
            self.time_logits.copy_(identity_logits(layout))

    @classmethod
    def identity(cls, layout: Layout) -> "Transformation":
        """t_r = 1 - r, s_r = 1: the base solver on the uniform grid (the paper's starting point)."""
        return cls(layout)

    def parameter_count(self) -> int:
        """Free scalar parameters: 4m - 1 for a budget of m NFE."""
        return sum(p.numel() for p in self.parameters())

    def nodes(self) -> Nodes:
        increments = torch.softmax(torch.cat([self.time_logits, self.time_logits.new_zeros(1)]), dim=0)
        one = self.time_logits.new_ones(1)
        t = torch.cat([one, 1.0 - torch.cumsum(increments, dim=0)[:-1], self.time_logits.new_zeros(1)])
        s = torch.cat([one, torch.exp(self.log_scale)])
        return Nodes(t=t, tdot=-torch.exp(self.log_speed), s=s, sdot=self.scale_rate)


def identity_logits(layout: Layout) -> torch.Tensor:
    """xi whose softmax is the r increments (the last one's logit fixed at 0): t_r = 1 - r at the nodes."""
    r = layout.node_r()
    increments = [b - a for a, b in zip(r[:-1], r[1:])]
    return torch.tensor([math.log(d / increments[-1]) for d in increments[:-1]], dtype=torch.float64)
