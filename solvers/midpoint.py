"""The explicit midpoint method. Global order 2, 2 NFE per interval (odd budget: last interval Euler)."""
from solverbench import register_solver
from solvers.runge_kutta import EULER, MIDPOINT, ExplicitRungeKutta


@register_solver("midpoint")
class Midpoint(ExplicitRungeKutta):
    """The explicit midpoint method (second order); 2 NFE per interval, an odd budget ends with Euler."""

    order = 2
    tableau = MIDPOINT
    fallbacks = {1: EULER}
