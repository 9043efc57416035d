"""The SideNet contract: ``S_phi(x, v, t, h, y) -> dv`` with ``v_hat(t - h) = v + S_phi``.

``SideNet`` is the contract every SideNet meets (``forward``, ``velocity``, ``velocities_at``,
its ``spec``); ``ProjectSideNet`` is this project's own network body, shared by the vector
(``mlp.py``) and image (``image.py``) SideNets.  The authors' image SideNet
(``official.py``) meets the same contract with its own body.

The output is multiplied by ``h`` and the last layer is zero-initialised, so ``v_hat = v``
at ``h = 0`` and an untrained SideNet leaves every velocity as it is.  ``h > 0`` looks
toward the data, ``h < 0`` back toward the noise (docs/ba-solver.md, "Conventions").

The project's last layer has two parts (``output_head="gated"``, the default):

    S_phi = h * (W u + alpha(u) * x + beta(u) * v)

with ``u`` the network's features and ``alpha``, ``beta`` one scalar per sample (per pixel
for images), both zero-initialised.  Along the trajectory of one Gaussian component
(mean ``mu``, spread ``s``) the velocity change is ``dv = g(t, h, s) (v + mu)`` with a scalar
``g``: a scalar times the input ``v`` plus a vector the features give.  A plain head
(``output_head="plain"``, the paper's) must learn that product of a feature and its own
input, which it does far more slowly (configs/ablation.yaml compares the two; the README's
ablation table gives the figures).

The polynomial head (``output_head="poly"``, ``poly_degree`` P) takes ``h`` out of the
network: the trunk is conditioned on ``(t, y)`` only and outputs P gated coefficient maps,

    S_phi = sum_{p=1..P} s (h / s)^p (W_p u + alpha_p(u) x + beta_p(u) v),   s = POLY_SCALE,

so one trunk pass per anchor serves every offset of a BA interval (``velocities_at``).  The
fixed scale ``s`` (a typical interval) only rescales the coefficients, so that their
O(1) outputs are the velocity change over an interval rather than over a unit of t.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from solvers.ba.config import OUTPUT_HEADS
from solvers.ba.sidenet.conditioning import Conditioning, LabelFeatures, Modulation, RMSNorm, modulate

POLY_SCALE = 0.1  # s of the polynomial head: its terms are s (h / s)^p


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
        return [v_c for v_c, _ in self.cfg_velocities_at(x, v, None, t, offsets, [False] * len(offsets), y, None)]

    def cfg_velocities_at(self, x: torch.Tensor, v_c: torch.Tensor, v_u: Optional[torch.Tensor], t: float,
                          offsets: Sequence[float], guided: Sequence[bool], y: Optional[torch.Tensor],
                          y_null: Optional[torch.Tensor]) -> list[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """``(v_hat_c, v_hat_u)`` at ``t - h`` for each offset ``h`` from one anchor: the conditional
        branch (``v_c``, labels ``y``) at every offset, the unconditional one (``v_u``, ``y_null``) only
        where ``guided`` (None elsewhere).  One batched call; per offset its conditional rows, then
        its unconditional ones."""
        n = len(x)
        branches = [[(v_c, y)] + ([(v_u, y_null)] if g else []) for g in guided]
        rows = [(v, label, h) for h, pair in zip(offsets, branches) for v, label in pair]
        h_all = batch_of([h for _, _, h in rows], x).repeat_interleave(n)
        t_all = batch_of([t], x).expand(len(h_all)) if carries_gradient(t) else \
            torch.full((len(h_all),), float(t), dtype=x.dtype, device=x.device)
        y_all = None if y is None else torch.cat([label for _, label, _ in rows])
        v_hat = self.velocity(x.repeat(len(rows), *(1,) * (x.dim() - 1)), torch.cat([v for v, _, _ in rows]),
                              t_all, h_all, y_all).split(n)
        out, i = [], 0
        for pair in branches:
            out.append((v_hat[i], v_hat[i + 1] if len(pair) == 2 else None))
            i += len(pair)
        return out

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def bind_labels(self, backbone: Any) -> "SideNet":
        """Read ``backbone``'s label features where this SideNet is conditioned on them (``spec`` holds
        ``label_features``, their width); nothing for a SideNet with a label table."""
        for module in self.modules():
            if isinstance(module, LabelFeatures):
                module.bind(backbone)
        return self


def carries_gradient(value: Any) -> bool:
    """A time or offset given as a tensor (a time grid being learned through the solver)."""
    return isinstance(value, torch.Tensor) and value.requires_grad


def batch_of(values: Sequence[Any], x: torch.Tensor) -> torch.Tensor:
    """``values`` (floats, or 0-d tensors that carry gradients) as a tensor in ``x``'s dtype and device;
    floats go through ``torch.tensor`` as before, so the float path is unchanged to the bit."""
    if not any(carries_gradient(v) for v in values):
        return torch.tensor([float(v) for v in values], dtype=x.dtype, device=x.device)
    return torch.stack([torch.as_tensor(v, dtype=torch.float64).to(device=x.device) for v in values]).to(x.dtype)


class ProjectSideNet(SideNet):
    """The project's own SideNet body: ``input`` (x and v on the channel axis -> width), the
    subclass's ``trunk`` of conditioned residual blocks, a modulated RMS-norm, then the
    zero-initialised last layers ``output`` (u -> W u) and ``gates`` (u -> alpha, beta; None
    for the plain head), P of each for the polynomial head.  Subclasses give ``pointwise`` (a
    per-position linear map) and ``trunk``."""

    def __init__(self, sample_shape: Sequence[int], num_classes: Optional[int], null_label: Optional[int],
                 *, width: int, depth: int, embed_dim: int, heads: int, output_head: str = "gated",
                 poly_degree: Optional[int] = None, label_features: Optional[int] = None):
        super().__init__()
        if output_head not in OUTPUT_HEADS:
            raise ValueError(f"SideNet output_head must be one of {', '.join(OUTPUT_HEADS)}, got {output_head!r}")
        poly = output_head == "poly"
        if poly != (poly_degree is not None) or (poly and not (isinstance(poly_degree, int) and poly_degree >= 1)):
            raise ValueError(f"SideNet poly_degree must be a positive integer with output_head poly and absent "
                             f"otherwise, got {poly_degree!r} with output_head {output_head!r}")
        self.spec = {"kind": self.kind, "sample_shape": list(sample_shape), "num_classes": num_classes,
                     "null_label": null_label, "width": width, "depth": depth, "embed_dim": embed_dim,
                     "heads": heads, "output_head": output_head, **({"poly_degree": poly_degree} if poly else {}),
                     **({"label_features": label_features} if label_features is not None else {})}
        self.degree = poly_degree if poly else 1  # P coefficient maps (1: the gated and plain heads)
        self.conditioning = Conditioning(width, embed_dim, num_classes, null_label, with_h=not poly,
                                         label_features=label_features)
        channels = sample_shape[0]
        self.input = self.pointwise(2 * channels, width)
        self.out_norm = RMSNorm(width)
        self.out_modulation = Modulation(width, width)
        self.output = self.zero_init(self.pointwise(width, self.degree * channels))
        gated = output_head != "plain"
        self.gates = self.zero_init(self.pointwise(width, 2 * self.degree)) if gated else None  # alpha_p, beta_p

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

    def coefficients(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: Optional[torch.Tensor],
                     y: Optional[torch.Tensor]) -> list[torch.Tensor]:
        """``W_p u + alpha_p x + beta_p v`` for p = 1..P, in the weights' dtype (``h`` None: the
        polynomial head, whose trunk does not see it)."""
        weight_dtype = next(self.parameters()).dtype
        x_in, v_in = x.to(weight_dtype), v.to(weight_dtype)
        u = self.features(torch.cat([x_in, v_in], dim=1),
                          self.conditioning(t.to(weight_dtype), None if h is None else h.to(weight_dtype), y))
        out = self.output(u).chunk(self.degree, dim=1)
        if self.gates is None:
            return list(out)
        gates = self.gates(u).chunk(2 * self.degree, dim=1)
        return [w + alpha * x_in + beta * v_in for w, alpha, beta in zip(out, gates[0::2], gates[1::2])]

    def polynomial(self, coefficients: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """``sum_p s (h / s)^p c_p`` with ``h`` of shape (B,) (P = 1: ``h c_1``)."""
        h = h.to(coefficients[0].dtype).reshape(-1, *(1,) * (coefficients[0].dim() - 1))
        if self.degree == 1:
            return h * coefficients[0]
        return sum(POLY_SCALE * (h / POLY_SCALE) ** p * c for p, c in enumerate(coefficients, start=1))

    def forward(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``dv = h (W u + alpha x + beta v)`` (polynomial head: ``sum_p s (h / s)^p (...)_p``);
        ``t`` and ``h`` of shape (B,)."""
        poly = self.spec["output_head"] == "poly"
        return self.polynomial(self.coefficients(x, v, t, None if poly else h, y), h).to(x.dtype)

    def cfg_velocities_at(self, x, v_c, v_u, t, offsets, guided, y, y_null):
        """The polynomial head: one trunk pass per anchor (both branches in one batch where any offset
        is guided), then every offset from its coefficients."""
        if self.spec["output_head"] != "poly":
            return super().cfg_velocities_at(x, v_c, v_u, t, offsets, guided, y, y_null)
        n, both = len(x), any(guided)
        xs, vs = (torch.cat([x, x]), torch.cat([v_c, v_u])) if both else (x, v_c)
        ys = (None if y is None else torch.cat([y, y_null])) if both else y
        t_all = batch_of([t], x).expand(len(xs)) if carries_gradient(t) else \
            torch.full((len(xs),), float(t), dtype=x.dtype, device=x.device)
        coefficients = self.coefficients(xs, vs, t_all, None, ys)
        out = []
        for h, g in zip(offsets, guided):
            h_all = batch_of([h], x).to(torch.float32).expand(len(xs)) if carries_gradient(h) else \
                torch.full((len(xs),), float(h), device=x.device)
            v_hat = vs + self.polynomial(coefficients, h_all).to(x.dtype)
            out.append((v_hat[:n], v_hat[n:] if g else None))
        return out
