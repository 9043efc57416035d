"""Euler's method: ``x_{k+1} = x_k - H_k v(x_k, t_k)``. Global order 1, 1 NFE per interval."""
from solverbench import register_solver
from solvers.runge_kutta import EULER, ExplicitRungeKutta


@register_solver("euler")
class Euler(ExplicitRungeKutta):
    """Euler's method (explicit, first order); 1 NFE per interval."""

    order = 1
    tableau = EULER
