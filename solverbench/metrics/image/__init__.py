"""Image metrics (FID, sFID, KID, precision/recall, Inception Score) and their feature extractors.

Importing this package registers the metrics and the extractors ``inception-tf`` and
``inception-file``; torch-fidelity, clean-fid and torchvision are imported only when a
metric runs or an extractor is built.
"""
from solverbench.metrics.image import inception_file, inception_tf, metrics  # noqa: F401
