"""Built-in backbones; importing this package registers them all."""
from backbones import digits, gmm, sit, toy2d  # noqa: F401
