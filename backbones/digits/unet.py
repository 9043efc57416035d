"""A small class-conditional U-Net for 8x8 images (two resolutions, attention at 4x4).

    8x8, C      in conv -> residual block ----------------------------- concat -> residual block -> out conv
    4x4, 2C         stride-2 conv -> residual block ----- concat -> residual block -> upsample
    4x4, 2C                          residual block -> self-attention -> residual block

Time and label are embedded into one conditioning vector (sinusoidal time embedding +
MLP, plus an embedding table with one extra row for the null label) that scales and
shifts the feature maps of every residual block.  The output convolution starts at
zero, so an untrained network predicts the zero velocity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backbones.time_embedding import sinusoidal_embedding

GROUPS = 8  # GroupNorm groups
TIME_SCALE = 1000.0  # t in [0, 1] is embedded as the DDPM timestep t * 1000


class ConditionEmbedding(nn.Module):
    """``MLP(sinusoid(1000 t)) + table[y]``; the table has ``num_classes + 1`` rows (the last: null)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label_table = nn.Embedding(num_classes + 1, dim)
        self.dim = dim

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.time_mlp(sinusoidal_embedding(t * TIME_SCALE, self.dim)) + self.label_table(y)


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv, scale/shift by the condition, GroupNorm-SiLU-conv, plus the skip."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.modulation = nn.Linear(cond_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(GROUPS, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.modulation(F.silu(cond))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class DigitsUNet(nn.Module):
    """``net(x, t, y) -> velocity`` for ``x`` of shape (B, 1, 8, 8); ``y`` may be the null label."""

    def __init__(self, width: int = 32, num_classes: int = 10, cond_dim: int = 128, heads: int = 4):
        super().__init__()
        c, c2 = width, 2 * width
        self.cond = ConditionEmbedding(num_classes, cond_dim)
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.down_high = ResidualBlock(c, c, cond_dim)
        self.downsample = nn.Conv2d(c, c2, 3, stride=2, padding=1)
        self.down_low = ResidualBlock(c2, c2, cond_dim)
        self.mid_in = ResidualBlock(c2, c2, cond_dim)
        self.mid_attention = SelfAttention(c2, heads)
        self.mid_out = ResidualBlock(c2, c2, cond_dim)
        self.up_low = ResidualBlock(2 * c2, c2, cond_dim)
        self.upsample = nn.Conv2d(c2, c, 3, padding=1)
        self.up_high = ResidualBlock(2 * c, c, cond_dim)
        self.out_norm = nn.GroupNorm(GROUPS, c)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cond = self.cond(t, y)
        high = self.down_high(self.stem(x), cond)  # 8x8
        low = self.down_low(self.downsample(high), cond)  # 4x4
        mid = self.mid_out(self.mid_attention(self.mid_in(low, cond)), cond)
        up = self.up_low(torch.cat([mid, low], dim=1), cond)
        up = self.upsample(F.interpolate(up, scale_factor=2, mode="nearest"))  # 8x8
        up = self.up_high(torch.cat([up, high], dim=1), cond)
        return self.out(F.silu(self.out_norm(up)))
