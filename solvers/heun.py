"""Heun's method (explicit trapezoid). Global order 2, 2 NFE per interval.

An odd budget ends with one Euler interval (as EDM's sampler takes its last step), so
NFE = 2N - 1 for N intervals there.
"""
from solverbench import register_solver
from solvers.runge_kutta import EULER, HEUN, ExplicitRungeKutta


@register_solver("heun")
class Heun(ExplicitRungeKutta):
    """Heun's method (explicit trapezoid, second order); 2 NFE per interval, an odd budget ends with Euler."""

    order = 2
    tableau = HEUN
    fallbacks = {1: EULER}
