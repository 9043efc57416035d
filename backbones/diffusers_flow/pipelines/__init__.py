"""solverbench's solvers in diffusers' flow pipelines (SD3, Flux, Sana): docs/pipelines.md.

- ``generate(pipe, prompts, solver=..., nfe=...)``: images in one call, any solver, the pipeline's own prompt
  encoding, noise, transformer and VAE around ``solverbench.sample`` (``generate``);
- ``SolverbenchScheduler``: a solver with diffusers' scheduler interface, for ``pipe.scheduler`` in the pipeline's
  own loop, giving ``solverbench.sample``'s latents (``scheduler``, run by ``stepping``);

and what they share: the supported pipelines (``supported``), the ``diffusers`` backbone on a pipeline in memory
(``backbone``), the pipelines' time grids (``time_grid``), latents and images (``latents``), the solver asked for
(``solver_choice``), the transformer's calls a prompt-conditioned solver reads (``transformer_calls``).
"""
from backbones.diffusers_flow.pipelines.generate import GenerateResult, generate
from backbones.diffusers_flow.pipelines.scheduler import SolverbenchScheduler
from backbones.diffusers_flow.pipelines.supported import PipelineError

__all__ = ["generate", "GenerateResult", "SolverbenchScheduler", "PipelineError"]
