"""The project's image SideNet (``architecture: project``, the default; after paper Table 4):
depthwise-separable residual blocks with channel RMS-norm and scale/shift modulation, one
self-attention block in the middle.  The authors' own image SideNet is ``official.py``."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from solvers.ba.sidenet.base import ProjectSideNet
from solvers.ba.sidenet.conditioning import Modulation, RMSNorm, modulate


class ConvBlock(nn.Module):
    """``u + PW2 SiLU(PW1 DW3x3 modulate(RMSNorm(u), c))`` (depthwise 3x3, pointwise 1x1)."""

    def __init__(self, channels: int, cond_dim: int, expansion: int = 2):
        super().__init__()
        self.norm = RMSNorm(channels)
        self.modulation = Modulation(cond_dim, channels)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise_in = nn.Conv2d(channels, expansion * channels, 1)
        self.pointwise_out = nn.Conv2d(expansion * channels, channels, 1)

    def forward(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(c)
        y = self.depthwise(modulate(self.norm(u), scale, shift))
        return u + self.pointwise_out(F.silu(self.pointwise_in(y)))


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H x W positions, modulated, residual."""

    def __init__(self, channels: int, cond_dim: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"the image SideNet's width ({channels}) must be a multiple of its heads ({heads})")
        self.heads = heads
        self.norm = RMSNorm(channels)
        self.modulation = Modulation(cond_dim, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, ch, height, width = u.shape
        scale, shift = self.modulation(c)
        qkv = self.qkv(modulate(self.norm(u), scale, shift))
        # (3, b, heads, HW, ch/heads), contiguous: strided q, k, v send scaled_dot_product_attention to its
        # unfused path, which builds the HW x HW score matrix (9x slower on a CPU at 32 x 32 positions)
        qkv = qkv.reshape(b, 3, self.heads, ch // self.heads, height * width).permute(1, 0, 2, 4, 3).contiguous()
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, HW, ch/heads)
        return u + self.proj(out.transpose(-1, -2).reshape(b, ch, height, width))


class ImageSideNet(ProjectSideNet):
    """For backbones whose samples are images or latents, shape ``(C, H, W)``."""

    kind = "image"

    @staticmethod
    def pointwise(n_in: int, n_out: int) -> nn.Module:
        return nn.Conv2d(n_in, n_out, 1)

    def __init__(self, sample_shape, num_classes, null_label, **architecture):
        super().__init__(sample_shape, num_classes, null_label, **architecture)
        width, depth = self.spec["width"], self.spec["depth"]
        self.blocks = nn.ModuleList(ConvBlock(width, width) for _ in range(depth))
        self.attention = AttentionBlock(width, width, self.spec["heads"])
        self.middle = depth // 2

    def trunk(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            if i == self.middle:
                u = self.attention(u, c)
            u = block(u, c)
        return u
