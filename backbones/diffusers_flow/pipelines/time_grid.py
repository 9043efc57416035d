"""The time grid a pipeline walks by default: the sigmas its flow-matching scheduler makes for N steps.

diffusers' flow pipelines step a ``FlowMatchEulerDiscreteScheduler`` (SD3's with a time shift of 3, Flux's with a
shift that grows with the image's tokens, ``mu``); its sigmas are solverbench's times (``t = sigma``) and its
timesteps ``1000 sigma``.  ``flow_match_settings`` reads the grid's settings from any scheduler config (its
``shift``, dynamic shifting and the ``mu`` bounds; Sana's DPM-Solver++ config gives its ``flow_shift`` as the shift),
``flow_match_grid`` makes the grid with diffusers' own scheduler from the arguments a pipeline passes to
``set_timesteps``, and ``pipeline_call`` says what those arguments are in each pipeline's ``__call__``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from backbones.diffusers_flow.architectures import Architecture
from backbones.diffusers_flow.folders import quiet_diffusers
from backbones.diffusers_flow.pipelines.supported import PipelineError

# the settings of a FlowMatchEulerDiscreteScheduler that make its grid, and those whose other values it cannot take
FLOW_MATCH_SETTINGS = ("shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len",
                       "max_image_seq_len")
NOT_FOLLOWED = ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas",
                "time_shift_type")


def default_flow_match_config() -> Mapping[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler().config


def flow_match_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The grid settings of a scheduler ``config`` (FlowMatchEulerDiscreteScheduler's defaults where it has none; a
    ``flow_shift`` as the shift); one line where it sets what the grid here does not follow (Karras sigmas, a
    terminal shift, ...)."""
    defaults = default_flow_match_config()
    changed = [key for key in NOT_FOLLOWED if key in config and config[key] != defaults[key]]
    if changed:
        raise PipelineError(f"the pipeline's scheduler config sets {', '.join(f'{k}={config[k]!r}' for k in changed)}"
                            f", which solverbench's pipeline grid does not follow (it follows "
                            f"{', '.join(FLOW_MATCH_SETTINGS)}): give a schedule or a time_grid")
    settings = {key: config.get(key, defaults[key]) for key in FLOW_MATCH_SETTINGS}
    if "shift" not in config and config.get("flow_shift") is not None:
        settings["shift"] = float(config["flow_shift"])
    return settings


def flow_match_grid(settings: Mapping[str, Any], steps: Optional[int] = None, sigmas: Optional[Sequence[float]] = None,
                    mu: Optional[float] = None, timesteps: Optional[Sequence[float]] = None) -> torch.Tensor:
    """The sigmas (float64, N + 1, ending at 0) of FlowMatchEulerDiscreteScheduler with ``settings`` after
    ``set_timesteps(steps, sigmas=..., mu=..., timesteps=...)``: the grid the pipeline's scheduler would walk."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    with quiet_diffusers():
        scheduler = FlowMatchEulerDiscreteScheduler(**settings)
        try:
            scheduler.set_timesteps(steps, sigmas=sigmas, mu=mu, timesteps=timesteps)
        except (ValueError, TypeError) as err:
            raise PipelineError(f"the pipeline's time grid: {' '.join(str(err).split())}") from None
    return scheduler.sigmas.detach().to("cpu", torch.float64)


def pipeline_call(architecture: Architecture, settings: Mapping[str, Any], steps: int, latent_size: tuple[int, int],
                  patch_size: int) -> dict[str, Any]:
    """The ``sigmas`` and ``mu`` a pipeline's ``__call__`` passes to ``set_timesteps`` for ``steps`` steps at latents
    of ``latent_size``: FluxPipeline's ``linspace(1, 1/N, N)`` and its ``mu`` from the image's tokens;
    StableDiffusion3Pipeline's ``mu`` only where the scheduler shifts dynamically; SanaPipeline's nothing."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    height, width = latent_size
    shift = dict(base_seq_len=settings["base_image_seq_len"], max_seq_len=settings["max_image_seq_len"],
                 base_shift=settings["base_shift"], max_shift=settings["max_shift"])
    if architecture.name == "flux":
        return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": calculate_shift((height // 2) * (width // 2),
                                                                                     **shift)}
    if architecture.name == "sd3" and settings["use_dynamic_shifting"]:
        return {"mu": calculate_shift((height // patch_size) * (width // patch_size), **shift)}
    return {}


def pipeline_time_grid(pipe: Any, architecture: Architecture, steps: int, latent_size: tuple[int, int]) -> torch.Tensor:
    """The grid ``pipe``'s own ``__call__`` makes its scheduler walk for ``steps`` steps at latents of
    ``latent_size``, from its scheduler's config."""
    settings = flow_match_settings(pipe.scheduler.config)
    patch = int(pipe.transformer.config.get("patch_size") or 1)
    return flow_match_grid(settings, steps, **pipeline_call(architecture, settings, steps, latent_size, patch))
