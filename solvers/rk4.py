"""The classical fourth-order Runge-Kutta method. Global order 4, 4 NFE per interval.

A budget of 4N + r (r = 1, 2, 3) takes its last interval with Euler, the midpoint method
or Kutta's third-order method.
"""
from solverbench import register_solver
from solvers.runge_kutta import EULER, KUTTA3, MIDPOINT, RK4, ExplicitRungeKutta


@register_solver("rk4")
class RungeKutta4(ExplicitRungeKutta):
    """Classical fourth-order Runge-Kutta; 4 NFE per interval, a remainder taken by a lower-stage method."""

    order = 4
    tableau = RK4
    fallbacks = {1: EULER, 2: MIDPOINT, 3: KUTTA3}
