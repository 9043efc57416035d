"""A pipeline's latents as solverbench holds them: their size for an image size, the starting noise the pipeline's
``prepare_latents`` draws, and images decoded by its VAE as its ``__call__`` decodes them.

Latents are ``(N, C, h, w)`` whatever the pipeline: Flux's pipeline packs them into tokens, which are unpacked here
(``architectures.flux.unpack``), as the ``diffusers`` backbone holds them.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

import torch

from backbones.diffusers_flow.architectures import Architecture
from backbones.diffusers_flow.architectures.flux import unpack
from backbones.diffusers_flow.pipelines.supported import PipelineError


def image_size(pipe: Any, height: Optional[int], width: Optional[int]) -> tuple[int, int]:
    """``height`` and ``width`` in pixels, the pipeline's default where None: its ``__call__``'s (Sana's 1024), else
    ``default_sample_size x vae_scale_factor`` (SD3's, Flux's)."""
    parameters = inspect.signature(type(pipe).__call__).parameters

    def default(name: str) -> int:
        value = parameters[name].default if name in parameters else None
        return value if isinstance(value, int) else int(pipe.default_sample_size) * int(pipe.vae_scale_factor)

    return (default("height") if height is None else height), (default("width") if width is None else width)


def latent_size(pipe: Any, architecture: Architecture, height: int, width: int) -> tuple[int, int]:
    """The latents' ``(h, w)`` for an image of ``height x width`` px; one line where a side is not a whole number of
    the transformer's latent patches."""
    scale = int(pipe.vae_scale_factor)
    multiple = scale * architecture.latent_multiple(pipe.transformer.config)
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, int) or side < multiple or side % multiple:
            raise PipelineError(f"{name} must be a whole multiple of {multiple} px (the VAE's {scale} x the "
                                f"{architecture.transformer_class}'s {multiple // scale}-latent patches), got {side!r}")
    size = (height // scale, width // scale)
    for side in size:
        architecture.check_latent_size(pipe.transformer.config, side, f"the {type(pipe).__name__}'s transformer")
    return size


def initial_latents(pipe: Any, architecture: Architecture, batch: int, size: tuple[int, int], dtype: torch.dtype,
                    device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """The noise the pipeline's own ``prepare_latents`` draws with ``generator``, ``(batch, C, h, w)``."""
    height, width = (side * int(pipe.vae_scale_factor) for side in size)
    channels = architecture.latent_channels(pipe.transformer.config)
    drawn = pipe.prepare_latents(batch, channels, height, width, dtype, device, generator)
    if architecture.name == "flux":
        packed, _ = drawn  # and the tokens' ids, which the backbone makes itself
        return unpack(packed, *size)
    return drawn


def check_decodable(pipe: Any, output_type: str) -> None:
    """Images need the pipeline's VAE; one line where it has none."""
    if output_type != "latent" and getattr(pipe, "vae", None) is None:
        raise PipelineError(f"output_type={output_type!r} decodes with the pipeline's VAE, and this "
                            f"{type(pipe).__name__} has none: load it with its vae, or ask output_type='latent'")


@torch.no_grad()
def decode(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """Latents ``(N, C, h, w)`` -> the VAE's images in [-1, 1] ``(N, 3, H, W)``: ``vae.decode(z / scaling_factor +
    shift_factor)``, the shift where the VAE's config has one (SD3's, Flux's; Sana's has none)."""
    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    z = latents / vae.config.scaling_factor + shift
    return vae.decode(z.to(device=vae.device, dtype=vae.dtype), return_dict=False)[0]
