"""The vector SideNet: the SideNet contract with an MLP of modulated residual blocks."""
from __future__ import annotations

import torch
from torch import nn

from solvers.ba.sidenet.base import ProjectSideNet
from solvers.ba.sidenet.conditioning import Modulation, RMSNorm, modulate


class MLPBlock(nn.Module):
    """``u + W2 SiLU(W1 modulate(RMSNorm(u), c))``."""

    def __init__(self, width: int, expansion: int = 2):
        super().__init__()
        self.norm = RMSNorm(width)
        self.modulation = Modulation(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, expansion * width), nn.SiLU(), nn.Linear(expansion * width, width))

    def forward(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(c)
        return u + self.mlp(modulate(self.norm(u), scale, shift))


class MLPSideNet(ProjectSideNet):
    """For backbones whose samples are vectors, shape ``(D,)``."""

    kind = "mlp"
    pointwise = staticmethod(nn.Linear)

    def __init__(self, sample_shape, num_classes, null_label, **architecture):
        super().__init__(sample_shape, num_classes, null_label, **architecture)
        self.blocks = nn.ModuleList(MLPBlock(self.spec["width"]) for _ in range(self.spec["depth"]))

    def trunk(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            u = block(u, c)
        return u
