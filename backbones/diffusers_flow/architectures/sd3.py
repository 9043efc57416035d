"""``SD3Transformer2DModel`` (Stable Diffusion 3 and 3.5) as ``StableDiffusion3Pipeline`` runs it.

Its pipeline steps ``FlowMatchEulerDiscreteScheduler`` on sigmas with timesteps ``sigma x 1000``
and feeds the transformer that timestep; the transformer's output is the scheduler's velocity,
``noise - x0``.  So ``v(x, t, y) = transformer(x, timestep = 1000 t, prompt y)``, latents (C, H, W)
as the pipeline makes them (``in_channels``, ``H = resolution / 8``).  Conditions: ``prompt_embeds``
(P, L, joint_attention_dim: CLIP's and T5's tokens one after the other) and
``pooled_prompt_embeds`` (P, pooled_projection_dim: both CLIPs' pooled outputs).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from backbones.diffusers_flow.architectures.base import (PROMPTS, TOKENS, TRAIN_TIMESTEPS, Architecture, Condition,
                                                         sequence_length, time_in_float)


class SD3(Architecture):
    name = "sd3"
    transformer_class = "SD3Transformer2DModel"
    pipeline_class = "StableDiffusion3Pipeline"
    conditions = (Condition("prompt_embeds", (PROMPTS, TOKENS, "joint_attention_dim")),
                  Condition("pooled_prompt_embeds", (PROMPTS, "pooled_projection_dim")))
    timestep = "1000 t"

    def check_latent_size(self, config: Mapping[str, Any], size: int, where: str) -> None:
        patches, most = size // self.latent_multiple(config), config.get("pos_embed_max_size")
        if most is not None and patches > int(most):
            raise ValueError(f"diffusers: the {self.transformer_class} in {where} takes at most {most} patches a side "
                             f"(pos_embed_max_size), latents of side {size} have {patches}: give a smaller resolution")

    def velocity(self, transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                 conditions: Mapping[str, torch.Tensor], guidance: Optional[float]) -> torch.Tensor:
        return transformer(hidden_states=x, timestep=time_in_float(t) * TRAIN_TIMESTEPS,
                           encoder_hidden_states=conditions["prompt_embeds"],
                           pooled_projections=conditions["pooled_prompt_embeds"], return_dict=False)[0]

    def encode(self, pipeline: Any, prompts: list[str], negative_prompt: Optional[str], device: torch.device,
               max_sequence_length: Optional[int]) -> tuple[dict[str, torch.Tensor], Optional[dict[str, torch.Tensor]]]:
        """The pipeline encodes the negative prompt as it encodes a prompt (CLIP, CLIP and T5, one after the other)."""
        def encoded(texts: list[str]) -> dict[str, torch.Tensor]:
            embeds, _, pooled, _ = pipeline.encode_prompt(prompt=texts, prompt_2=None, prompt_3=None, device=device,
                                                          do_classifier_free_guidance=False,
                                                          **sequence_length(max_sequence_length))
            return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

        return encoded(prompts), None if negative_prompt is None else encoded([negative_prompt])
