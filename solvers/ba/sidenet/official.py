"""The authors' image SideNet (``architecture: official``): the network of
HKUST-LongGroup/BA-solver's ``models/side_net.py`` (``BASideNet``), written anew with the same
parameter names and shapes, so a state dict of theirs loads with no missing or unexpected key
and gives the same output.

    emb = MLP([T_t(t), T_h(h), E[y]])     T: sinusoid of the raw t or h (no x1000), Linear-SiLU-Linear
    u   = Conv3x3([x, v])                 no bias
    u   = block_i(u, emb), i < depth      block depth // 2 is attention, the others residual
    dv  = h Conv3x3(SiLU(RMSNorm(u)))     zero-initialised: v_hat = v before training

- residual block: ``u + PW(DW(SiLU(mod(RMSNorm(PW(DW(RMSNorm(u))))))))``, two depthwise 3x3 +
  pointwise 1x1 pairs (C -> C), no bias but the last pointwise conv's;
- attention block: ``u + P(MHA(QKV(mod(RMSNorm(u)))))``, 4 heads, no biases;
- ``mod(z) = z (1 + scale) + shift`` with ``(scale, shift) = Linear(emb)`` (no activation
  before it, default initialisation); RMSNorm over channels without gain, eps 1e-5.

How it differs from this project's image SideNet (``image.py``): a 3x3 input conv; ``depth``
counts the attention block (4 = 3 residual + 1 attention); two depthwise + pointwise pairs per
residual block with the modulation between them (the project: one depthwise conv and a 2x
pointwise MLP after the modulation); t, h and y fused by an MLP over their concatenation (the
project sums them); raw t and h in the sinusoids (the project scales them by 1000); no norm
gains; a plain head without modulation (the project's default head is gated, ``base.py``).
``embed_dim`` is the conditioning width (their ``h_emb_dim``); the sinusoids have 256
frequencies whatever it is, as in theirs.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from solvers.ba.sidenet.base import SideNet
from solvers.ba.sidenet.conditioning import LabelFeatures

FREQUENCY_DIM = 256  # size of the sinusoidal embedding of t and h (fixed in the authors' code)
HEADS = 4  # attention heads (fixed in the authors' code)
EPS = 1e-5


def channel_rms_norm(u: torch.Tensor) -> torch.Tensor:
    """``u / sqrt(mean_c u^2 + 1e-5)`` over the channel axis, no gain."""
    return u * torch.rsqrt(u.pow(2).mean(dim=1, keepdim=True) + EPS)


def modulated(z: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """``z (1 + scale) + shift``, ``style = [scale, shift]`` of shape (B, 2C)."""
    scale, shift = style[:, :, None, None].chunk(2, dim=1)
    return torch.addcmul(shift, z, scale + 1.0)


class SinusoidEmbedder(nn.Module):
    """``Linear-SiLU-Linear([cos(s f_k), sin(s f_k)])``, ``f_k = 10000^(-k / (F/2))``, ``s`` raw."""

    def __init__(self, dim: int, frequency_dim: int = FREQUENCY_DIM):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.frequency_dim = frequency_dim
        half = frequency_dim // 2
        # made once on the CPU, as the authors' buffer is, so the frequencies agree to the bit on any device
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half),
                             persistent=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        angles = s.reshape(-1, 1).float() * self.freqs.reshape(1, -1)
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        if self.frequency_dim % 2:
            emb = F.pad(emb, (0, 1))
        return self.mlp(emb.to(s.dtype))


class LabelTable(nn.Module):
    """One row per class and a last row for the null label."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(rows, dim)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(rows)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, emb_dim: int):
        super().__init__()
        self.conv1_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.conv1_pw = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.conv2_pw = nn.Conv2d(channels, channels, 1)
        self.emb_proj = nn.Linear(emb_dim, 2 * channels)

    def forward(self, u: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.conv1_pw(self.conv1_dw(channel_rms_norm(u)))
        z = modulated(channel_rms_norm(z), self.emb_proj(emb))
        return u + self.conv2_pw(self.conv2_dw(F.silu(z)))


class AttentionBlock(nn.Module):
    def __init__(self, channels: int, emb_dim: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"the official SideNet's width ({channels}) must be a multiple of its heads ({heads})")
        self.heads = heads
        self.emb_proj = nn.Linear(emb_dim, 2 * channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, u: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, c, height, width = u.shape
        qkv = self.qkv(modulated(channel_rms_norm(u), self.emb_proj(emb)))
        # (3, b, heads, HW, c / heads): channel index = (which, head, dim), as the authors split it
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, height * width).permute(1, 0, 2, 4, 3).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return u + self.proj(out.transpose(2, 3).reshape(b, c, height, width))


class OfficialImageSideNet(SideNet):
    """The authors' SideNet for samples of shape ``(C, H, W)``: ``width`` base channels,
    ``depth`` blocks counting the attention block, ``embed_dim`` the conditioning width;
    ``label_features`` F: the labels' feature vectors of width F instead of their table (not
    in the authors' code)."""

    kind = "image"

    def __init__(self, sample_shape: Sequence[int], num_classes: Optional[int], null_label: Optional[int], *,
                 width: int, depth: int, embed_dim: int, heads: int = HEADS, frequency_dim: int = FREQUENCY_DIM,
                 label_features: Optional[int] = None):
        super().__init__()
        if len(sample_shape) != 3:
            raise ValueError(f"the official SideNet is for image samples (C, H, W), not {tuple(sample_shape)}")
        self.spec = {"kind": self.kind, "architecture": "official", "sample_shape": list(sample_shape),
                     "num_classes": num_classes, "null_label": null_label, "width": width, "depth": depth,
                     "embed_dim": embed_dim, "heads": heads, "frequency_dim": frequency_dim,
                     **({"label_features": label_features} if label_features is not None else {})}
        self.num_classes = num_classes or 0  # an unconditional backbone gets the null row only
        self.null_label = null_label
        channels = sample_shape[0]
        self.h_embedder = SinusoidEmbedder(embed_dim, frequency_dim)
        self.t_embedder = SinusoidEmbedder(embed_dim, frequency_dim)
        # label features (a prompt's pooled embedding) through a learned linear map, where the backbone offers them
        self.y_embedder = LabelTable(self.num_classes + 1, embed_dim) if label_features is None else \
            LabelFeatures(label_features, embed_dim)
        self.emb_fusion = nn.Sequential(nn.Linear(3 * embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.input_conv = nn.Conv2d(2 * channels, width, 3, padding=1, bias=False)
        self.attention_at = depth // 2
        self.blocks = nn.ModuleList(
            AttentionBlock(width, embed_dim, heads) if i == self.attention_at else ResidualBlock(width, embed_dim)
            for i in range(depth))
        self.output_conv = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.output_conv.weight)
        nn.init.zeros_(self.output_conv.bias)

    def label_rows(self, y: Optional[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
        """Rows of the label table: the label, or the last row for the null label (and for no label)."""
        if y is None or not self.num_classes:
            return torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        return torch.where(y == self.null_label, self.num_classes, y).long()

    def forward(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``dv = h S(x, v, t, h, y)``; ``t`` and ``h`` of shape (B,)."""
        dtype = self.input_conv.weight.dtype
        t, h = t.to(dtype), h.to(dtype)
        labels = self.y_embedder(self.label_rows(y, len(x), x.device)) if isinstance(self.y_embedder, LabelTable) \
            else self.y_embedder(y, len(x), x.device)
        emb = self.emb_fusion(torch.cat([self.t_embedder(t), self.h_embedder(h), labels], dim=-1))
        u = self.input_conv(torch.cat([x.to(dtype), v.to(dtype)], dim=1))
        for block in self.blocks:
            u = block(u, emb)
        dv = self.output_conv(F.silu(channel_rms_norm(u)))
        return (dv * h.reshape(-1, 1, 1, 1)).to(x.dtype)
