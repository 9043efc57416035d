"""How a sweep computes: the grid's ``dtype``, ``tf32`` and ``compile``.

- ``dtype: float32`` or ``float64``: the backbone, the solver's networks and the ODE state in
  that type.
- ``dtype: bfloat16`` or ``float16``: mixed precision, as the field samples at scale.  The
  backbone and the solver's own networks (``Solver.use_precision``) run under
  ``torch.autocast`` in that type and hand back float32 velocities; the ODE state, the noise and every sum a solver
  forms (quadratures, multistep combinations) stay float32.  The reference solve is float64
  as always, from the same float32 noise: a bfloat16 cell and its float32 twin share it.
- ``tf32: true``: CUDA matmuls and convolutions of float32 tensors in TF32 while the cell
  samples (no effect on a CPU).
- ``compile: true``: ``torch.compile`` of the backbone and of the solver's networks, made
  once per run; each new input shape (a batch size, a doubled CFG batch) compiles once and
  is reused by every later call and cell.

Every setting other than the default enters the cell ids: they change the numbers.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

from solverbench.backbone import backbone_identity, backbone_in_dtype

DTYPES = ("float32", "float64", "bfloat16", "float16")
AUTOCAST = ("bfloat16", "float16")


@dataclass(frozen=True)
class Precision:
    dtype: str = "float32"
    tf32: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("tf32", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def autocast(self) -> Optional[torch.dtype]:
        """The autocast type of the networks (None: they run in the state's type)."""
        return getattr(torch, self.dtype) if self.dtype in AUTOCAST else None

    @property
    def state_dtype_name(self) -> str:
        """The type of the ODE state and the noise: float64 for a float64 grid, else float32."""
        return "float64" if self.dtype == "float64" else "float32"

    @property
    def state_dtype(self) -> torch.dtype:
        return getattr(torch, self.state_dtype_name)

    @property
    def plain(self) -> bool:
        """The networks run as they are: no autocast, no compilation."""
        return self.autocast is None and not self.compile

    def identity(self) -> dict[str, Any]:
        """What the cell ids add beside ``dtype`` (nothing at the defaults)."""
        return {**({"tf32": True} if self.tf32 else {}), **({"compile": True} if self.compile else {})}

    @contextmanager
    def networks(self, device: torch.device | str) -> Iterator[None]:
        """Autocast of the networks' calls (nothing without a reduced type)."""
        device_type = torch.device(device).type
        with torch.autocast(device_type, dtype=self.autocast, enabled=self.autocast is not None):
            yield

    @contextmanager
    def matmuls(self) -> Iterator[None]:
        """TF32 for CUDA float32 matmuls and convolutions inside the block, where asked."""
        if not self.tf32:
            yield
            return
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def compiled(self, module: Any) -> Any:
        """``module`` compiled where asked (an ``nn.Module`` in place: ``module.compile()``)."""
        if self.compile and isinstance(module, torch.nn.Module):
            module.compile()
        return module

    def backbone(self, backbone: Any) -> Any:
        """The backbone as the cells sample with it: its network in float64 for a float64 grid (a copy), under
        autocast and compiled where asked; itself where nothing changes."""
        if self.dtype == "float64":
            backbone = backbone_in_dtype(backbone, torch.float64)
        return backbone if self.plain else PrecisionBackbone(backbone, self)


class PrecisionBackbone:
    """A backbone called under the run's autocast (and compiled), giving velocities in the state's type.
    Everything else (its contract's attributes, ``identity``, ``to_images``...) is the backbone's own."""

    def __init__(self, backbone: Any, precision: Precision):
        self.backbone = backbone
        self.precision = precision
        self.call = torch.compile(backbone) if precision.compile else backbone

    def identity(self) -> dict[str, Any]:
        return backbone_identity(self.backbone)  # what solvers were prepared for

    def __getattr__(self, name: str) -> Any:
        if name == "backbone":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.backbone, name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        with self.precision.networks(x.device):
            v = self.call(x, t, y)
        return v.to(x.dtype)
