"""The ``toy2d`` backbone (MLP flows on 2-D toy data); importing registers it."""
from backbones.toy2d import backbone  # noqa: F401
