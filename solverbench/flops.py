"""FLOPs and peak memory of one cell's solve per sample (issue: cost columns).

FLOPs are counted with ``torch.utils.flop_counter``, memory with ``solverbench.memory.TensorMemory``.

One sample is solved once more under a ``FlopCounterMode``, its backbone calls under a second,
nested one, so the count splits into the backbone's FLOPs (every NFE; a CFG pair counts as the
doubled batch it is) and what the solver adds beside them (a network of its own, a learned solver's
extras, its own arithmetic).  A backbone without parameters (an analytic one, such as ``gmm``)
reports no backbone FLOPs: its closed form is not a network to cost, though the FLOPs it spends
are still kept out of the solver's share.  FLOPs count multiply-adds as two, as torch counts them.

The peak memory is that of the same one-sample solve: the bytes of the tensors it holds at once
(solver state, the backbone's activations), weights and the input noise excluded; it grows
linearly with the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from solverbench.guidance import Guidance
from solverbench.memory import TensorMemory
from solverbench.sampling import sample


class CountedBackbone:
    """A backbone whose calls are counted in FLOPs of their own (inside the solve's count)."""

    def __init__(self, backbone: Any):
        self.backbone, self.flops = backbone, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backbone, name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        with flop_counter() as counter:
            v = self.backbone(x, t, y)
        self.flops += counter.get_total_flops()
        return v


def flop_counter() -> Any:
    """A fresh ``torch.utils.flop_counter.FlopCounterMode``, imported here and not at the top: it imports
    triton, a tenth of a second for every command that never counts a FLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False)


@dataclass(frozen=True)
class SolveCost:
    backbone_per_sample: Optional[float]  # FLOPs; None for a backbone without parameters
    backbone_per_nfe: Optional[float]  # FLOPs per sample and NFE (a CFG pair: both halves)
    solver_per_sample: float  # FLOPs of everything else the solve computed
    peak_memory_per_sample: int  # bytes of the tensors a one-sample solve holds at once

    def row_fields(self) -> dict[str, Optional[float]]:
        total = None if self.backbone_per_sample is None else self.backbone_per_sample + self.solver_per_sample
        return {"backbone_flops_per_nfe": self.backbone_per_nfe, "backbone_flops_per_sample": self.backbone_per_sample,
                "solver_flops_per_sample": self.solver_per_sample, "flops_per_sample": total,
                "peak_memory_per_sample": self.peak_memory_per_sample}


def has_parameters(backbone: Any) -> bool:
    return isinstance(backbone, torch.nn.Module) and any(True for _ in backbone.parameters())


def solve_cost(backbone: Any, solver: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], *,
               nfe: Optional[int], guidance: Guidance, schedule: Any = "uniform",
               time_grid: Optional[torch.Tensor] = None) -> SolveCost:
    """The FLOPs and peak memory of solving the first sample of ``noise`` as the cell solves it (same budget,
    grid, guidance)."""
    counted = CountedBackbone(backbone)
    with TensorMemory() as memory, flop_counter() as counter:
        result = sample(counted, solver, noise[:1], None if labels is None else labels[:1], nfe=nfe,
                        time_grid=time_grid, schedule=schedule, guidance=guidance)
    total, inside = counter.get_total_flops(), counted.flops
    if not has_parameters(backbone):
        return SolveCost(None, None, float(total - inside), memory.peak)
    return SolveCost(float(inside), inside / result.nfe, float(total - inside), memory.peak)
