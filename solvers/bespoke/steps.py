"""The transformed RK1/RK2 steps, written in x, and the Lipschitz bound of each (Shaul et al., ICLR 2024,
section 2.2 and the bound of section 2.3).

The base solver steps ``xbar`` by h in r along ``ubar`` (transform.py); with ``x_j = xbar_j / s_j``
at the nodes a, (b,) e of the step, and u in solverbench's time (noise at t = 1):

RK1 (Euler), nodes a -> e:

    x_e = [ (s_a + h sdot_a) x_a + h tdot_a s_a u(x_a, t_a) ] / s_e

RK2 (midpoint), nodes a -> b (r + h/2) -> e:

    z   = [ (s_a + h/2 sdot_a) x_a + h/2 tdot_a s_a u(x_a, t_a) ] / s_b
    x_e = [ s_a x_a + h ( sdot_b z + tdot_b s_b u(z, t_b) ) ] / s_e

With t_r = 1 - r and s = 1 (tdot = -1, sdot = 0) these are Euler's and the midpoint method's steps
of ``dt = -h`` on the uniform grid.  Each is an affine map of x plus velocity terms, so with L_u a
Lipschitz constant of u its Lipschitz constant in x is at most

    RK1:  L = ( |s_a + h sdot_a| + h |tdot_a| s_a L_u ) / s_e
    RK2:  L = ( s_a + h ( |sdot_b| + |tdot_b| s_b L_u ) L_z ) / s_e,
          L_z = ( |s_a + h/2 sdot_a| + h/2 |tdot_a| s_a L_u ) / s_b.

The functions take node values as floats (sampling) or 0-d tensors (training: differentiable in theta).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from solvers.bespoke.transform import Layout, Nodes

Velocity = Callable[[torch.Tensor, Any], torch.Tensor]  # u(x, t): a VelocityField (one NFE per call)


def transformed_step(velocity: Velocity, x: torch.Tensor, nodes: Nodes, first: int, stages: int,
                     h: float) -> torch.Tensor:
    """One base-solver step on xbar from node ``first`` (``stages`` evaluations), as x in and x out."""
    t, tdot, s, sdot = nodes.t, nodes.tdot, nodes.s, nodes.sdot
    a = first
    u_a = velocity(x, t[a])
    if stages == 1:
        e = a + 1
        return ((s[a] + h * sdot[a]) * x + (h * tdot[a] * s[a]) * u_a) / s[e]
    if stages != 2:
        raise ValueError(f"a Bespoke step spends 1 (RK1) or 2 (RK2) evaluations, not {stages}")
    b, e = a + 1, a + 2
    z = ((s[a] + 0.5 * h * sdot[a]) * x + (0.5 * h * tdot[a] * s[a]) * u_a) / s[b]
    u_b = velocity(z, t[b])
    return (s[a] * x + h * (sdot[b] * z + (tdot[b] * s[b]) * u_b)) / s[e]


def step_lipschitz(nodes: Nodes, first: int, stages: int, h: float, lipschitz: float) -> Any:
    """The bound on the Lipschitz constant in x of the step from node ``first`` (see the module docstring)."""
    t_dot, s, s_dot = nodes.tdot, nodes.s, nodes.sdot
    a = first
    if stages == 1:
        return (abs(s[a] + h * s_dot[a]) + h * abs(t_dot[a]) * s[a] * lipschitz) / s[a + 1]
    b, e = a + 1, a + 2
    to_mid = (abs(s[a] + 0.5 * h * s_dot[a]) + 0.5 * h * abs(t_dot[a]) * s[a] * lipschitz) / s[b]
    return (s[a] + h * (abs(s_dot[b]) + abs(t_dot[b]) * s[b] * lipschitz) * to_mid) / s[e]


def transformed_solve(field: Any, x: torch.Tensor, nodes: Nodes, layout: Layout) -> torch.Tensor:
    """Every step of the layout from x at t = 1 (node 0, s_0 = 1) to the sample at t = 0; each velocity is
    one evaluation of ``field``, whose steps are marked (``field.at_step``) for the ``step`` guidance decision."""
    for first, stages in layout.steps():
        with field.at_step(nodes.t[first]):
            x = transformed_step(field, x, nodes, first, stages, layout.h)
    return x
