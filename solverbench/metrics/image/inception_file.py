"""``inception-file``: torch-fidelity's InceptionV3 with a weights file the user provides.

The file is torch-fidelity's own format (``weights-inception-2015-12-05-*.pth``, a state
dict with the classifier head ``fc``), named by the grid's ``feature_extractor_weights_path``.
Nothing is downloaded: a missing or mismatched file is an error naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from solverbench.metrics.image.inception_network import (
    FEATURE_DIMS_WITH_CLASSIFIER,
    METRIC_LAYERS_WITH_CLASSIFIER,
    InceptionV3Features,
)
from solverbench.registry import register_feature_extractor


def load_torch_fidelity_inception(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file {str(path)!r} does not exist "
                                "(metric option feature_extractor_weights_path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Inception weights file {str(path)!r} is not a readable torch state dict: {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"Inception weights file {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


@register_feature_extractor("inception-file")
def inception_file(weights_path: Optional[str] = None) -> InceptionV3Features:
    """torch-fidelity's TF-compatible InceptionV3 from a local weights file: FID, sFID and Inception Score."""
    if weights_path is None:
        raise ValueError("feature extractor 'inception-file' needs the metric option feature_extractor_weights_path "
                         "(a torch-fidelity Inception weights file)")
    path = Path(weights_path).expanduser()
    state = load_torch_fidelity_inception(path)
    return InceptionV3Features(with_classifier=True).load_checked(state, f"Inception weights file {str(path)!r}")


inception_file.metric_layers = METRIC_LAYERS_WITH_CLASSIFIER
inception_file.feature_dims = FEATURE_DIMS_WITH_CLASSIFIER
