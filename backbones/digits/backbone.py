"""``digits``: a class-conditional flow-matching U-Net trained on scikit-learn's 8x8 digits.

Samples have shape (1, 8, 8) with pixels in [-1, 1]; labels 0-9, null label 10 (trained
with label dropout 0.1, so classifier-free guidance works).  By default the checkpoint
shipped in ``backbones/digits/weights/flow.pt`` is loaded; ``checkpoint=PATH`` loads
another written by ``python -m solverbench train-backbone digits``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from backbones.class_labels import labels_or_null
from backbones.digits.data import IMAGE_SHAPE, NUM_CLASSES, digits_dataset, to_uint8
from backbones.digits.unet import GROUPS, DigitsUNet
from backbones.flow_training import POSITIVE_INT, DataSampler, FlowTrainingConfig, multiple_of, option
from backbones.trained_flow import TrainedFlowBackbone
from solverbench import register_backbone

SHIPPED_FLOW = Path(__file__).parent / "weights" / "flow.pt"


def distinct_draws(size: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` indices into ``range(size)``: random permutations one after another, so no index
    repeats before all ``size`` have been drawn."""
    rounds = max(-(-n // size), 1)
    return torch.cat([torch.randperm(size, generator=generator) for _ in range(rounds)])[:n]


@dataclass
class DigitsTrainingConfig(FlowTrainingConfig):
    steps: int = option(1000, "optimiser steps", check=POSITIVE_INT)
    batch_size: int = option(128, "images per step", check=POSITIVE_INT)
    width: int = option(32, "U-Net channels at 8x8 (twice as many at 4x4)",
                        check=multiple_of(GROUPS, "the U-Net's GroupNorm groups"))


@register_backbone("digits")
class DigitsFlow(TrainedFlowBackbone):
    """Class-conditional flow-matching U-Net on scikit-learn's 8x8 digits (null label 10 for CFG)."""

    sample_shape = IMAGE_SHAPE
    num_classes = NUM_CLASSES
    null_label = NUM_CLASSES
    default_feature_extractor = "digits-classifier"
    label_dropout = 0.1
    TrainingConfig = DigitsTrainingConfig

    def __init__(self, checkpoint: Optional[str | Path] = None):
        super().__init__(SHIPPED_FLOW if checkpoint is None else checkpoint)
        images, labels = digits_dataset()
        order = torch.argsort(labels, stable=True)  # grouped by class, for drawing data of a given label
        self.register_buffer("data_images", images[order], persistent=False)  # moves with the backbone
        self.data_labels = labels[order]
        self.class_count = torch.bincount(self.data_labels, minlength=NUM_CLASSES)
        self.class_start = torch.cumsum(self.class_count, 0) - self.class_count

    @classmethod
    def build_network(cls, config: DigitsTrainingConfig) -> DigitsUNet:
        return DigitsUNet(width=config.width, num_classes=NUM_CLASSES)

    @classmethod
    def training_data(cls, config: DigitsTrainingConfig) -> DataSampler:
        images, labels = digits_dataset()

        def draw(n: int, generator: torch.Generator):
            index = torch.randint(len(labels), (n,), generator=generator)
            return images[index], labels[index]

        return draw

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = labels_or_null(y, x.shape[0], self.null_label, x.device, "digits")
        return self.net(x, t.to(x), y)

    def data_identity(self) -> dict[str, Any]:
        return {"dataset": "sklearn.datasets.load_digits", "images": "[-1, 1], 1x8x8"}

    def sample_data(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
        """``n`` images of the data set, uniformly or each of its given label (images on the backbone's
        device, labels on the CPU).  Draws are distinct while the data set (or the class) has images
        left, so a reference set for FID or precision/recall repeats no image it need not."""
        if labels is None:
            index = distinct_draws(len(self.data_labels), n, generator)
        else:
            labels = labels.long().cpu()
            if torch.any((labels < 0) | (labels >= NUM_CLASSES)):
                raise ValueError(f"digits data labels must lie in [0, {NUM_CLASSES - 1}]")
            index = torch.empty(n, dtype=torch.long)
            for c in labels.unique().tolist():
                where = torch.nonzero(labels == c).squeeze(1)
                index[where] = self.class_start[c] + distinct_draws(int(self.class_count[c]), len(where), generator)
        return self.data_images[index.to(self.data_images.device)], self.data_labels[index]

    def to_images(self, samples: torch.Tensor) -> torch.Tensor:
        """[-1, 1] samples (N, 1, 8, 8) -> uint8 images (N, 1, 8, 8)."""
        return to_uint8(samples.detach().cpu())
