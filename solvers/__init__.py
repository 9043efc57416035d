"""Built-in solvers; importing this package registers them all."""
from solvers import euler, heun, midpoint, reference, rk4  # noqa: F401
