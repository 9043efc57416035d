"""``SanaTransformer2DModel`` (Sana) as ``SanaPipeline`` runs it.

Its pipeline feeds the transformer ``timestep = scheduler timestep x timestep_scale`` (config),
where the scheduler's timestep is ``1000 sigma``, and takes the first ``in_channels`` output channels
where the transformer has a learned-variance head (``out_channels = 2 in_channels``); the output is
the flow velocity (the scheduler's ``flow_prediction``).  So ``v(x, t, y) = transformer(x, timestep
= 1000 t timestep_scale, prompt y)[:, :C]``, latents (C, H, W) with ``H = resolution / 32`` (its
DC-AE).  SanaPipeline's DPMSolverMultistepScheduler hands the transformer integer timesteps (the
integer part of 1000 sigma); solverbench's time is continuous, so the backbone gives it ``1000 t``
unrounded (docs/backbones/diffusers.md).  Conditions: ``prompt_embeds`` (P, L, caption_channels:
Gemma's tokens) and ``prompt_attention_mask`` (P, L).  Guidance-embedding Sana models (Sana
Sprint's) are not covered: their pipeline is another.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import torch

from backbones.diffusers_flow.architectures.base import (PROMPTS, TOKENS, TRAIN_TIMESTEPS, Architecture, Condition,
                                                         sequence_length, time_in_float)


class Sana(Architecture):
    name = "sana"
    transformer_class = "SanaTransformer2DModel"
    pipeline_class = "SanaPipeline"
    conditions = (Condition("prompt_embeds", (PROMPTS, TOKENS, "caption_channels")),
                  Condition("prompt_attention_mask", (PROMPTS, TOKENS), floating=False))
    downsampling = 32
    timestep = "1000 t timestep_scale"

    def check_config(self, config: Mapping[str, Any], where: str) -> None:
        if config.get("guidance_embeds"):
            raise ValueError(f"diffusers: the {self.transformer_class} in {where} embeds a guidance scale "
                             "(guidance_embeds, Sana Sprint's), which SanaPipeline does not give it; only "
                             "SanaPipeline's models are covered")

    def label_features(self, conditions: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sana has no pooled embedding: the mean of ``prompt_embeds`` over the tokens its attention mask keeps."""
        mask = conditions["prompt_attention_mask"].float()
        kept = (conditions["prompt_embeds"].float() * mask[..., None]).sum(dim=1)
        return kept / mask.sum(dim=1, keepdim=True).clamp(min=1.0)

    def velocity(self, transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                 conditions: Mapping[str, torch.Tensor], guidance: Optional[float]) -> torch.Tensor:
        config = transformer.config
        timestep = time_in_float(t) * TRAIN_TIMESTEPS * float(config.get("timestep_scale", 1.0))
        out = transformer(x, encoder_hidden_states=conditions["prompt_embeds"],
                          encoder_attention_mask=conditions["prompt_attention_mask"], timestep=timestep,
                          return_dict=False)[0]
        return out[:, :x.shape[1]]  # a learned-variance head's first half, as the pipeline takes it

    def encode(self, pipeline: Any, prompts: list[str], negative_prompt: Optional[str], device: torch.device,
               max_sequence_length: Optional[int]) -> tuple[dict[str, torch.Tensor], Optional[dict[str, torch.Tensor]]]:
        """With the options of SanaPipeline's ``__call__`` (its complex human instruction before each prompt, none
        before the negative one)."""
        defaults = inspect.signature(type(pipeline).__call__).parameters
        options = {key: defaults[key].default for key in ("clean_caption", "complex_human_instruction")
                   if key in defaults}
        guided = negative_prompt is not None
        embeds, mask, negative, negative_mask = pipeline.encode_prompt(
            prompt=prompts, do_classifier_free_guidance=guided, negative_prompt=negative_prompt if guided else "",
            device=device, **options, **sequence_length(max_sequence_length))
        conditions = {"prompt_embeds": embeds, "prompt_attention_mask": mask}
        return conditions, ({"prompt_embeds": negative[:1], "prompt_attention_mask": negative_mask[:1]} if guided
                            else None)
