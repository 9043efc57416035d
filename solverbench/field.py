"""The velocity field solvers see: backbone + classifier-free guidance + NFE counter.

Solvers never call a backbone themselves, so the NFE a result reports is counted, not
claimed.  One call of the field is one NFE; a CFG pair (conditional and unconditional
velocity) runs as one doubled batch and also counts one NFE, as in the paper.

A mirrored field is the flow seen backwards (docs/inversion.md): in solver time ``s`` it is
``u(x, s) = -v(x, 1 - s)``, so sampling it from s = 1 to 0 runs the flow from data to noise.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch

from solverbench.guidance import NO_GUIDANCE, Guidance, cfg_combine


class VelocityField:
    """``v(x, t)`` for a batch of samples sharing the scalar time ``t``.

    Guidance ``v = v_u + w (v_c - v_u)`` is applied where ``Guidance.applies_at`` says
    (by default when ``t`` lies in ``(t_lo, t_hi]``); elsewhere the conditional velocity
    alone is used (and only the conditional half is evaluated).  Under the ``step``
    decision a solver's ``with field.at_step(t):`` makes every evaluation of the step decide
    from ``t``.

    ``mirrored=True``: the times a solver gives are mirrored times ``s``; the backbone runs at the
    path time ``t = 1 - s`` (``path_time``), velocities come back negated, and guidance is decided
    at the path time.  ``unmirrored()`` is the same field in path time, for what a solver asks
    beside the backbone (a network of its own).
    """

    def __init__(self, backbone: Any, labels: Optional[torch.Tensor] = None, guidance: Guidance = NO_GUIDANCE,
                 *, differentiable: bool = False, mirrored: bool = False):
        if guidance.on:
            if labels is None:
                raise ValueError("classifier-free guidance (cfg_scale != 1) needs class labels")
            if getattr(backbone, "null_label", None) is None:
                raise ValueError(
                    f"{type(backbone).__name__} has no null label, so it cannot do classifier-free guidance"
                )
        self.backbone = backbone
        self.labels = labels
        self.guidance = guidance
        self.nfe = 0
        # differentiable: the backbone runs under autograd, and a time given as a tensor reaches it as one (a
        # learned time grid backpropagates through the solver); otherwise under no_grad, as sampling needs
        self.differentiable = differentiable
        self.mirrored = mirrored
        self._step_time: Optional[float] = None  # the path time where the step being taken starts (at_step)
        self._unmirrored: Optional[VelocityField] = None

    def with_backbone(self, backbone: Any) -> "VelocityField":
        """The same labels, guidance and direction on another backbone (e.g. a float64 copy); fresh counter."""
        return VelocityField(backbone, self.labels, self.guidance, differentiable=self.differentiable,
                             mirrored=self.mirrored)

    def path_time(self, t: float | torch.Tensor) -> float | torch.Tensor:
        """The time on the flow's path (the backbone's ``t``) of the solver time ``t``: ``1 - t`` if mirrored."""
        return 1 - t if self.mirrored else t

    def unmirrored(self) -> "VelocityField":
        """This field in path time (itself where it is not mirrored): same backbone, labels, guidance and
        current step; its own NFE counter (what asks it spends no NFE of this field's budget)."""
        if not self.mirrored:
            return self
        if self._unmirrored is None:
            self._unmirrored = VelocityField(self.backbone, self.labels, self.guidance,
                                             differentiable=self.differentiable)
        self._unmirrored._step_time = self._step_time
        return self._unmirrored

    @contextmanager
    def at_step(self, t: float) -> Iterator[None]:
        """Evaluations inside the block belong to the step starting at ``t`` (for the ``step`` decision)."""
        outer, self._step_time = self._step_time, time_value(self.path_time(t))
        try:
            yield
        finally:
            self._step_time = outer

    def guided_at(self, t: float | torch.Tensor) -> bool:
        """Guidance is on for an evaluation (or node) at ``t``: decided at its path time, or at the start
        of the current step under the ``step`` decision."""
        step = self._step_time if self.guidance.decision == "step" and self._step_time is not None else None
        return self.guidance.applies_at(time_value(self.path_time(t)) if step is None else step)

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The (guided) velocity at ``(x, t)``: one NFE."""
        v_c, v_u = self.raw(x, t)
        return self.guide(v_c, v_u, t)

    def raw(self, x: torch.Tensor, t: float | torch.Tensor, *, both: bool = False
            ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Conditional and unconditional velocities ``(v_c, v_u)``: one NFE.

        ``v_u`` is ``None`` where guidance is off at ``t``.  ``both=True`` evaluates the
        unconditional half wherever the field guides at all (a scale other than 1), even at a
        ``t`` outside the guidance interval: for solvers that guide predicted velocities at
        other times than the one evaluated (the BA-solver's node times; it asks for ``both``
        only where one of them is guided).  Still one NFE.
        """
        self.nfe += 1
        if not (self.guided_at(t) or (both and self.guidance.on)):
            return self._backbone(x, t, self.labels), None
        null = torch.full_like(self.labels, self.backbone.null_label)
        v = self._backbone(torch.cat([x, x]), t, torch.cat([self.labels, null]))
        v_c, v_u = v.chunk(2)
        return v_c, v_u

    def guide(self, v_c: torch.Tensor, v_u: Optional[torch.Tensor], t: float | torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance ``v_u + w (v_c - v_u)`` where it is on at ``t`` (on the first
        ``guidance.channels`` channels only, where it names them)."""
        if v_u is None or not self.guided_at(t):
            return v_c
        guided = cfg_combine(v_c, v_u, self.guidance.scale)
        k = self.guidance.channels
        if k is None:
            return guided
        return torch.cat([guided[:, :k], v_c[:, k:]], dim=1)

    def _backbone(self, x: torch.Tensor, t: float | torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """The backbone's velocity at the path time of ``t`` (negated where mirrored: ``u = -v``)."""
        v = self._path_velocity(x, self.path_time(t), y)
        return -v if self.mirrored else v

    def _path_velocity(self, x: torch.Tensor, t: float | torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        if isinstance(t, torch.Tensor) and self.differentiable:
            t_batch = t.to(device=x.device, dtype=x.dtype).reshape(()).expand(x.shape[0])
        else:
            t_batch = torch.full((x.shape[0],), time_value(t), dtype=x.dtype, device=x.device)
        with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
            return self.backbone(x, t_batch, y)


def time_value(t: float | torch.Tensor) -> float:
    """A time as a float, also from a 0-d tensor that carries a gradient (for decisions, not arithmetic)."""
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)
