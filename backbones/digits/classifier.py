"""A small CNN that tells the ten digits apart; its penultimate layer is the digits feature space.

    (1, 8, 8) -> conv3x3 32 -> conv3x3 64 -> maxpool -> conv3x3 64 -> maxpool -> 256 -> 128 (features) -> 10

It judges the digits backbone (does a sample look like its requested class?) and its
128-D features serve the image metrics (FID and friends) as the ``digits-classifier``
feature extractor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from backbones.checkpoints import extract_state_dict, fit_state_dict, read_checkpoint
from backbones.digits.data import NUM_CLASSES

FEATURE_DIM = 128
SHIPPED_CLASSIFIER = Path(__file__).parent / "weights" / "classifier.pt"


class DigitsClassifier(nn.Module):
    """``forward(x) -> logits`` and ``features(x) -> (N, 128)`` for ``x`` in [-1, 1] of shape (N, 1, 8, 8)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.hidden = nn.Linear(64 * 2 * 2, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # 4x4
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)  # 2x2
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_classifier(checkpoint: Optional[str | Path] = None) -> DigitsClassifier:
    """The classifier with weights from ``checkpoint`` (default: the shipped one), in eval mode."""
    path = Path(checkpoint) if checkpoint is not None else SHIPPED_CLASSIFIER
    model = DigitsClassifier()
    fit_state_dict(model, extract_state_dict(read_checkpoint(path), path, key="state_dict"), path)
    return model.eval().requires_grad_(False)

