"""The SiT transformer (a DiT with adaLN-Zero blocks), laid out as the SiT/REPA checkpoints are.

Parameter names match the public SiT and REPA checkpoints: ``x_embedder.proj``,
``t_embedder.mlp.{0,2}``, ``y_embedder.embedding_table`` (classes + 1 rows, the last is
the null label), ``pos_embed`` (fixed 2-D sin-cos), ``blocks.{i}.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2, adaLN_modulation.1}`` and ``final_layer.{linear,
adaLN_modulation.1}``.  REPA's projector heads (``projectors.*``) only serve its training
loss and are not built here.

This module computes the network's raw output in the network's own time; the mapping to
the project's conventions lives in ``backbones.sit.backbone``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backbones.sit.sizes import SiTSize
from backbones.time_embedding import sinusoidal_embedding

FREQUENCY_FEATURES = 256  # size of the sinusoidal time embedding fed to t_embedder.mlp
NORM_EPS = 1e-6


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x (1 + scale) + shift``, per sample, broadcast over tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos embedding ``(grid * grid, dim)``: half the channels encode the
    row-major token's column index, half its row index, each as ``[sin(p w_k), cos(p w_k)]``
    with ``w_k = 10000^(-k / (dim/4))``."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")

    def encode(position: torch.Tensor) -> torch.Tensor:
        angles = position.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, hidden_size: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, T, D)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_FEATURES, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, FREQUENCY_FEATURES))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)


class Attention(nn.Module):
    """timm's ViT attention: one qkv projection, heads, scaled dot product, output projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SiTBlock(nn.Module):
    """Attention and MLP, each behind an adaLN-modulated LayerNorm and a gated residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=NORM_EPS)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SiTTransformer(nn.Module):
    """``net(x, s, y)``: latents (N, C, H, W), the network's time ``s`` (N,), labels (N,) -> (N, C_out, H, W)."""

    def __init__(self, size: SiTSize, input_size: int, patch_size: int = 2, in_channels: int = 4,
                 out_channels: int = 4, num_classes: int = 1000, mlp_ratio: float = 4.0):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"latent size {input_size} is not a multiple of the patch size {patch_size}")
        self.patch_size, self.out_channels = patch_size, out_channels
        self.x_embedder = PatchEmbed(in_channels, size.hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(size.hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, size.hidden_size)
        self.grid = input_size // patch_size
        self.register_buffer("pos_embed", sincos_position_embedding(size.hidden_size, self.grid)[None])
        self.blocks = nn.ModuleList(SiTBlock(size.hidden_size, size.num_heads, mlp_ratio) for _ in range(size.depth))
        self.final_layer = FinalLayer(size.hidden_size, patch_size, out_channels)

    def forward(self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(s) + self.y_embedder(y)
        for block in self.blocks:
            tokens = block(tokens, c)
        out = self.final_layer(tokens, c)  # (N, T, p * p * C_out)
        p, h, w = self.patch_size, height // self.patch_size, width // self.patch_size
        out = out.reshape(n, h, w, p, p, self.out_channels)
        return torch.einsum("nhwpqc->nchpwq", out).reshape(n, self.out_channels, h * p, w * p)

    def randomize(self, generator: torch.Generator) -> "SiTTransformer":
        """Random weights for throughput runs and tests: each weight matrix ``N(0, 1 / fan_in)``,
        biases zero, the fixed position embedding.  Unlike DiT's adaLN-Zero start nothing is
        zeroed, so the output depends on every input."""
        with torch.no_grad():
            self.pos_embed.copy_(sincos_position_embedding(self.pos_embed.shape[-1], self.grid)[None])
            for param in self.parameters():
                if param.dim() == 1:
                    param.zero_()
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
        return self
