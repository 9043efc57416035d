"""The ``diffusion`` backbone (diffusion models presented as flows); importing registers it."""
from backbones.diffusion import backbone  # noqa: F401
