"""The ``diffusers`` backbone: diffusers' flow-matching transformers (SD3, Flux, Sana) from local folders, their
conditions given as prompt sets (docs/backbones/diffusers.md).

- ``prompt_set``: the prompt-set file, a safetensors file of precomputed text embeddings, read, checked, written;
- ``architectures``: what each transformer class means (its timestep, its inputs, its latents, its pipeline's
  ``encode_prompt``), one module per class;
- ``folders``: a pipeline or model folder, its transformer found, checked and loaded;
- ``images``: latents decoded into images by the pipeline's VAE;
- ``backbone``: the registered backbone (importing it registers ``diffusers``);
- ``encoding``, ``command``: ``python -m solverbench encode-prompts``, a prompt set made by a pipeline's own text
  encoders.

Importing this package imports nothing else: ``command`` is read by ``solverbench --help`` without torch.
"""
