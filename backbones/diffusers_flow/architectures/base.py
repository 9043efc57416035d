"""What solverbench needs to know of a diffusers transformer class to run it as a flow backbone.

An ``Architecture`` names its transformer class and the pipeline whose conventions it follows, says
which prompt-set tensors condition it (``Condition``: their dimensions, named by the transformer's
config keys), its latents' channels and size, how its time is our ``t`` (its ``velocity``), and
how its pipeline's ``encode_prompt`` makes a prompt set (``encode``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from backbones.diffusers_flow.prompt_set import NEGATIVE_PREFIX, PromptSet, PromptSetError

# diffusers' flow-matching schedulers: timestep = sigma * num_train_timesteps, 1000 in the released configs
TRAIN_TIMESTEPS = 1000
PROMPTS, TOKENS = "prompts", "tokens"  # dimensions of a condition that are not config keys


@dataclass(frozen=True)
class Condition:
    """A prompt-set tensor the transformer takes: its ``name`` in the file, its dimensions (``PROMPTS``, ``TOKENS`` or
    a config key giving the width), whether it is floating point (an embedding) or integer (a mask)."""

    name: str
    dims: tuple[str, ...]
    floating: bool = True


class Architecture:
    """One transformer class's conventions; subclasses fill them in."""

    name: str  # e.g. "sd3": the identity's model
    transformer_class: str  # diffusers' class name, as a folder's config.json names it
    pipeline_class: str  # the pipeline it follows, whose encode_prompt encode-prompts runs
    conditions: tuple[Condition, ...]
    negative_required: bool = True  # the prompt set must hold the negative prompt (else: no null label)
    downsampling: int = 8  # image pixels per latent pixel: the pipeline's vae_scale_factor without a VAE
    timestep: str  # the transformer's timestep in terms of t, for messages and docs

    # -- latents ------------------------------------------------------------------------------

    def latent_channels(self, config: Mapping[str, Any]) -> int:
        return int(config["in_channels"])

    def default_latent_size(self, config: Mapping[str, Any]) -> int:
        """The pipeline's default latent side (its default_sample_size)."""
        return int(config["sample_size"])

    def latent_multiple(self, config: Mapping[str, Any]) -> int:
        """The latent side must be a multiple of this (the transformer's patches)."""
        return int(config.get("patch_size") or 1)

    def check_latent_size(self, config: Mapping[str, Any], size: int, where: str) -> None:
        """Refuse a latent side the transformer cannot take (beyond its patch multiple); nothing by default."""

    # -- settings -----------------------------------------------------------------------------

    def guidance_setting(self, config: Mapping[str, Any], guidance: Optional[float], where: str) -> Optional[float]:
        """The distilled guidance the transformer is called with (Flux's); None for an architecture without one, which
        refuses a ``guidance`` given."""
        if guidance is not None:
            raise ValueError(f"diffusers: guidance={guidance!r} is the distilled guidance scale of Flux models with "
                             f"guidance_embeds; {where} holds a {self.transformer_class}, which has none: guide it "
                             "with classifier-free guidance (a grid's guidance: or sample's cfg_scale) and leave "
                             "guidance out")
        return None

    def check_config(self, config: Mapping[str, Any], where: str) -> None:
        """Refuse a config of this class that the pipeline's conventions do not cover; nothing by default."""

    # -- conditions ---------------------------------------------------------------------------

    def check_prompt_set(self, prompt_set: PromptSet, config: Mapping[str, Any], where: str) -> None:
        """The prompt set holds every condition, as wide as ``config`` says, with one token count across its
        conditions; the negative prompt's where the architecture needs one (one line naming the file otherwise)."""
        place = prompt_set.where()
        tensors = prompt_set.tensors
        wanted = [c.name for c in self.conditions]
        missing = [n for n in wanted if n not in tensors]
        if self.negative_required or prompt_set.has_negative:
            missing += [NEGATIVE_PREFIX + n for n in wanted if NEGATIVE_PREFIX + n not in tensors]
        if missing:
            need = "" if self.negative_required else " (the negative ones only with all of them)"
            raise PromptSetError(f"{place} lacks {', '.join(missing)}: a {self.transformer_class} takes "
                                 f"{', '.join(wanted)} and the negative prompt's {NEGATIVE_PREFIX}<name>{need} "
                                 f"({self.pipeline_class}.encode_prompt's outputs; encode-prompts writes them)")
        tokens: dict[str, int] = {}
        for condition in self.conditions:
            tensor = tensors[condition.name]
            if tensor.dim() != len(condition.dims):
                raise PromptSetError(f"{place}: {condition.name} has shape {tuple(tensor.shape)}; a "
                                     f"{self.transformer_class} takes it as ({', '.join(condition.dims)})")
            if tensor.is_floating_point() != condition.floating:
                kind = "floating-point embeddings" if condition.floating else "an integer or boolean mask"
                raise PromptSetError(f"{place}: {condition.name} has dtype {str(tensor.dtype).removeprefix('torch.')}, "
                                     f"not {kind}")
            for size, dim in zip(tensor.shape[1:], condition.dims[1:]):
                if dim == TOKENS:
                    tokens[condition.name] = int(size)
                elif int(size) != int(config[dim]):
                    raise PromptSetError(
                        f"{place}: {condition.name} has width {int(size)}, but the {self.transformer_class} in {where} "
                        f"takes {config[dim]} ({dim} of its config): encode the prompts with this model's pipeline")
        if len(set(tokens.values())) > 1:
            shown = ", ".join(f"{n} {k}" for n, k in tokens.items())
            raise PromptSetError(f"{place}: its conditions have different token counts ({shown}); one encoding gives "
                                 "them all one")

    def label_features(self, conditions: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One feature vector per row of ``conditions`` (the backbone's ``label_features``): the pooled prompt
        embedding, ``pooled_prompt_embeds`` (SD3's and Flux's); an architecture without one says its own."""
        return conditions["pooled_prompt_embeds"].float()

    # -- the transformer ----------------------------------------------------------------------

    def velocity(self, transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                 conditions: Mapping[str, torch.Tensor], guidance: Optional[float]) -> torch.Tensor:
        """``v = eps - x0`` at ``(x, t)`` (t = sigma), latents ``x`` (B, C, H, W) and ``conditions`` in the
        transformer's dtype, one row per sample."""
        raise NotImplementedError

    # -- encode-prompts -----------------------------------------------------------------------

    def encode(self, pipeline: Any, prompts: list[str], negative_prompt: Optional[str], device: torch.device,
               max_sequence_length: Optional[int]) -> tuple[dict[str, torch.Tensor], Optional[dict[str, torch.Tensor]]]:
        """The conditions of ``prompts`` by name, and the negative prompt's (one row; None without one), as the
        pipeline's ``__call__`` makes them with its ``encode_prompt``."""
        raise NotImplementedError


def time_in_float(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32: a timestep of hundreds is not rounded to a half-precision value."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def sequence_length(max_sequence_length: Optional[int]) -> dict[str, int]:
    """``encode_prompt``'s ``max_sequence_length`` where one is given (else its own default)."""
    return {} if max_sequence_length is None else {"max_sequence_length": int(max_sequence_length)}
