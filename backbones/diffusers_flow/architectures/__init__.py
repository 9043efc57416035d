"""The transformer classes the ``diffusers`` backbone runs, each with its pipeline's conventions.

- ``base``: what an architecture says (``Architecture``, ``Condition``);
- ``sd3``: ``SD3Transformer2DModel`` as ``StableDiffusion3Pipeline`` runs it (timestep 1000 t);
- ``flux``: ``FluxTransformer2DModel`` as ``FluxPipeline`` runs it (timestep t, packed latents, distilled guidance);
- ``sana``: ``SanaTransformer2DModel`` as ``SanaPipeline`` runs it (timestep 1000 t x timestep_scale).
"""
from __future__ import annotations

from backbones.diffusers_flow.architectures.base import Architecture, Condition
from backbones.diffusers_flow.architectures.flux import Flux
from backbones.diffusers_flow.architectures.sana import Sana
from backbones.diffusers_flow.architectures.sd3 import SD3

ARCHITECTURES: tuple[Architecture, ...] = (SD3(), Flux(), Sana())
BY_TRANSFORMER = {a.transformer_class: a for a in ARCHITECTURES}
BY_PIPELINE = {a.pipeline_class: a for a in ARCHITECTURES}

__all__ = ["ARCHITECTURES", "BY_PIPELINE", "BY_TRANSFORMER", "Architecture", "Condition"]
