"""The ``diffusers`` backbone on a pipeline object in memory, its labels the prompts of one call.

``PipelineBackbone`` is ``DiffusersFlowBackbone`` (its velocity, label features and labels, unchanged) built from a
pipeline's transformer and the conditions its ``encode_prompt`` made for some prompts, instead of from a folder and a
prompt-set file: label ``i`` is prompt ``i``, and the null label ``P`` the negative prompt where one was encoded.  Its
identity is the one ``DiffusersFlowBackbone`` gives the folder the transformer was loaded from (the folder's SHA-256,
the resolution, the dtype, Flux's distilled guidance), so that a SideNet checkpoint trained on that backbone is
recognised here; only the prompts differ, which a feature-conditioned SideNet leaves aside.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from backbones.diffusers_flow.architectures import Architecture
from backbones.diffusers_flow.architectures.base import PROMPTS, TOKENS
from backbones.diffusers_flow.backbone import BUFFER_PREFIX, DiffusersFlowBackbone
from backbones.diffusers_flow.folders import folder_sha256
from backbones.diffusers_flow.pipelines.supported import PipelineError
from solverbench.backbone import Backbone


class PipelineBackbone(DiffusersFlowBackbone):
    """A pipeline's transformer as a flow backbone: latents ``(C, h, w)`` (Flux's unpacked), prompts as labels."""

    def __init__(self, pipe: Any, architecture: Architecture, conditions: Mapping[str, torch.Tensor],
                 negative: Optional[Mapping[str, torch.Tensor]], latent_size: tuple[int, int],
                 guidance: Optional[float], prompts: tuple[str, ...] = (),
                 decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        Backbone.__init__(self)  # not DiffusersFlowBackbone's, which reads a folder and a prompt-set file
        transformer = pipe.transformer
        config = transformer.config
        self.architecture = architecture
        self.transformer = transformer
        self.weights = "folder"
        self.guidance = guidance
        self.vae = None
        self.downsampling = int(pipe.vae_scale_factor)
        self.sample_shape = (architecture.latent_channels(config), *latent_size)
        self.num_classes = int(next(iter(conditions.values())).shape[0])
        self.null_label = self.num_classes if negative is not None else None
        self.prompts = tuple(prompts)
        height, width = (side * self.downsampling for side in latent_size)
        self.settings = {"model": architecture.name, "transformer": architecture.transformer_class,
                         "resolution": height if height == width else [height, width],
                         "dtype": str(transformer.dtype).removeprefix("torch."),
                         **({"guidance": guidance} if guidance is not None else {})}
        for condition in architecture.conditions:
            rows = conditions[condition.name]
            table = rows if negative is None else torch.cat([rows, negative[condition.name].to(rows.dtype)])
            self.register_buffer(BUFFER_PREFIX + condition.name, table, persistent=False)
        self._decode = decode
        self.on_evaluation: Optional[Callable[[], None]] = None  # called after each velocity (a progress bar's)
        self._identity: Optional[dict[str, Any]] = None

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        v = super().forward(x, t, y)
        if self.on_evaluation is not None:
            self.on_evaluation()
        return v

    def identity(self) -> dict[str, Any]:
        """``DiffusersFlowBackbone``'s identity of the transformer's folder; the prompts by a digest of their
        conditions."""
        if self._identity is None:
            digest = hashlib.sha256()
            for condition in self.architecture.conditions:
                digest.update(getattr(self, BUFFER_PREFIX + condition.name).detach().cpu().contiguous()
                              .view(torch.uint8).numpy().tobytes())
            self._identity = {"class": "diffusers", **self.settings,
                              "transformer_sha256": transformer_sha256(self.transformer),
                              "prompts_sha256": digest.hexdigest(), "prompts": self.num_classes}
        return dict(self._identity)

    def to_images(self, samples: torch.Tensor) -> torch.Tensor:
        """Latents -> uint8 RGB images, decoded by the pipeline's VAE as the pipeline decodes them."""
        if self._decode is None:
            raise PipelineError("this pipeline backbone was built without its pipeline's VAE")
        images = self._decode(samples)
        return torch.round((images.float() / 2 + 0.5).clamp(0, 1) * 255).to(torch.uint8).cpu()


def transformer_folder(transformer: Any) -> Optional[Path]:
    """The local folder ``transformer`` was loaded from (``from_pretrained``), where it has one."""
    name = transformer.config.get("_name_or_path")
    folder = Path(str(name)).expanduser() if name else None
    return folder if folder is not None and (folder / "config.json").is_file() else None


def transformer_sha256(transformer: Any) -> str:
    """The SHA-256 of the folder ``transformer`` was loaded from, as ``DiffusersFlowBackbone`` computes it."""
    folder = transformer_folder(transformer)
    if folder is None:
        raise PipelineError(f"the pipeline's {type(transformer).__name__} was not loaded from a local folder "
                            "(from_pretrained), so nothing made for a folder's transformer (a SideNet checkpoint) "
                            "can be checked against it")
    return folder_digest(str(folder.resolve()))


@lru_cache(maxsize=4)
def folder_digest(folder: str) -> str:
    """``folder_sha256`` of a folder, computed once per process (a large model's folder takes a while)."""
    return folder_sha256(Path(folder))


def placeholder_conditions(architecture: Architecture, config: Mapping[str, Any], device: Any
                           ) -> dict[str, torch.Tensor]:
    """One prompt's conditions of the widths ``config`` gives, all zeros: what a backbone needs to be checked (its
    identity, its label features' width) before any prompt is encoded."""
    conditions = {}
    for condition in architecture.conditions:
        shape = [1 if dim in (PROMPTS, TOKENS) else int(config[dim]) for dim in condition.dims]
        dtype = torch.float32 if condition.floating else torch.long
        conditions[condition.name] = torch.zeros(shape, dtype=dtype, device=device)
    return conditions
