"""``diffusers``: a diffusers flow-matching transformer (SD3, Flux, Sana) from a local folder, its prompts as labels.

``model`` is a pipeline folder (its ``transformer/``, and ``vae/`` for images) or a model folder;
the transformer's class (its config's ``_class_name``) picks the architecture, whose pipeline's
conventions map its timestep onto solverbench's time once (t = sigma; ``architectures``): the
velocity is ``v = eps - x0`` at ``x_t = (1 - t) x0 + t eps``, the scheduler's flow velocity.
Samples are the latents the pipeline denoises, (C, H, W) with ``H = W = resolution / d`` (d the
VAE's downsampling: its config's, or the pipeline's default, 8 or Sana's 32); Flux's packing into
tokens happens inside the velocity, so every solver sees image-shaped latents.  The transformer's
weights are in ``dtype``; the latents, time and conditions reach it in that dtype, and the velocity
comes back in the latents' own.

Conditions are a prompt set (``prompt_set``): a sample's label is its prompt's index
(``num_classes`` = P prompts) and the null label P its negative prompt, so classifier-free guidance,
guidance intervals, ``labels: balanced`` and every solver work unchanged; no label (``y`` None) is
the negative prompt.  Flux's distilled guidance (``guidance``) is a setting of the model, not
classifier-free guidance.  A label's features (``label_features``, the backbone contract's) are its
prompt's pooled embedding (SD3, Flux: ``pooled_prompt_embeds``; Sana: ``prompt_embeds`` averaged over
the tokens of its attention mask), the negative prompt's for the null label; the prompt set's digest
and size are the identity's ``label_identity``.  ``to_images`` decodes with the VAE (``images``); the
backbone draws no data, so image metrics need a reference batch (``metric_options: {reference_batch:
FILE.npz}``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from backbones.diffusers_flow.folders import (WEIGHTS, TransformerFolder, find_transformer, folder_sha256,
                                              load_transformer, torch_dtype)
from backbones.diffusers_flow.images import VaeFolder, decode, read_vae
from backbones.diffusers_flow.prompt_set import NEGATIVE_PREFIX, PromptSet, read_prompt_set
from solverbench import Backbone, register_backbone
from solverbench.hashing import file_sha256

BUFFER_PREFIX = "condition_"  # the conditions' tables (P prompts, then the negative prompt) are buffers of this name


@register_backbone("diffusers")
class DiffusersFlowBackbone(Backbone):
    """diffusers' flow-matching transformers (SD3, Flux, Sana) from a local folder; a prompt set's prompts as labels."""

    path_params = ("model", "prompts", "vae")
    label_identity = ("prompts_sha256", "prompts")  # the identity's keys that only say which prompts are the labels
    default_feature_extractor = "inception-tf"

    def __init__(self, model: str | Path, prompts: str | Path, resolution: Optional[int] = None,
                 dtype: str = "float32", guidance: Optional[float] = None, vae: Optional[str | Path] = None,
                 weights: str = "folder"):
        super().__init__()
        if weights not in WEIGHTS:
            raise ValueError(f"diffusers: weights must be one of {', '.join(WEIGHTS)} (the folder's weights, or "
                             f"random ones from its config alone, for costs), got {weights!r}")
        self.weights = weights
        weights_dtype = torch_dtype(dtype)
        folder = find_transformer(model)
        architecture, config, where = folder.architecture, folder.config, folder.where()
        self.guidance = architecture.guidance_setting(config, guidance, where)
        prompt_set = read_prompt_set(prompts)
        architecture.check_prompt_set(prompt_set, config, where)
        self.vae: Optional[VaeFolder] = read_vae(vae) if vae is not None else \
            read_vae(folder.pipeline_vae) if folder.pipeline_vae is not None else None
        channels = architecture.latent_channels(config)
        if self.vae is not None and self.vae.latent_channels != channels:
            raise ValueError(f"diffusers: vae folder {str(self.vae.path)!r} makes {self.vae.latent_channels}-channel "
                             f"latents; the {architecture.transformer_class} in {where} takes {channels}")
        latent = self._latent_size(folder, resolution)
        self.sample_shape = (channels, latent, latent)
        self.architecture = architecture
        self.num_classes = prompt_set.size
        self.null_label = prompt_set.size if prompt_set.has_negative else None
        self.prompts = prompt_set.prompts
        self.settings = {"model": architecture.name, "transformer": architecture.transformer_class,
                         "resolution": latent * self.downsampling, "dtype": dtype,
                         **({"guidance": self.guidance} if self.guidance is not None else {})}
        self._files = (folder.path, prompt_set.path)
        self._identity: Optional[dict[str, Any]] = None
        for condition in architecture.conditions:
            self.register_buffer(BUFFER_PREFIX + condition.name, condition_table(prompt_set, condition.name),
                                 persistent=False)
        if weights == "random":
            self.settings["weights"] = "random"
        self.transformer = load_transformer(folder, weights_dtype, weights)

    def _latent_size(self, folder: TransformerFolder, resolution: Optional[int]) -> int:
        """The latents' side at ``resolution`` px (None: the pipeline's default), checked against the transformer."""
        architecture, config, where = folder.architecture, folder.config, folder.where()
        self.downsampling = self.vae.downsampling if self.vae is not None else architecture.downsampling
        multiple = self.downsampling * architecture.latent_multiple(config)
        if resolution is None:
            latent = architecture.default_latent_size(config)
        elif isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < multiple or \
                resolution % multiple:
            raise ValueError(f"diffusers: resolution must be a whole multiple of {multiple} px (VAE downsampling "
                             f"{self.downsampling} x the {architecture.transformer_class}'s "
                             f"{architecture.latent_multiple(config)}-latent patches), got {resolution!r}")
        else:
            latent = resolution // self.downsampling
        architecture.check_latent_size(config, latent, where)
        return latent

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = self._labels(y, x.shape[0])
        dtype = self.transformer.dtype
        conditions = {}
        for condition in self.architecture.conditions:
            table = getattr(self, BUFFER_PREFIX + condition.name)
            rows = table[y.to(table.device)]
            conditions[condition.name] = rows.to(dtype) if condition.floating else rows
        v = self.architecture.velocity(self.transformer, x.to(dtype), t.to(x.device), conditions, self.guidance)
        return v.to(x.dtype)

    def label_features(self, y: torch.Tensor) -> torch.Tensor:
        """(batch, F) float32: the pooled prompt embedding of each label's prompt (the null label's: the negative
        prompt's)."""
        y = self._labels(y, len(y))
        tables = {c.name: getattr(self, BUFFER_PREFIX + c.name) for c in self.architecture.conditions}
        return self.architecture.label_features({name: table[y.to(table.device)] for name, table in tables.items()})

    def _labels(self, y: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """Prompt indices as a long tensor; None is the negative prompt.  Labels outside ``[0, P]`` (``[0, P)`` without
        a negative prompt) are refused."""
        last = self.num_classes if self.null_label is not None else self.num_classes - 1
        if y is None:
            if self.null_label is None:
                raise ValueError("diffusers: give each sample a label (its prompt's index): the prompt set holds no "
                                 "negative prompt, so there is no null label")
            return torch.full((batch,), self.null_label, dtype=torch.long)
        y = y.long()
        if torch.any((y < 0) | (y > last)):
            null = f" (the null label {self.null_label}: the negative prompt)" if self.null_label is not None else ""
            raise ValueError(f"diffusers labels are prompt indices in [0, {last}]{null}")
        return y

    def identity(self) -> dict[str, Any]:
        """The transformer's folder and the prompt set by their bytes, and the settings that change the velocity."""
        if self._identity is None:
            transformer, prompts = self._files
            self._identity = {"class": "diffusers", **self.settings, "transformer_sha256": folder_sha256(transformer),
                              "prompts_sha256": file_sha256(prompts), "prompts": self.num_classes}
        return dict(self._identity)

    def to_images(self, samples: torch.Tensor) -> torch.Tensor:
        """Latents (N, C, h, w) -> uint8 RGB images (N, 3, h d, w d), decoded by the pipeline's VAE."""
        if self.vae is None:
            raise ValueError("diffusers makes images only with a VAE: give model=PIPELINE_FOLDER (its vae/) or "
                             "vae=FOLDER (a local AutoencoderKL or AutoencoderDC folder)")
        return decode(self.vae, samples)


def condition_table(prompt_set: PromptSet, name: str) -> torch.Tensor:
    """The condition ``name`` of the P prompts, then the negative prompt's where the set holds it: row ``y`` is label
    ``y``'s."""
    rows = prompt_set.tensors[name]
    negative = prompt_set.tensors.get(NEGATIVE_PREFIX + name)
    return rows if negative is None else torch.cat([rows, negative.to(rows.dtype)])
