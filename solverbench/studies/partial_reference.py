"""The exact partial inversions: data at t = 0 carried to the states at times ``t0 < 1`` by the reference solve.

They are what the inversion study measures a partial inversion (``invert(..., t_end=t0)``) against: the
reference solve (dopri5, float64, the grid's tolerance) of the mirrored field from solver time s = 1 (data)
toward s = 0, batch by batch, read at s = 1 - t0 for every t0 of the grid in one solve.  The solver's
steps do not depend on the times it is read at, so each state is the one a solve to that t0 alone gives.
The whole inversion (t0 = 1) is the workspace's cached ``exact_inversion``; these are solved once per run
and kept in memory.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from solverbench.backbone import backbone_in_dtype
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.progress import progress_bar
from solverbench.reference import METHOD, Tolerance, reference_trajectory


def exact_partial_inversions(backbone, x0: torch.Tensor, labels: Optional[torch.Tensor], guidance: Guidance,
                             times: Sequence[float], tolerance: Tolerance, batch_size: int, progress: bool = False
                             ) -> dict[float, torch.Tensor]:
    """t0 -> float64 states at path time t0 of the exact inversion of ``x0`` (its labels and guidance), for every
    t0 in ``times`` (each in (0, 1))."""
    ascending = sorted(set(float(t) for t in times))
    if not ascending or not 0 < ascending[0] or not ascending[-1] < 1:
        raise ValueError(f"partial inversion times must lie in (0, 1), got {list(times)}")
    backbone64 = backbone_in_dtype(backbone, torch.float64)
    starts = range(0, len(x0), batch_size)
    desc = (f"reference inversion to t={', '.join(f'{t:g}' for t in ascending)} ({METHOD}, float64, "
            f"rtol={tolerance.rtol:g}, atol={tolerance.atol:g}) of {len(x0)} samples")
    solver_times = [1.0] + [1.0 - t for t in ascending]  # decreasing s: from data toward noise
    batches = []
    with progress_bar(starts, total=len(starts), desc=desc, unit="batch", enabled=progress,
                      off_terminal="total") as bar:
        for start in bar:
            sl = slice(start, start + batch_size)
            field = VelocityField(backbone64, None if labels is None else labels[sl], guidance, mirrored=True)
            batches.append(reference_trajectory(field, x0[sl].double(), solver_times, tolerance)[1:])
    states = torch.cat(batches, dim=1)
    return {t: states[i] for i, t in enumerate(ascending)}
