"""``generate``: images from a diffusers flow pipeline with any solverbench solver, in one call.

The pipeline's own parts do what they do in its ``__call__``: ``encode_prompt`` encodes the prompts (and the
negative prompt, under classifier-free guidance), ``prepare_latents`` draws the starting noise, the transformer
gives the velocity (``PipelineBackbone``: the ``diffusers`` backbone's conventions), the VAE and the image processor
make the images.  Between them ``solverbench.sample`` integrates the flow, so the NFE is counted as in a sweep (a
classifier-free-guidance pair is one NFE) and checked against the budget, and the result holds the time grid walked.
Every input is checked before any work.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from backbones.diffusers_flow.architectures import Architecture
from backbones.diffusers_flow.pipelines.backbone import PipelineBackbone, placeholder_conditions, transformer_folder
from backbones.diffusers_flow.pipelines.latents import (check_decodable, decode, image_size, initial_latents,
                                                        latent_size)
from backbones.diffusers_flow.pipelines.solver_choice import pipeline_budget, pipeline_solver
from backbones.diffusers_flow.pipelines.supported import PipelineError, pipeline_architecture
from backbones.diffusers_flow.pipelines.time_grid import pipeline_time_grid
from solverbench.plan import Plan, make_plan
from solverbench.progress import progress_bar
from solverbench.sampling import sample
from solverbench.solver import PrepareContext, Solver, SolverCheckError

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class GenerateResult:
    """What ``generate`` made: the ``images`` (as ``output_type`` asks: PIL images, an array, a tensor, or the latents),
    the final ``latents`` ``(N, C, h, w)`` (Flux's unpacked), the counted ``nfe``, the time grid walked (``times``,
    from 1 to 0), the solver (``solver``: its label) and what it counted besides NFE (``counters``), and the solve's
    ``wall_time`` in seconds."""

    images: Any
    latents: torch.Tensor
    nfe: int
    times: torch.Tensor
    solver: str
    counters: dict[str, float]
    wall_time: float


@dataclass(frozen=True)
class Guidance:
    """A call's guidance as the pipeline means it: the classifier-free guidance scale (1: none), the negative prompt
    it guides away from (None without guidance), Flux's distilled guidance (None for other models)."""

    cfg_scale: float
    negative_prompt: Optional[str]
    distilled: Optional[float]


@torch.no_grad()
def generate(pipe: Any, prompts: str | Sequence[str], solver: str = "ba", nfe: int = 8, *,
             guidance_scale: Optional[float] = None, true_cfg_scale: float = 1.0,
             negative_prompt: Optional[str] = None, checkpoint: Optional[str | Path] = None,
             schedule: Optional[str | dict] = None, time_grid: Any = None, seed: int = 0,
             latents: Optional[torch.Tensor] = None, num_images_per_prompt: int = 1, height: Optional[int] = None,
             width: Optional[int] = None, max_sequence_length: Optional[int] = None, output_type: str = "pil",
             progress: bool = True, **solver_params: Any) -> GenerateResult:
    """Images of ``prompts`` from ``pipe`` (a ``StableDiffusion3Pipeline``, ``FluxPipeline`` or ``SanaPipeline``)
    sampled by ``solver`` in ``nfe`` evaluations.

    ``guidance_scale`` is the pipeline's (its ``__call__``'s default where None): the classifier-free guidance scale
    of SD3 and Sana, the distilled guidance of a guidance-distilled Flux model, whose classifier-free guidance is
    ``true_cfg_scale``; guidance is on where that scale exceeds 1, as in the pipelines, against ``negative_prompt``
    (SD3 and Sana: the empty prompt where None; Flux needs one).  ``checkpoint`` is a BA SideNet file trained for
    this transformer (``ba``, ``ba-single``); other solver parameters go in ``solver_params``.  The time grid is
    ``time_grid``, a ``schedule`` (solverbench's: ``"uniform"``, ``{"name": "shifted", "shift": 3.0}``, ...), or by
    default the pipeline's own (its scheduler's sigmas for as many steps as the solver's intervals).  The noise is
    ``latents`` ``(N, C, h, w)`` where given, else what the pipeline's ``prepare_latents`` draws with a CPU generator
    seeded ``seed``; N is the prompts times ``num_images_per_prompt``.  ``output_type``: ``"pil"``, ``"np"``,
    ``"pt"`` (the pipeline's image processor's) or ``"latent"``."""
    architecture = pipeline_architecture(pipe)
    texts = prompt_list(prompts)
    copies = whole_number(num_images_per_prompt, "num_images_per_prompt")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PipelineError(f"seed must be a whole number >= 0, got {seed!r}")
    method = pipeline_solver(solver, checkpoint, solver_params)
    budget = pipeline_budget(nfe)
    if output_type not in OUTPUT_TYPES:
        raise PipelineError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    check_decodable(pipe, output_type)
    size = latent_size(pipe, architecture, *image_size(pipe, height, width))
    guidance = call_guidance(pipe, architecture, guidance_scale, true_cfg_scale, negative_prompt)
    plan = walk_plan(pipe, architecture, method, budget, schedule, time_grid, size)
    transformer = pipe.transformer
    device, dtype = pipe._execution_device, transformer.dtype
    count = len(texts) * copies
    if latents is not None:
        check_latents(latents, (count, architecture.latent_channels(transformer.config), *size))
    if checkpoint is not None:
        check_checkpoint(pipe, architecture, method, size, guidance, device)

    conditions, negative = architecture.encode(pipe, texts, guidance.negative_prompt, device, max_sequence_length)
    backbone = PipelineBackbone(pipe, architecture, conditions, negative, size, guidance.distilled, tuple(texts),
                                decode=lambda z: decode(pipe, z))
    method.prepare(backbone, PrepareContext(device=str(device), progress=progress))
    labels = torch.arange(len(texts), device=device).repeat_interleave(copies)
    if latents is None:
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = initial_latents(pipe, architecture, count, size, dtype, device, generator)
    else:
        noise = latents.to(device=device, dtype=dtype)
    bar = progress_bar(total=budget, unit="NFE", enabled=progress, off_terminal="total",
                       desc=f"generate: {method.label()}")
    with bar:
        backbone.on_evaluation = lambda: bar.update(1)
        grid = {"schedule": schedule} if schedule is not None else {"time_grid": plan.times}
        result = sample(backbone, method, noise, labels, nfe=budget, cfg_scale=guidance.cfg_scale, **grid)
        backbone.on_evaluation = None
    images = result.samples if output_type == "latent" else \
        pipe.image_processor.postprocess(decode(pipe, result.samples), output_type=output_type)
    return GenerateResult(images, result.samples, result.nfe, result.plan.times, method.label(), result.counters,
                          result.wall_time)


