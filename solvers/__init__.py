"""Built-in solvers; importing this package registers them all."""
from solvers import ba, bespoke, diffusers_schedulers, dpm, euler, heun, midpoint, reference, rk4, unipc  # noqa: F401
