"""Per-sample randomness from (seed, sample index), as EDM's generate.py draws it.

A sample's noise and label depend only on its seed and index, never on the batch it is
drawn in or on how a sweep is split.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

_NOISE, _LABEL, _DATA, _TRAINING_NOISE, _TRAINING_LABEL, _EDIT = 0, 1, 2, 3, 4, 5


def sample_generator(seed: int, index: int, stream: int = _NOISE) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(index), stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def noise_for(seed: int, indices: Sequence[int], shape: Sequence[int], dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise, one independent stream per sample index (drawn in float64)."""
    return torch.stack(
        [torch.randn(tuple(shape), generator=sample_generator(seed, i), dtype=torch.float64) for i in indices]
    ).to(dtype)


LABEL_RULES = {
    "uniform": "each sample's class drawn uniformly from its own (seed, index) stream (the default)",
    "balanced": "sample i gets class i mod num_classes, as the BA authors' and DiT's generate.py give them "
                "(50 per class at 50,000 samples and 1000 classes)",
}


def labels_for(seed: int, indices: Sequence[int], num_classes: Optional[int],
               rule: str = "uniform") -> Optional[torch.Tensor]:
    """Class labels, one per sample index (``rule``: LABEL_RULES); ``None`` for unconditional backbones."""
    if num_classes is None:
        return None
    if rule == "balanced":
        return torch.tensor([int(i) % num_classes for i in indices], dtype=torch.long)
    if rule != "uniform":
        raise ValueError(f"label rule {rule!r}: allowed: {', '.join(LABEL_RULES)}")
    return torch.tensor(
        [int(torch.randint(num_classes, (1,), generator=sample_generator(seed, i, _LABEL))) for i in indices],
        dtype=torch.long,
    )


def edit_labels_for(seed: int, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A target class other than its own for each sample: ``(y + k) mod C`` with ``k`` uniform in
    ``1 .. C - 1`` from the sample's own (seed, index) stream (class edits, docs/inversion.md)."""
    if num_classes < 2:
        raise ValueError(f"class edits need at least two classes, got {num_classes}")
    shifts = [1 + int(torch.randint(num_classes - 1, (1,), generator=sample_generator(seed, i, _EDIT)))
              for i in range(len(labels))]
    return (labels.cpu() + torch.tensor(shifts, dtype=torch.long)) % num_classes


def data_generator(seed: int, draw: int = 0) -> torch.Generator:
    """The generator of fresh data samples: draw 0 is what distribution metrics compare the
    samples with; draw 1 an independent second set (their data-versus-data noise floor)."""
    return sample_generator(seed, draw, _DATA)


def training_draws(seed: int, n: int, shape: Sequence[int], num_classes: Optional[int],
                   dtype=torch.float32) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Noise and uniform labels of ``n`` training trajectories (a learned time grid's): streams of their own,
    so no evaluated sample of any seed is ever trained on."""
    noise = torch.stack([torch.randn(tuple(shape), generator=sample_generator(seed, i, _TRAINING_NOISE),
                                     dtype=torch.float64) for i in range(n)]).to(dtype)
    if num_classes is None:
        return noise, None
    labels = torch.tensor([int(torch.randint(num_classes, (1,), generator=sample_generator(seed, i, _TRAINING_LABEL)))
                           for i in range(n)], dtype=torch.long)
    return noise, labels
