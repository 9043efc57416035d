"""What makes a diffusers scheduler sample a flow-matching model: its sigma is our time, and its config asks
for flow sigmas and a velocity output."""
from __future__ import annotations

import inspect
import typing
from typing import Any

from solvers.diffusers_schedulers.library import Refused

FLOW_CONFIG = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}  # set for non-Flow* schedulers


def t_of_sigma(sigma: Any) -> float:
    """Our time of a flow-matching scheduler's sigma: ``t = sigma``.

    diffusers' flow schedulers interpolate ``x = (1 - sigma) x0 + sigma noise`` and step with
    the velocity ``noise - x0``, exactly our ``x_t`` and ``v`` at ``t = sigma``.  Their
    ``timestep`` is ``sigma * num_train_timesteps``, rounded to an integer by DPM-Solver
    and UniPC, so it is never used for the time.
    """
    return float(sigma)


def flow_config(cls: type) -> dict[str, Any]:
    """What makes ``cls`` sample a flow model: ``{}`` for a ``Flow*`` scheduler (flow by construction),
    ``FLOW_CONFIG`` for one with ``use_flow_sigmas`` and a ``flow_prediction`` prediction type;
    ``Refused`` otherwise."""
    name = cls.__name__
    if name.startswith("Flow"):
        return {}
    keys = inspect.signature(cls.__init__).parameters
    if "use_flow_sigmas" not in keys or "prediction_type" not in keys:
        raise Refused(f"{name} cannot sample a flow-matching model: it has no flow sigmas (no use_flow_sigmas in its "
                      "config) and is no FlowMatch scheduler, so its model output is a diffusion model's epsilon, v "
                      "or x0, not a velocity")
    allowed = typing.get_args(keys["prediction_type"].annotation)
    if allowed and "flow_prediction" not in allowed:
        raise Refused(f"{name} cannot sample a flow-matching model: its prediction_type takes {', '.join(allowed)}, "
                      "not flow_prediction")
    return dict(FLOW_CONFIG)