def prompt_list(prompts: Any) -> list[str]:
    """A prompt or a non-empty list of prompts, as a list."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts):
        return list(prompts)
    raise PipelineError(f"prompts must be a prompt or a non-empty list of prompts (strings), got {prompts!r}")


def whole_number(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def call_guidance(pipe: Any, architecture: Architecture, guidance_scale: Optional[float], true_cfg_scale: float,
                  negative_prompt: Optional[str]) -> Guidance:
    """The call's guidance as the pipeline's ``__call__`` makes it (its default ``guidance_scale`` where None)."""
    pipeline = type(pipe).__name__
    given = guidance_scale is not None
    if not given:
        guidance_scale = inspect.signature(type(pipe).__call__).parameters["guidance_scale"].default
    if architecture.name == "flux":
        config = pipe.transformer.config
        distilled = architecture.guidance_setting(config, guidance_scale if given or config.get("guidance_embeds")
                                                  else None, f"the {pipeline}'s transformer")
        scale, name = true_cfg_scale, "true_cfg_scale"
    else:
        if true_cfg_scale != 1.0:
            raise PipelineError(f"true_cfg_scale is FluxPipeline's; a {pipeline}'s classifier-free guidance scale is "
                                f"guidance_scale, got true_cfg_scale={true_cfg_scale!r}")
        distilled, scale, name = None, guidance_scale, "guidance_scale"
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise PipelineError(f"{name} must be a number >= 0, got {scale!r}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise PipelineError(f"negative_prompt must be one prompt (a string), got {negative_prompt!r}")
    if scale <= 1:  # the pipelines guide only above 1
        if negative_prompt is not None:
            raise PipelineError(f"negative_prompt is what classifier-free guidance guides away from, and {name}="
                                f"{scale!r} guides nothing (the pipelines guide above 1)")
        return Guidance(1.0, None, distilled)
    if negative_prompt is None and architecture.name == "flux":
        raise PipelineError(f"true_cfg_scale={scale!r} guides away from a negative prompt: give negative_prompt "
                            "(FluxPipeline skips true CFG without one)")
    return Guidance(float(scale), "" if negative_prompt is None else negative_prompt, distilled)


def walk_plan(pipe: Any, architecture: Architecture, solver: Solver, nfe: int, schedule: Optional[str | dict],
              time_grid: Any, size: tuple[int, int]) -> Plan:
    """The plan the solve walks: along ``time_grid``, on ``schedule`` (one that decides its times while it solves
    gives a plan without them yet), or on the pipeline's own grid for as many steps as the budget makes
    intervals."""
    if schedule is not None and time_grid is not None:
        raise PipelineError("give a schedule or a time_grid, not both")
    try:
        if time_grid is not None:
            return make_plan(solver, nfe=nfe, times=time_grid)
        if schedule is not None:
            return make_plan(solver, nfe=nfe, schedule=schedule)
        intervals = make_plan(solver, nfe=nfe).intervals
        return make_plan(solver, nfe=nfe, times=pipeline_time_grid(pipe, architecture, intervals, size))
    except (TypeError, ValueError) as err:
        raise PipelineError(" ".join(str(err).split())) from None


def check_latents(latents: Any, shape: tuple[int, ...]) -> None:
    if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape or not latents.is_floating_point():
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise PipelineError(f"latents must be a floating-point tensor of shape {shape} (prompts x "
                            f"num_images_per_prompt, the latent channels and size; Flux's unpacked), got {got}")


def check_checkpoint(pipe: Any, architecture: Architecture, solver: Solver, size: tuple[int, int],
                     guidance: Guidance, device: torch.device) -> None:
    """The checkpoint was made for this transformer (its folder, dtype, resolution and distilled guidance), checked
    on a backbone of placeholder prompts before any is encoded."""
    if transformer_folder(pipe.transformer) is None:
        raise PipelineError(f"checkpoint=: the {type(pipe).__name__}'s transformer was not loaded from a local folder "
                            "(from_pretrained), so no SideNet checkpoint can be checked against it")
    conditions = placeholder_conditions(architecture, pipe.transformer.config, device)
    probe = PipelineBackbone(pipe, architecture, conditions, None, size, guidance.distilled)
    try:
        solver.check_backbone(probe, PrepareContext())
    except SolverCheckError as err:
        raise PipelineError(str(err)) from None
