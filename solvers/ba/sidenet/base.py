"""The SideNet contract: ``S_phi(x, v, t, h, y) -> dv`` with ``v_hat(t - h) = v + S_phi``.

``SideNet`` is the contract every SideNet meets (``forward``, ``velocity``, ``velocities_at``,
its ``spec``); ``ProjectSideNet`` is this project's own network body, shared by the vector
(``mlp.py``) and image (``image.py``) SideNets.  The authors' image SideNet
(``official.py``) meets the same contract with its own body.

The output is multiplied by ``h`` and the last layer is zero-initialised, so ``v_hat = v``
at ``h = 0`` and an untrained SideNet leaves every velocity as it is.  ``h > 0`` looks
toward the data, ``h < 0`` back toward the noise (BA_SOLVER.md).

The project's last layer has two parts (``output_head="gated"``, the default):

    S_phi = h * (W u + alpha(u) * x + beta(u) * v)

with ``u`` the network's features and ``alpha``, ``beta`` one scalar per sample (per pixel
for images), both zero-initialised.  Along the trajectory of one Gaussian component
(mean ``mu``, spread ``s``) the velocity change is ``dv = g(t, h, s) (v + mu)`` with a scalar
``g``: a scalar times the input ``v`` plus a vector the features give.  A plain head
(``output_head="plain"``, the paper's) must learn that product of a feature and its own
input, which it does far more slowly (configs/ablation.yaml compares the two; the README's
ablation table gives the figures).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from solvers.ba.sidenet.conditioning import Conditioning, Modulation, RMSNorm, modulate

OUTPUT_HEADS = ("gated", "plain")


class SideNet(nn.Module):
    """The contract: ``forward(x, v, t, h, y) -> dv`` (``t``, ``h`` of shape (B,), ``dv`` already
    multiplied by ``h``), ``spec`` (what ``build_sidenet`` rebuilds it from), ``kind``."""

    kind: str = "?"
    spec: dict

    def forward(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def velocity(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
                 y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``v_hat(t - h) = v + S_phi(x, v, t, h, y)``."""
        return v + self(x, v, t, h, y)

    def velocities_at(self, x: torch.Tensor, v: torch.Tensor, t: float, offsets: Sequence[float],
                      y: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """``v_hat(t - h)`` for each offset ``h`` from one anchor ``(x, v, t)``: one batched call."""
        n, k = len(x), len(offsets)
        t_all = torch.full((n * k,), float(t), dtype=x.dtype, device=x.device)
        h_all = torch.tensor([float(h) for h in offsets], dtype=x.dtype, device=x.device).repeat_interleave(n)
        reps = (k,) + (1,) * (x.dim() - 1)
        y_all = None if y is None else y.repeat(k)
        v_hat = self.velocity(x.repeat(reps), v.repeat(reps), t_all, h_all, y_all)
        return list(v_hat.split(n))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ProjectSideNet(SideNet):
    """The project's own SideNet body: ``input`` (x and v on the channel axis -> width), the
    subclass's ``trunk`` of conditioned residual blocks, a modulated RMS-norm, then the
    zero-initialised last layers ``output`` (u -> W u) and ``gates`` (u -> alpha, beta; None
    for the plain head).  Subclasses give ``pointwise`` (a per-position linear map) and ``trunk``."""

    def __init__(self, sample_shape: Sequence[int], num_classes: Optional[int], null_label: Optional[int],
                 *, width: int, depth: int, embed_dim: int, heads: int, output_head: str = "gated"):
        super().__init__()
        if output_head not in OUTPUT_HEADS:
            raise ValueError(f"SideNet output_head must be one of {', '.join(OUTPUT_HEADS)}, got {output_head!r}")
        self.spec = {"kind": self.kind, "sample_shape": list(sample_shape), "num_classes": num_classes,
                     "null_label": null_label, "width": width, "depth": depth, "embed_dim": embed_dim,
                     "heads": heads, "output_head": output_head}
        self.conditioning = Conditioning(width, embed_dim, num_classes, null_label)
        channels = sample_shape[0]
        self.input = self.pointwise(2 * channels, width)
        self.out_norm = RMSNorm(width)
        self.out_modulation = Modulation(width, width)
        self.output = self.zero_init(self.pointwise(width, channels))
        self.gates = self.zero_init(self.pointwise(width, 2)) if output_head == "gated" else None  # alpha, beta

    @staticmethod
    def pointwise(n_in: int, n_out: int) -> nn.Module:
        raise NotImplementedError

    def trunk(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, xv: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        u = self.trunk(self.input(xv), c)
        scale, shift = self.out_modulation(c)
        return nn.functional.silu(modulate(self.out_norm(u), scale, shift))

    @staticmethod
    def zero_init(layer: nn.Module) -> nn.Module:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    def forward(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``dv = h (W u + alpha x + beta v)``; ``t`` and ``h`` of shape (B,)."""
        weight_dtype = next(self.parameters()).dtype
        x_in, v_in = x.to(weight_dtype), v.to(weight_dtype)
        u = self.features(torch.cat([x_in, v_in], dim=1), self.conditioning(t.to(weight_dtype),
                                                                            h.to(weight_dtype), y))
        dv = self.output(u)
        if self.gates is not None:
            alpha, beta = self.gates(u).chunk(2, dim=1)
            dv = dv + alpha * x_in + beta * v_in
        return (h.to(weight_dtype).reshape(-1, *(1,) * (dv.dim() - 1)) * dv).to(x.dtype)
