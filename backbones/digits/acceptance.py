"""Does the digits backbone draw digits? The share of samples the classifier labels as requested.

Labels cycle through 0-9 (balanced classes); noise is the harness's per-sample noise of
``seed``; samples go through ``solverbench.sample`` (so NFE is counted) and then through
``to_images`` and the classifier, exactly as a metric would see them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import solverbench as sb
from backbones.digits.data import NUM_CLASSES
from solverbench.noise import noise_for


@dataclass
class ClassAccuracy:
    overall: float
    per_class: list[float]
    num_samples: int
    nfe: int

    def __str__(self) -> str:
        classes = " ".join(f"{c}:{a:.2f}" for c, a in enumerate(self.per_class))
        return f"{self.overall:.4f} of {self.num_samples} samples labelled as requested (per class {classes})"


def class_accuracy(backbone, features, *, num_samples: int, nfe: int, cfg_scale: float, solver: str = "euler",
                   seed: int = 0, batch_size: int = 500) -> ClassAccuracy:
    """Sample ``num_samples`` digits and classify them with ``features.logits`` (the digits classifier)."""
    labels = torch.arange(num_samples) % NUM_CLASSES
    noise = noise_for(seed, range(num_samples), backbone.sample_shape)
    predicted, spent = [], set()
    for start in range(0, num_samples, batch_size):
        sl = slice(start, start + batch_size)
        result = sb.sample(backbone, solver, noise[sl], labels[sl], nfe=nfe, cfg_scale=cfg_scale)
        predicted.append(features.logits(backbone.to_images(result.samples)).argmax(dim=1))
        spent.add(result.nfe)
    correct = (torch.cat(predicted) == labels).float()
    per_class = [correct[labels == c].mean().item() for c in range(NUM_CLASSES)]
    return ClassAccuracy(correct.mean().item(), per_class, num_samples, max(spent))
