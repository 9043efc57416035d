"""The ``digits-classifier`` feature extractor: the digits classifier's penultimate features.

Input: uint8 images (N, 1, 8, 8), values 0..255 (``DigitsFlow.to_images`` output).
Output: float32 features (N, 128), the ReLU activations of the classifier's hidden layer.
``logits(images)`` gives the (N, 10) class scores too (for an Inception-Score-style
metric and for the acceptance check of the digits backbone).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from backbones.digits.classifier import FEATURE_DIM, load_classifier
from backbones.digits.data import IMAGE_SHAPE, NUM_CLASSES, from_uint8
from solverbench import register_feature_extractor


class DigitsClassifierFeatures(nn.Module):
    """uint8 (N, 1, 8, 8) -> (N, 128) float features of the project's digits classifier."""

    feature_dim = FEATURE_DIM
    input_shape = IMAGE_SHAPE
    num_classes = NUM_CLASSES

    def __init__(self, checkpoint: Optional[str | Path] = None):
        super().__init__()
        self.classifier = load_classifier(checkpoint)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or images.dtype != torch.uint8:
            raise ValueError(f"the digits-classifier feature extractor takes uint8 images of shape "
                             f"(N, {', '.join(map(str, IMAGE_SHAPE))}), got {images.dtype} {tuple(images.shape)}")
        return from_uint8(images.to(self.classifier.head.weight.device))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(self._prepare(images))

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self._prepare(images))


@register_feature_extractor("digits-classifier")
def digits_classifier_features(weights_path: Optional[str | Path] = None) -> DigitsClassifierFeatures:
    """Penultimate (128-D) features of the project's digits CNN; input uint8 (N, 1, 8, 8).

    ``weights_path``: a classifier checkpoint written by ``python -m
    backbones.digits.train_classifier`` (default: the shipped one).
    """
    return DigitsClassifierFeatures(weights_path).eval()
