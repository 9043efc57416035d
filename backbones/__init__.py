"""Built-in backbones; importing this package registers them all."""
from backbones import gmm  # noqa: F401
