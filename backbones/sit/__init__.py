"""The ``sit`` backbone (SiT/REPA transformers on SD-VAE latents); importing registers it."""
from backbones.sit import backbone  # noqa: F401
