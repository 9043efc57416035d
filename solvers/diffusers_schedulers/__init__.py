"""``diffusers``: diffusers' schedulers as they ship, sampling a flow-matching model.

``diffusers(scheduler=NAME, **config)`` runs the diffusers scheduler class ``NAME`` built with
``config`` (any keyword of its ``__init__``), every model call through the velocity field at
``t = sigma``.  docs/solvers/diffusers.md says which schedulers run, how their NFE, time grids
and precision map onto solverbench's, and the grid syntax.

- ``library``: the installed diffusers, its scheduler classes and their configs;
- ``flow``: what makes a scheduler sample a flow model (``t_of_sigma``, ``flow_config``);
- ``probe``: a scheduler run on a small problem before any cell: its spending per step, or why not;
- ``setting``: a scheduler class with its config, checked (``Setting``, ``supported_schedulers``);
- ``adapter``: the registered solver, ``DiffusersScheduler``.
"""
from solvers.diffusers_schedulers.adapter import DiffusersScheduler, claimed_order
from solvers.diffusers_schedulers.flow import t_of_sigma
from solvers.diffusers_schedulers.library import Refused
from solvers.diffusers_schedulers.setting import Setting, supported_schedulers

__all__ = ["DiffusersScheduler", "Setting", "Refused", "claimed_order", "supported_schedulers", "t_of_sigma"]
