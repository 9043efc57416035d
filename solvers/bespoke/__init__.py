"""Bespoke solvers (Shaul et al., ICLR 2024, "Bespoke Solvers for Generative Flow Models").

A base solver (RK1 = Euler, RK2 = midpoint) stepping a learned scale-time transformation of the flow
ODE, ``xbar(r) = s_r x(t_r)``, with theta (the node times t, their rates, the scales s and theirs)
trained per budget and guidance against ground-truth trajectories.

- ``transform``: the layout of a budget's nodes and the parametrisation theta -> (t, tdot, s, sdot);
- ``steps``: the transformed RK1/RK2 steps (in x) and their Lipschitz bounds;
- ``trajectories``: the ground-truth paths on a fine grid, read at any t by cubic Hermite interpolation;
- ``training``: the paper's bound on the global error, minimised with Adam;
- ``settings``: the training settings; ``cache``: theta on disk, keyed by everything that defines it;
- ``solver``: the registered solver ``bespoke``.
"""
from solvers.bespoke import solver  # registers the solver

__all__ = ["solver"]
