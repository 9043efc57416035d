"""The one place a run draws its randomness: noise, labels and data, per (backbone, seed).

Noise and labels come per sample index (``solverbench.noise``), so a sample never depends
on the batch it is drawn in or on how a run is split.  Data draws (what distribution
metrics compare with) carry the cell's labels; draw 0 is the comparison set, draw 1 an
independent second set (the metrics' noise floor).
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from solverbench.noise import data_generator, edit_labels_for, labels_for, noise_for


class Draws:
    def __init__(self, backbone: Any, seed: int, num_samples: int, label_rule: str = "uniform"):
        self.backbone, self.seed, self.num_samples, self.label_rule = backbone, seed, num_samples, label_rule
        self._noise: dict[torch.dtype, torch.Tensor] = {}
        self._labels: Optional[torch.Tensor] = None
        self._labels_drawn = False

    def noise(self, dtype: torch.dtype) -> torch.Tensor:
        """Standard normal noise of samples ``0 .. N - 1`` (drawn in float64, then cast), on the CPU."""
        if dtype not in self._noise:
            self._noise[dtype] = noise_for(self.seed, range(self.num_samples), self.backbone.sample_shape, dtype)
        return self._noise[dtype]

    def labels(self) -> Optional[torch.Tensor]:
        """Class labels of samples ``0 .. N - 1`` on the CPU; None for an unconditional backbone."""
        if not self._labels_drawn:
            self._labels = labels_for(self.seed, range(self.num_samples), self.backbone.num_classes, self.label_rule)
            self._labels_drawn = True
        return self._labels

    def edit_labels(self) -> torch.Tensor:
        """A target class other than its own for samples ``0 .. N - 1`` (class edits), on the CPU."""
        return edit_labels_for(self.seed, self.labels(), self.backbone.num_classes)

    def data(self, n: int, draw: int = 0):
        """``n`` fresh data samples ``(x0, y)`` with the labels of samples ``0 .. n - 1``."""
        labels = self.labels()
        return self.backbone.sample_data(n, data_generator(self.seed, draw),
                                         labels=None if labels is None else labels[:n])
