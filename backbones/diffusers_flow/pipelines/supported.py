"""Which pipeline objects the pipeline integration runs: diffusers' ``StableDiffusion3Pipeline``, ``FluxPipeline`` and
``SanaPipeline`` (or subclasses of them), each mapped to the architecture whose conventions the ``diffusers`` backbone
follows (``backbones.diffusers_flow.architectures``)."""
from __future__ import annotations

from typing import Any

from backbones.diffusers_flow.architectures import BY_PIPELINE, Architecture


class PipelineError(ValueError):
    """A pipeline, prompt or setting that ``generate`` or ``SolverbenchScheduler`` cannot run; one line says why."""


def pipeline_architecture(pipe: Any) -> Architecture:
    """The architecture of ``pipe``'s class (the first of its classes, its own or a base, that is a supported
    pipeline); one line naming the supported pipelines otherwise."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in BY_PIPELINE:
            architecture = BY_PIPELINE[cls.__name__]
            transformer = getattr(pipe, "transformer", None)
            if transformer is None:
                raise PipelineError(f"the {type(pipe).__name__} has no transformer: load the pipeline with it")
            architecture.check_config(transformer.config, f"the {type(pipe).__name__}'s transformer")
            return architecture
    raise PipelineError(f"a {type(pipe).__name__} is not a pipeline solverbench runs: it runs "
                        f"{', '.join(BY_PIPELINE)} (and their subclasses)")
