"""SiT model sizes: depth, width and heads of the SiT paper (Ma et al. 2024, Table 1; DiT's sizes).

``tiny`` is this project's, for CPU tests only.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SiTSize:
    depth: int
    hidden_size: int
    num_heads: int


SIT_SIZES: dict[str, SiTSize] = {
    "S": SiTSize(depth=12, hidden_size=384, num_heads=6),
    "B": SiTSize(depth=12, hidden_size=768, num_heads=12),
    "L": SiTSize(depth=24, hidden_size=1024, num_heads=16),
    "XL": SiTSize(depth=28, hidden_size=1152, num_heads=16),
    "tiny": SiTSize(depth=2, hidden_size=64, num_heads=4),
}
