"""Class labels as class-conditional backbones take them: ``None`` means the null label."""
from __future__ import annotations

from typing import Optional

import torch


def labels_or_null(y: Optional[torch.Tensor], batch: int, null_label: int, device: torch.device,
                   backbone: str) -> torch.Tensor:
    """``y`` as a long tensor on ``device`` (``None``: the null label for all ``batch`` samples).

    Labels outside ``[0, null_label]`` are an error naming the ``backbone``.
    """
    if y is None:
        return torch.full((batch,), null_label, dtype=torch.long, device=device)
    y = y.to(device).long()
    if torch.any((y < 0) | (y > null_label)):
        raise ValueError(f"{backbone} labels must lie in [0, {null_label}] (null label {null_label})")
    return y
