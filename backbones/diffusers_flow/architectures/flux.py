"""``FluxTransformer2DModel`` (FLUX.1) as ``FluxPipeline`` runs it.

Latents (C, H, W) with ``C = in_channels / 4`` (16) and ``H = resolution / 8`` (even) are packed
as the pipeline packs them: each 2x2 patch one token of 4C values (``pack``; ``unpack`` undoes it),
with position ids ``img_ids`` (token row, column) and ``txt_ids`` (zeros, one per text token).
The pipeline hands the transformer ``timestep / 1000 = sigma`` (the transformer multiplies by 1000
inside), so ``v(x, t, y) = unpack(transformer(pack(x), timestep = t, prompt y))``.

Guidance-distilled models (``guidance_embeds``: FLUX.1-dev) take the distilled guidance scale as an
input, ``guidance`` (FluxPipeline's ``guidance_scale``, default 3.5): a setting of the backbone,
part of the velocity, not classifier-free guidance.  Classifier-free guidance with a negative
prompt is FluxPipeline's ``true_cfg_scale``; it needs the negative prompt in the prompt set, which
Flux sets may leave out (then the backbone has no null label).  Conditions: ``prompt_embeds``
(P, L, joint_attention_dim: T5's tokens) and ``pooled_prompt_embeds`` (P, pooled_projection_dim:
CLIP's pooled output).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import torch

from backbones.diffusers_flow.architectures.base import (PROMPTS, TOKENS, Architecture, Condition, sequence_length,
                                                         time_in_float)

DEFAULT_GUIDANCE = 3.5  # FluxPipeline's guidance_scale
DEFAULT_SAMPLE_SIZE = 128  # FluxPipeline's default_sample_size (1024 px)


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 W/2, 4C): each 2x2 patch one token, as FluxPipeline._pack_latents."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), 4 * c)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H/2 W/2, 4C) -> (B, C, H, W), as FluxPipeline._unpack_latents."""
    b, _, channels = tokens.shape
    return tokens.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5) \
        .reshape(b, channels // 4, height, width)


def image_ids(rows: int, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(rows x columns, 3): each token's (0, row, column), as FluxPipeline._prepare_latent_image_ids."""
    ids = torch.zeros(rows, columns, 3)
    ids[..., 1] += torch.arange(rows)[:, None]
    ids[..., 2] += torch.arange(columns)[None, :]
    return ids.reshape(rows * columns, 3).to(device=device, dtype=dtype)


def image_sequence_length(latent_size: int) -> int:
    """The tokens of latents of side ``latent_size``: what FluxPipeline's dynamic shift (``calculate_shift``) reads."""
    return (latent_size // 2) ** 2


def dynamic_shift(latent_size: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                  max_shift: float = 1.15) -> float:
    """FluxPipeline's ``mu`` (its ``calculate_shift`` with FLUX.1's scheduler config) at latents of side
    ``latent_size``: what the ``diffusers`` solver's ``mu`` must be to sample on FluxPipeline's sigmas."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    intercept = base_shift - slope * base_seq_len
    return image_sequence_length(latent_size) * slope + intercept


class Flux(Architecture):
    name = "flux"
    transformer_class = "FluxTransformer2DModel"
    pipeline_class = "FluxPipeline"
    conditions = (Condition("prompt_embeds", (PROMPTS, TOKENS, "joint_attention_dim")),
                  Condition("pooled_prompt_embeds", (PROMPTS, "pooled_projection_dim")))
    negative_required = False
    timestep = "t (FluxPipeline divides 1000 sigma by 1000; the transformer multiplies by 1000 inside)"

    def latent_channels(self, config: Mapping[str, Any]) -> int:
        return int(config["in_channels"]) // 4

    def default_latent_size(self, config: Mapping[str, Any]) -> int:
        return DEFAULT_SAMPLE_SIZE

    def latent_multiple(self, config: Mapping[str, Any]) -> int:
        return 2  # the pipeline's 2x2 packing (the transformer's own patch_size is 1)

    def check_config(self, config: Mapping[str, Any], where: str) -> None:
        if int(config.get("patch_size") or 1) != 1 or int(config["in_channels"]) % 4:
            raise ValueError(f"diffusers: the {self.transformer_class} in {where} has patch_size "
                             f"{config.get('patch_size')} and in_channels {config['in_channels']}; FluxPipeline packs "
                             "2x2 latent patches into tokens for patch_size 1 and in_channels a multiple of 4")

    def guidance_setting(self, config: Mapping[str, Any], guidance: Optional[float], where: str) -> Optional[float]:
        if not config.get("guidance_embeds"):
            if guidance is not None:
                raise ValueError(f"diffusers: guidance={guidance!r} is the distilled guidance scale of a Flux model "
                                 f"with guidance_embeds; the {self.transformer_class} in {where} has none (it is not "
                                 "guidance-distilled): leave guidance out")
            return None
        if guidance is None:
            return DEFAULT_GUIDANCE
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
            raise ValueError(f"diffusers: guidance must be a number (Flux's distilled guidance scale, FluxPipeline's "
                             f"guidance_scale, default {DEFAULT_GUIDANCE}), got {guidance!r}")
        return float(guidance)

    def velocity(self, transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                 conditions: Mapping[str, torch.Tensor], guidance: Optional[float]) -> torch.Tensor:
        b, _, h, w = x.shape
        embeds = conditions["prompt_embeds"]
        scale = None if guidance is None else torch.full((b,), guidance, device=x.device, dtype=torch.float32)
        out = transformer(hidden_states=pack(x), timestep=time_in_float(t), guidance=scale,
                          pooled_projections=conditions["pooled_prompt_embeds"], encoder_hidden_states=embeds,
                          txt_ids=torch.zeros(embeds.shape[1], 3, device=x.device, dtype=x.dtype),
                          img_ids=image_ids(h // 2, w // 2, x.device, x.dtype), return_dict=False)[0]
        return unpack(out, h, w)

    def encode(self, pipeline: Any, prompts: list[str], negative_prompt: Optional[str], device: torch.device,
               max_sequence_length: Optional[int]) -> tuple[dict[str, torch.Tensor], Optional[dict[str, torch.Tensor]]]:
        """FluxPipeline encodes the negative prompt of true CFG as one more prompt."""
        def encoded(texts: list[str]) -> dict[str, torch.Tensor]:
            embeds, pooled, _ = pipeline.encode_prompt(prompt=texts, prompt_2=None, device=device,
                                                       **sequence_length(max_sequence_length))
            return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

        return encoded(prompts), None if negative_prompt is None else encoded([negative_prompt])
