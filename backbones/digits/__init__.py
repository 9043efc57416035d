"""The ``digits`` backbone and the ``digits-classifier`` feature extractor; importing registers both."""
from backbones.digits import backbone, features  # noqa: F401
