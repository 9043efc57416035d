"""Quadrature rules on [0, 1] as data: nodes, weights and the degree they integrate exactly.

``integral_0^1 p(c) dc = sum_i w_i p(c_i)`` for every polynomial ``p`` of degree <= ``degree``.
The BA-solver takes an interval ``[t, t - H]`` as ``c in [0, 1]`` with ``c = 0`` at its start
(the anchor) and ``c = 1`` at its end, so a node ``c_i`` sits at time ``t - c_i H``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class QuadratureRule:
    """``name``: display name; ``nodes`` increasing in [0, 1]; ``weights`` summing to 1."""

    name: str
    nodes: tuple[float, ...]
    weights: tuple[float, ...]
    degree: int

    def __post_init__(self):
        if len(self.nodes) != len(self.weights) or not self.nodes:
            raise ValueError(f"{self.name}: {len(self.nodes)} nodes but {len(self.weights)} weights")
        if any(b <= a for a, b in zip(self.nodes, self.nodes[1:])) or self.nodes[0] < 0 or self.nodes[-1] > 1:
            raise ValueError(f"{self.name}: nodes must increase within [0, 1], got {self.nodes}")
        if abs(sum(self.weights) - 1.0) > 1e-12:
            raise ValueError(f"{self.name}: weights must sum to 1, got {sum(self.weights)}")

    @property
    def has_endpoints(self) -> bool:
        """Whether the rule uses both ends of the interval (Lobatto-type rules)."""
        return self.nodes[0] == 0.0 and self.nodes[-1] == 1.0

    @property
    def interior(self) -> tuple[float, ...]:
        """The nodes strictly inside (0, 1)."""
        return tuple(c for c in self.nodes if 0.0 < c < 1.0)

    def combine(self, values):
        """``sum_i w_i values_i``: the rule applied to values at its nodes."""
        if len(values) != len(self.weights):
            raise ValueError(f"{self.name} takes {len(self.weights)} values, got {len(values)}")
        return sum(w * v for w, v in zip(self.weights, values))

LOBATTO_A = (1.0 - 1.0 / math.sqrt(5.0)) / 2.0  # ~0.2764, the 4-point Gauss-Lobatto interior node


def two_interior_node_rule(a: float, name: str | None = None) -> QuadratureRule:
    """Nodes ``0, a, 1 - a, 1``; with ``s = 1 - 2a`` the inner weight is ``1 / (3 (1 - s^2))``
    and the outer ``1/2 - inner`` (exact for cubics; for quintics at the Lobatto ``a``)."""
    a = float(a)
    if not 0.0 < a < 0.5:
        raise ValueError(f"the two-interior-node rule needs 0 < a < 1/2, got a = {a}")
    s = 1.0 - 2.0 * a
    inner = 1.0 / (3.0 * (1.0 - s * s))
    outer = 0.5 - inner
    degree = 5 if abs(a - LOBATTO_A) < 1e-12 else 3
    return QuadratureRule(name or f"two-node(a={a:g})", (0.0, a, 1.0 - a, 1.0), (outer, inner, inner, outer), degree)


TRAPEZOID = QuadratureRule("trapezoid", (0.0, 1.0), (0.5, 0.5), degree=1)  # 2-point Lobatto
LOBATTO3 = QuadratureRule("lobatto3", (0.0, 0.5, 1.0), (1 / 6, 4 / 6, 1 / 6), degree=3)
LOBATTO4 = two_interior_node_rule(LOBATTO_A, "lobatto4")  # weights 1/12, 5/12, 5/12, 1/12
LOBATTO5 = QuadratureRule(
    "lobatto5",
    (0.0, 0.5 - math.sqrt(21.0) / 14.0, 0.5, 0.5 + math.sqrt(21.0) / 14.0, 1.0),
    (1 / 20, 49 / 180, 32 / 90, 49 / 180, 1 / 20),
    degree=7,
)
SIMPSON13 = QuadratureRule("simpson1/3", LOBATTO3.nodes, LOBATTO3.weights, degree=3)
SIMPSON38 = two_interior_node_rule(1.0 / 3.0, "simpson3/8")  # weights 1/8, 3/8, 3/8, 1/8


def _gauss_legendre(n: int) -> QuadratureRule:
    """n-point Gauss-Legendre on [0, 1] (closed forms, mapped from [-1, 1]); degree 2n - 1."""
    on_pm1 = {
        1: ((0.0,), (2.0,)),
        2: ((-1 / math.sqrt(3.0), 1 / math.sqrt(3.0)), (1.0, 1.0)),
        3: ((-math.sqrt(0.6), 0.0, math.sqrt(0.6)), (5 / 9, 8 / 9, 5 / 9)),
    }
    if n in on_pm1:
        x, w = on_pm1[n]
    elif n == 4:
        r = 2.0 / 7.0 * math.sqrt(6.0 / 5.0)
        inner, outer = math.sqrt(3 / 7 - r), math.sqrt(3 / 7 + r)
        w_in, w_out = (18 + math.sqrt(30.0)) / 36, (18 - math.sqrt(30.0)) / 36
        x, w = (-outer, -inner, inner, outer), (w_out, w_in, w_in, w_out)
    else:  # n == 5
        r = 2.0 * math.sqrt(10.0 / 7.0)
        inner, outer = math.sqrt(5 - r) / 3, math.sqrt(5 + r) / 3
        w_in, w_out = (322 + 13 * math.sqrt(70.0)) / 900, (322 - 13 * math.sqrt(70.0)) / 900
        x, w = (-outer, -inner, 0.0, inner, outer), (w_out, w_in, 128 / 225, w_in, w_out)
    return QuadratureRule(f"gauss-legendre{n}", tuple((xi + 1) / 2 for xi in x), tuple(wi / 2 for wi in w), 2 * n - 1)


GAUSS_LEGENDRE = {n: _gauss_legendre(n) for n in range(1, 6)}
GAUSS_LOBATTO = {2: TRAPEZOID, 3: LOBATTO3, 4: LOBATTO4, 5: LOBATTO5}


def gauss_legendre(n: int) -> QuadratureRule:
    """The n-point Gauss-Legendre rule on [0, 1], n in 1..5."""
    if n not in GAUSS_LEGENDRE:
        raise ValueError(f"Gauss-Legendre rules have 1 to 5 nodes here, got {n!r}")
    return GAUSS_LEGENDRE[n]


BI_ANCHOR_FAMILIES = ("lobatto", "simpson")


def bi_anchor_rule(family: str | None = "lobatto", nodes: int = 2, a: float | None = None) -> QuadratureRule:
    """The end-point rule of the bi-anchor scheme with ``nodes`` = m interior nodes (paper Table 3).

    m = 0: trapezoid; m = 1: 3-point Lobatto = Simpson 1/3; m = 2: 4-point Lobatto
    (``lobatto``), Simpson 3/8 (``simpson``) or the two-interior-node rule at a custom ``a``.
    """
    if nodes not in (0, 1, 2):
        raise ValueError(f"nodes (m, the interior nodes of the bi-anchor rule) must be 0, 1 or 2, got {nodes!r}")
    if a is not None:
        if nodes != 2:
            raise ValueError(f"a custom node a = {a} needs nodes = 2 (nodes a and 1 - a), got nodes = {nodes}")
        return two_interior_node_rule(a)
    if family not in BI_ANCHOR_FAMILIES:
        raise ValueError(f"rule must be one of {', '.join(BI_ANCHOR_FAMILIES)} (or give a custom a), got {family!r}")
    if nodes == 0:
        return TRAPEZOID
    if nodes == 1:
        return LOBATTO3 if family == "lobatto" else SIMPSON13
    return LOBATTO4 if family == "lobatto" else SIMPSON38
