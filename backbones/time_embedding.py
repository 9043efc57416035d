"""Sinusoidal embedding of a time or timestep (GLIDE/DiT layout: cosines, then sines)."""
from __future__ import annotations

import math

import torch


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[cos(t w_k), sin(t w_k)]`` with ``w_k = max_period^(-k / (dim/2))``, k = 0 .. dim/2 - 1.

    ``t`` has shape ``(batch,)``; the result ``(batch, dim)`` (a zero column is appended
    when ``dim`` is odd).  Computed in float32 (as DiT and SiT do) unless ``t`` is float64,
    where float64 keeps a float64 reference solve smooth in t; cast back to ``t``'s dtype.
    """
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = t[:, None].to(dtype) * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding.to(t.dtype)
