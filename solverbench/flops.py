"""FLOPs and peak memory of one cell's solve per sample (issue: cost columns).

FLOPs are counted with ``torch.utils.flop_counter``'s formulas, memory as ``solverbench.memory.TensorMemory``
counts it, both in one dispatch mode (``CostCounter``).

One sample is solved once more under that mode, its backbone calls marked, so the count splits into the backbone's FLOPs (every NFE; a CFG pair counts as the
doubled batch it is) and what the solver adds beside them (a network of its own, a learned solver's
extras, its own arithmetic).  A backbone without parameters (an analytic one, such as ``gmm``)
reports no backbone FLOPs: its closed form is not a network to cost, though the FLOPs it spends
are still kept out of the solver's share.  FLOPs count multiply-adds as two, as torch counts them.

The peak memory is that of the same one-sample solve: the bytes of the tensors it holds at once
(solver state, the backbone's activations), weights and the input noise excluded; it grows
linearly with the batch.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from torch.utils._python_dispatch import _disable_current_modes

from solverbench.guidance import Guidance
from solverbench.memory import TensorMemory
from solverbench.sampling import sample


class CostCounter(TensorMemory):
    """``TensorMemory`` that also counts FLOPs, as ``torch.utils.flop_counter.FlopCounterMode`` counts them (its
    formulas, and the same decompositions of an operator it has none for), in one dispatch per operator:
    ``flops`` in all, ``backbone_flops`` inside ``backbone()`` (a ``with``: the backbone's calls).  Two nested
    modes (the memory, a flop counter, another around each backbone call) would each add a Python call per
    operator; the numbers are theirs (tests/harness/test_flops.py compares them)."""

    def __init__(self):
        super().__init__()
        self.flops = self.backbone_flops = 0
        self._in_backbone = 0

    @contextmanager
    def backbone(self) -> Iterator[None]:
        self._in_backbone += 1
        try:
            yield
        finally:
            self._in_backbone -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        plan, formula = _plan(func)
        if plan is _LEAVE:
            return NotImplemented
        if plan is _DECOMPOSE:
            with self:  # an operator without a formula counts as the operators it decomposes into
                out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            self.flops += flops
            if self._in_backbone:
                self.backbone_flops += flops
        return out


_LEAVE, _DECOMPOSE, _RUN = "leave", "decompose", "run"


@functools.cache
def _plan(func: Any) -> tuple[str, Any]:
    """What ``CostCounter`` does with an operator, decided once per operator: leave it to the default (a shape
    query), run its decomposition (no FLOP formula, but a composite kernel), or run it; and its FLOP formula
    (None: it counts no FLOPs)."""
    if func in _SHAPE_QUERIES:
        return _LEAVE, None
    if isinstance(func, torch._ops.HigherOrderOperator):
        raise NotImplementedError(f"cannot count the FLOPs of {func} (a higher-order operator)")
    formulas = flop_formulas()
    if func not in formulas and func is not torch.ops.prim.device.default and func._can_decompose():
        return _DECOMPOSE, formulas.get(func._overloadpacket)
    return _RUN, formulas.get(func._overloadpacket)


class CountedBackbone:
    """A backbone whose calls are counted apart (inside the solve's count).

    A backbone without parameters (a closed form) is counted at its first call of each input shape; its
    later calls of that shape run outside the counter and add what the first one counted (its FLOPs, and
    the rise of the live memory above what it found), so that an analytic backbone's many operators are
    not dispatched through Python at every NFE.  A network's calls are all counted."""

    def __init__(self, backbone: Any, counter: CostCounter):
        self.backbone, self.counter = backbone, counter
        self.replayed = None if has_parameters(backbone) else {}  # input shapes -> (FLOPs, memory rise)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backbone, name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.replayed is None:
            with self.counter.backbone():
                return self.backbone(x, t, y)
        shape = tuple(None if v is None else (v.shape, v.dtype, v.device) for v in (x, t, y))
        counter, known = self.counter, self.replayed.get(shape)
        if known is None:
            flops, peak, live = counter.flops, counter.peak, counter.live
            counter.peak = live  # this call's own peak
            with counter.backbone():
                out = self.backbone(x, t, y)
            self.replayed[shape] = counter.flops - flops, counter.peak - live
            counter.peak = max(peak, counter.peak)
            return out
        with _disable_current_modes():
            out = self.backbone(x, t, y)
        flops, rise = known
        counter.flops += flops
        counter.backbone_flops += flops
        counter.peak = max(counter.peak, counter.live + rise)
        counter.track(out.untyped_storage())
        return out


def flop_formulas() -> dict:
    """``torch.utils.flop_counter``'s FLOP formulas by operator, imported here and not at the top: it imports
    triton, a tenth of a second for every command that never counts a FLOP."""
    from torch.utils.flop_counter import flop_registry

    return flop_registry


# what FlopCounterMode leaves to the default (shape queries of tensor subclasses)
_SHAPE_QUERIES = {getattr(torch.ops.aten, op).default for op in (
    "sym_is_contiguous", "is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense", "size",
    "sym_size", "stride", "sym_stride", "storage_offset", "sym_storage_offset", "numel", "sym_numel", "dim")
    if hasattr(torch.ops.aten, op)} | {torch.ops.aten.is_contiguous.memory_format, torch.ops.prim.layout.default}


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
    with CostCounter() as counter:
        result = sample(CountedBackbone(backbone, counter), solver, noise[:1], None if labels is None else labels[:1],
                        nfe=nfe, time_grid=time_grid, schedule=schedule, guidance=guidance)
    total, inside = counter.flops, counter.backbone_flops
    if not has_parameters(backbone):
        return SolveCost(None, None, float(total - inside), counter.peak)
    return SolveCost(float(inside), inside / result.nfe, float(total - inside), counter.peak)
