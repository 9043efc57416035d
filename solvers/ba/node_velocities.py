"""Where the BA schemes get their velocities at the quadrature nodes.

Each source answers one question: given an anchor ``(x, t)`` with its raw backbone
velocities ``anchor = (v_c, v_u)`` (``v_u`` None without guidance), what is the guided
velocity at time ``t - h`` along the trajectory through ``(x, t)``, for each offset ``h``?

- ``SideNetVelocities``: ``v + S_phi(x, v, t, h, y)`` on the conditional velocity at every
  node, and on the unconditional one (null label) only at the nodes whose own time ``t - h``
  is guided; guidance applied at each node's own time.  One batched SideNet call per question.
- ``AnchorVelocities``: the SideNet switched off, ``v_hat = v`` (guided at the node time).
- ``OracleVelocities``: exact velocities on the reference trajectory through ``(x, t)``
  (a tight float64 solve of the guided ODE), for the scheme's error floor.

On a mirrored field (inversion, docs/inversion.md) a question at solver time ``s`` with
offsets ``h`` and anchor velocities ``u`` is asked in path time: at ``t = 1 - s``, offsets
``-h``, velocities ``v = -u``, and the answers negated back (``path_question``); the SideNet
looks toward noise where the scheme probes forward.  The anchors' own velocities need no
translation (``AnchorVelocities``).

None of them spends NFE: the anchors are the schemes' only backbone calls.  The sources
that do work (a network call, a solve) count their calls and time them apart from the
backbone's evaluations.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from solverbench.backbone import backbone_in_dtype
from solverbench.field import VelocityField
from solverbench.precision import Precision
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.stopwatch import Stopwatch
from solvers.ba.sidenet import SideNet

Anchor = tuple[torch.Tensor, Optional[torch.Tensor]]


class NodeVelocities:
    """A source that does work per question: ``answer`` it, counted and timed."""

    def __init__(self) -> None:
        self.calls = 0  # questions answered (per sample), not NFE
        self.stopwatch = Stopwatch()

    @property
    def seconds(self) -> float:
        """Wall time spent answering so far."""
        return self.stopwatch.seconds

    def __call__(self, field: VelocityField, x: torch.Tensor, anchor: Anchor, t: float,
                 offsets: Sequence[float]) -> list[torch.Tensor]:
        if not offsets:
            return []
        if field.mirrored:
            return [-v for v in self(*path_question(field, anchor, t, offsets, x))]
        self.calls += 1
        with self.stopwatch.timing(x.device):
            return self.answer(field, x, anchor, t, offsets)

    def answer(self, field: VelocityField, x: torch.Tensor, anchor: Anchor, t: float,
               offsets: Sequence[float]) -> list[torch.Tensor]:
        raise NotImplementedError


def path_question(field: VelocityField, anchor: Anchor, s: float, offsets: Sequence[float], x: torch.Tensor
                  ) -> tuple[VelocityField, torch.Tensor, Anchor, float, list[float]]:
    """A node question on a mirrored field as the same question in path time: the unmirrored field, the
    anchor's velocities negated, time ``1 - s`` and offsets negated (its answers are negated back)."""
    v_c, v_u = anchor
    return field.unmirrored(), x, (-v_c, None if v_u is None else -v_u), 1 - s, [-h for h in offsets]


class AnchorVelocities(NodeVelocities):
    """The SideNet switched off: every node keeps the anchor's velocity (no work, no calls)."""

    def __call__(self, field, x, anchor, t, offsets):
        v_c, v_u = anchor
        return [field.guide(v_c, v_u, t - h) for h in offsets]


class SideNetVelocities(NodeVelocities):
    def __init__(self, sidenet: SideNet):
        super().__init__()
        self.sidenet = sidenet
        self.precision = Precision()  # the run's autocast for the SideNet's calls (use_precision)

    def use_precision(self, precision: Precision) -> None:
        """Call the SideNet under ``precision``'s autocast, its parts compiled where it asks (each
        submodule, so that every path through the network, one trunk pass or one per offset, is)."""
        self.precision = precision
        for part in self.sidenet.children():
            precision.compiled(part)

    def answer(self, field, x, anchor, t, offsets):
        with self.precision.networks(x.device):
            return self.answer_now(field, x, anchor, t, offsets)

    def answer_now(self, field, x, anchor, t, offsets):
        v_c, v_u = anchor
        labels = field.labels
        guided = [v_u is not None and field.guided_at(t - h) for h in offsets]
        if not any(guided):
            return self.sidenet.velocities_at(x, v_c, t, offsets, labels)
        null = torch.full_like(labels, field.backbone.null_label)
        paired = self.sidenet.cfg_velocities_at(x, v_c, v_u, t, offsets, guided, labels, null)
        return [field.guide(v_c_hat, v_u_hat, t - h) for h, (v_c_hat, v_u_hat) in zip(offsets, paired)]


class OracleVelocities(NodeVelocities):
    """Exact guided velocities at ``t - h`` on the trajectory through ``(x, t)`` (float64 solve)."""

    def __init__(self, rtol: float, atol: float):
        super().__init__()
        self.tolerance = Tolerance(rtol, atol)
        self._exact: Optional[tuple[VelocityField, VelocityField]] = None

    def exact_field(self, field: VelocityField) -> VelocityField:
        """``field``'s guidance on a float64 backbone, with its own counter (no NFE charged)."""
        if self._exact is None or self._exact[0] is not field:
            self._exact = (field, field.with_backbone(backbone_in_dtype(field.backbone, torch.float64)))
        return self._exact[1]

    def answer(self, field, x, anchor, t, offsets):
        if not (all(h > 0 for h in offsets) or all(h < 0 for h in offsets)):
            raise ValueError(f"oracle offsets must share one sign, got {list(offsets)}")
        exact = self.exact_field(field)
        order = sorted(range(len(offsets)), key=lambda i: abs(offsets[i]))
        times = torch.tensor([t] + [t - offsets[i] for i in order], dtype=torch.float64)
        states = reference_trajectory(exact, x, times, self.tolerance)[1:]
        velocities: list[Optional[torch.Tensor]] = [None] * len(offsets)
        for i, state, time in zip(order, states, times[1:]):
            velocities[i] = exact(state, float(time)).to(x.dtype)
        return velocities
