"""scikit-learn's bundled digits: 1797 grayscale 8x8 images of 0-9, pixels scaled to [-1, 1].

The raw pixels are integers 0..16; ``x = p / 8 - 1`` maps them to [-1, 1] and
``to_uint8`` maps [-1, 1] to 0..255 (the image metrics' input).
"""
from __future__ import annotations

from functools import lru_cache

import torch

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
RAW_MAX = 16  # the bundled pixels are integers 0..16


@lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).reshape(-1, *IMAGE_SHAPE)
    return images * (2.0 / RAW_MAX) - 1.0, torch.tensor(digits.target, dtype=torch.long)


def digits_dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images ``(N, 1, 8, 8)`` in [-1, 1] and their labels ``(N,)`` (copies)."""
    images, labels = _load()
    return images.clone(), labels.clone()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> 0..255 uint8 (values outside [-1, 1] are clipped)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """0..255 uint8 -> [-1, 1] float32."""
    return images.float() / 127.5 - 1.0
