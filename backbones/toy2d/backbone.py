"""``toy2d``: small unconditional MLP flows trained on 2-D toy data (for the report's scatter grids).

``dataset`` picks one of ``checkerboard``, ``moons``, ``eight-gaussians``, ``spirals``; its
shipped checkpoint ``backbones/toy2d/weights/<dataset>.pt`` is loaded unless
``checkpoint=PATH`` names another (written by ``python -m solverbench train-backbone toy2d
--dataset NAME``).  ``sample_data`` draws from the data set's own generator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from backbones.flow_training import POSITIVE_INT, DataSampler, FlowTrainingConfig, option
from backbones.toy2d.datasets import TOY_DATASETS
from backbones.toy2d.mlp import VelocityMLP
from backbones.trained_flow import TrainedFlowBackbone
from solverbench import register_backbone

WEIGHTS = Path(__file__).parent / "weights"


@dataclass
class Toy2DTrainingConfig(FlowTrainingConfig):
    dataset: str = option("checkerboard", "the 2-D data set", choices=tuple(TOY_DATASETS))
    steps: int = option(15000, "optimiser steps", check=POSITIVE_INT)
    batch_size: int = option(512, "points per step", check=POSITIVE_INT)
    hidden: int = option(256, "MLP width", check=POSITIVE_INT)
    depth: int = option(4, "hidden layers", check=POSITIVE_INT)


@register_backbone("toy2d")
class Toy2DFlow(TrainedFlowBackbone):
    """Unconditional MLP flow on 2-D toy data: checkerboard, moons, eight-gaussians or spirals."""

    sample_shape = (2,)
    num_classes = None
    null_label = None
    TrainingConfig = Toy2DTrainingConfig

    def __init__(self, dataset: Optional[str] = None, checkpoint: Optional[str | Path] = None):
        if dataset is not None and dataset not in TOY_DATASETS:
            raise ValueError(f"unknown toy2d dataset {dataset!r}; known: {', '.join(TOY_DATASETS)}")
        if checkpoint is None:
            if dataset is None:
                raise ValueError(f"toy2d needs dataset= (one of {', '.join(TOY_DATASETS)}) or checkpoint=PATH")
            checkpoint = WEIGHTS / f"{dataset}.pt"
        super().__init__(checkpoint)
        if dataset is not None and dataset != self.config.dataset:
            raise ValueError(f"checkpoint {str(checkpoint)!r} was trained on {self.config.dataset!r}, not {dataset!r}")
        self.dataset = self.config.dataset

    @classmethod
    def build_network(cls, config: Toy2DTrainingConfig) -> VelocityMLP:
        return VelocityMLP(hidden=config.hidden, depth=config.depth)

    @classmethod
    def training_data(cls, config: Toy2DTrainingConfig) -> DataSampler:
        draw_points = TOY_DATASETS[config.dataset]
        return lambda n, generator: (draw_points(n, generator), None)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(x, t.to(x))

    def sample_data(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
        if labels is not None:
            raise ValueError("toy2d is unconditional: it draws data without labels")
        return TOY_DATASETS[self.dataset](n, generator), None

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "dataset": self.dataset}

    def data_identity(self) -> dict[str, Any]:
        return {"dataset": f"toy2d/{self.dataset}"}
