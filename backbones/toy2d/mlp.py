"""The velocity MLP of the 2-D toy flows: ``[x, sinusoid(1000 t)] -> hidden x depth (SiLU) -> v``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from backbones.time_embedding import sinusoidal_embedding

TIME_FEATURES = 32
TIME_SCALE = 1000.0  # t in [0, 1] is embedded as the DDPM timestep t * 1000


class VelocityMLP(nn.Module):
    """An unconditional velocity network for 2-D points; the output layer starts at zero."""

    def __init__(self, hidden: int = 128, depth: int = 4, dim: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim + TIME_FEATURES
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        features = torch.cat([x, sinusoidal_embedding(t * TIME_SCALE, TIME_FEATURES)], dim=1)
        return self.out(self.body(features))
