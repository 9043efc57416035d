"""A diffusers scheduler config, read for the model it describes: a VP schedule and a prediction type.

A scheduler's config (``scheduler/scheduler_config.json`` of a pipeline folder, or the same keys
given as a mapping) says two things: the model's noise schedule (``num_train_timesteps``,
``beta_start``, ``beta_end``, ``beta_schedule`` or ``trained_betas``) with what the network predicts
(``prediction_type``), and how that scheduler samples (timestep spacing, solver order, clipping,
thresholding, Karras sigmas, ...).  Only the first is the model's: solverbench's solvers and time grids
decide the second, so those keys are read by no one here.

Only VP schedules of discrete timesteps are taken.  A config of another kind of scheduler (flow
matching, EDM), or with a setting that makes its model something else (``use_flow_sigmas``, a zero
terminal SNR, continuous timesteps, ``prediction_type: flow_prediction``), is refused in one line.
Keys left out take diffusers' defaults, as a scheduler built from the config would.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from backbones.diffusion.paths import PREDICTIONS
from backbones.diffusion.schedules import VPSchedule

# diffusers' schedulers of VP models of discrete timesteps (its KarrasDiffusionSchedulers, less EDM's)
VP_SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
    "HeunDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler", "UniPCMultistepScheduler", "DPMSolverSDEScheduler",
)
# the model's schedule, with diffusers' defaults
SCHEDULE_DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
                     "trained_betas": None}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
# settings that make a scheduler's model other than a VP model of discrete timesteps, with the value a VP model has
VP_SETTINGS = {"use_flow_sigmas": False, "rescale_betas_zero_snr": False, "timestep_type": "discrete"}
NOT_VP = {
    "use_flow_sigmas": "flow sigmas (a flow-matching model: it is a flow already)",
    "rescale_betas_zero_snr": "a zero terminal SNR (alpha_bar = 0 at the last timestep: no finite noise level)",
    "timestep_type": "continuous timesteps (the network takes a function of sigma, not a timestep)",
}


@dataclass(frozen=True)
class ModelSchedule:
    """What a scheduler config says of its model: the schedule's keys and the prediction type (None: not said)."""

    schedule: dict[str, Any]
    prediction_type: Optional[str]

    def vp_schedule(self) -> VPSchedule:
        """The schedule as diffusers' schedulers compute it (their ``alphas_cumprod``, float32)."""
        from diffusers import DDPMScheduler  # imported here: the diffusion backbone's VP models need it, nothing else

        return VPSchedule(DDPMScheduler(**self.schedule).alphas_cumprod)


def read_scheduler_config(path: str | Path) -> dict[str, Any]:
    """The JSON mapping in ``path`` (a scheduler_config.json), or one line saying what is wrong with it."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"scheduler config {str(path)!r} cannot be read as JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"scheduler config {str(path)!r} holds a {type(config).__name__}, not a mapping of settings")
    return config


def model_schedule(config: Mapping[str, Any], where: str) -> ModelSchedule:
    """The model's schedule in a scheduler ``config`` (``where`` names it in errors); refused unless VP.

    A config naming its scheduler class (``_class_name``, as diffusers writes them) may hold that scheduler's
    sampling settings, which are left unread; a mapping without one holds the schedule's keys only."""
    class_name = config.get("_class_name")
    if class_name is not None and class_name not in VP_SCHEDULERS:
        kind = ("a flow-matching model (it is a flow already)" if "FlowMatch" in str(class_name) else
                "an EDM (VE) denoiser: give it as denoiser=D with sigma_min and sigma_max" if "EDM" in str(class_name)
                else "no VP model of discrete timesteps")
        raise ValueError(f"{where} is {class_name}'s, whose schedule is not VP: it describes {kind}; the diffusion "
                         f"backbone takes the schedules of {', '.join(VP_SCHEDULERS)}")
    if class_name is None:
        allowed = [*SCHEDULE_DEFAULTS, "prediction_type", *VP_SETTINGS]
        unknown = [k for k in config if k not in allowed and not k.startswith("_")]
        if unknown:
            raise ValueError(f"{where} has the unknown key(s) {', '.join(map(repr, unknown))}; a schedule takes "
                             f"{', '.join(allowed)} (or a whole diffusers scheduler config, with its _class_name)")
    for key, vp_value in VP_SETTINGS.items():
        if key in config and config[key] != vp_value:
            raise ValueError(f"{where} sets {key}: {config[key]!r}, {NOT_VP[key]}; the schedule is not VP "
                             f"(the diffusion backbone needs {key}: {json.dumps(vp_value)})")
    prediction = config.get("prediction_type")
    if prediction is not None and prediction not in PREDICTIONS:
        raise ValueError(f"{where} has prediction_type {prediction!r}; the diffusion backbone takes "
                         f"{', '.join(PREDICTIONS)}" + (" (a flow prediction is a flow's velocity already: not a "
                                                        "diffusion model)" if prediction == "flow_prediction" else ""))
    schedule = {k: config.get(k, default) for k, default in SCHEDULE_DEFAULTS.items()}
    if hasattr(schedule["trained_betas"], "tolist"):  # a numpy array or tensor given in Python
        schedule["trained_betas"] = schedule["trained_betas"].tolist()
    check_schedule(schedule, where)
    return ModelSchedule(schedule, prediction)


def check_schedule(schedule: Mapping[str, Any], where: str) -> None:
    """One line for a schedule diffusers would build wrongly or not at all."""
    steps, betas = schedule["num_train_timesteps"], schedule["trained_betas"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"{where}: num_train_timesteps must be an integer >= 2, got {steps!r}")
    if betas is not None:
        if (not isinstance(betas, (list, tuple)) or len(betas) != steps
                or not all(isinstance(b, (int, float)) and 0 < b < 1 for b in betas)):
            raise ValueError(f"{where}: trained_betas must be a list of num_train_timesteps = {steps} numbers in "
                             f"(0, 1), got {_short(betas)}")
        return
    if schedule["beta_schedule"] not in BETA_SCHEDULES:
        raise ValueError(f"{where}: unknown beta_schedule {schedule['beta_schedule']!r}; known: "
                         f"{', '.join(BETA_SCHEDULES)} (or trained_betas)")
    start, end = schedule["beta_start"], schedule["beta_end"]
    if schedule["beta_schedule"] != "squaredcos_cap_v2" and not (
            isinstance(start, (int, float)) and isinstance(end, (int, float)) and 0 < start <= end < 1):
        raise ValueError(f"{where}: beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
                         f"got {start!r} and {end!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
