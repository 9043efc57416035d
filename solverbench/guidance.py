"""Classifier-free guidance as one checked value: ``v = v_u + w (v_c - v_u)`` inside an interval of t.

A ``Guidance`` is checked when it is made (a grid's ``guidance:`` section, or
``sample(cfg_scale=, cfg_interval=)``) and then carried unchanged to the velocity field,
the reference solve and the metrics.  Beside scale and interval it fixes three conventions
on which public samplers differ; the defaults are solverbench's own:

- ``rule``: ``"project"`` guides where ``t_lo < t <= t_hi`` at any scale other than 1;
  ``"repa"`` where ``t_lo <= t <= t_hi`` and only at a scale above 1 (REPA's samplers.py;
  the two differ where a grid point falls on ``t_lo``, and for scales below 1).
- ``decision``: ``"evaluation"`` decides at each evaluation's own time; ``"step"`` once per
  step from its start time, for every evaluation and node of the step (REPA's Heun; the BA
  authors' single-anchor sampler).  A solver marks its steps with ``field.at_step(t)``.
- ``channels``: guide only the first k channels, the others keep the conditional velocity
  (SiT's and DiT's ``forward_with_cfg`` guide 3 of the 4 latent channels); None guides all.

A public sampler's conventions are one option, ``sampler`` (``SAMPLERS``): ``Guidance.like("sit",
scale)`` or a grid's ``guidance: {scale: 4.0, sampler: sit}``.

Past the ends of the path.  An adaptive solver may evaluate beyond t = 0 (dopri5 steps past
the end and interpolates back), and an inversion beyond t = 1.  An interval that reaches an
end (``t_lo = 0`` or ``t_hi = 1``) goes on past it, so the field an overshooting stage sees is
the one just inside: without that, a guided field would jump to the conditional one there,
and the adaptive solve would spend its evaluations finding the jump.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

RULES = ("project", "repa")
DECISIONS = ("evaluation", "step")
# public samplers -> the conventions that reproduce their guidance
SAMPLERS = {
    "repa": {"rule": "repa", "decision": "step"},  # REPA's samplers.py (euler_sampler, Heun's stage too)
    # SiT's sample_ddp.py: forward_with_cfg (3 channels) at every evaluation, t = 0 included, where cfg > 1
    "sit": {"rule": "repa", "channels": 3},
}


@dataclass(frozen=True)
class Guidance:
    scale: float = 1.0  # w; 1 is no guidance
    interval: tuple[float, float] = (0.0, 1.0)  # (t_lo, t_hi): where guidance is on (see ``rule``)
    rule: str = "project"
    decision: str = "evaluation"
    channels: Optional[int] = None

    def __post_init__(self):
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"cfg_scale must be a number >= 0 (1 means no guidance), got {scale!r} "
                            f"({type(scale).__name__})")
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"cfg_scale must be a number >= 0 (1 means no guidance), got {scale!r}")
        try:
            t_lo, t_hi = (float(v) for v in self.interval)
        except (TypeError, ValueError):
            raise ValueError(f"cfg_interval must be a pair (t_lo, t_hi), got {self.interval!r}") from None
        if not 0.0 <= t_lo < t_hi <= 1.0:
            raise ValueError(f"cfg_interval must satisfy 0 <= t_lo < t_hi <= 1, got {tuple(self.interval)}")
        if self.rule not in RULES:
            raise ValueError(f"guidance rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.decision not in DECISIONS:
            raise ValueError(f"guidance decision must be one of {', '.join(DECISIONS)}, got {self.decision!r}")
        if self.channels is not None and (isinstance(self.channels, bool) or not isinstance(self.channels, int)
                                          or self.channels < 1):
            raise ValueError(f"guidance channels must be a positive integer (or absent: all), got {self.channels!r}")
        object.__setattr__(self, "scale", float(scale))
        object.__setattr__(self, "interval", (t_lo, t_hi))

    @property
    def on(self) -> bool:
        """Whether the guided velocity ever differs from the conditional one."""
        return self.scale > 1.0 if self.rule == "repa" else self.scale != 1.0

    def applies_at(self, t: float) -> bool:
        """Guidance is on at time ``t``: the rule's interval, gone on past an end of the path that it
        reaches (t < 0 where ``t_lo = 0``, t > 1 where ``t_hi = 1``), and a scale that guides."""
        t_lo, t_hi = self.interval
        t = float(t)
        if t < 0.0 or t > 1.0:
            inside = t_lo == 0.0 if t < 0.0 else t_hi == 1.0
        elif self.rule == "repa":
            inside = t_lo <= t <= t_hi
        else:
            inside = t_lo < t <= t_hi
        return self.on and inside

    @classmethod
    def like(cls, sampler: str, scale: float = 1.0, interval: tuple[float, float] = (0.0, 1.0)) -> "Guidance":
        """Guidance as the public ``sampler`` applies it (``SAMPLERS``), at ``scale`` on ``interval``."""
        return cls(scale, interval, **sampler_conventions(sampler))

    @property
    def convention(self) -> Optional[str]:
        """The conventions that differ from the defaults, as one line (None where all are default)."""
        parts = ([f"rule={self.rule}"] if self.rule != RULES[0] else []) + \
                ([f"decision={self.decision}"] if self.decision != DECISIONS[0] else []) + \
                ([f"channels={self.channels}"] if self.channels is not None else [])
        return "; ".join(parts) or None

    def check_fits(self, sample_shape: tuple[int, ...]) -> None:
        """Refuse ``channels`` beyond the channels of samples of ``sample_shape`` (the first dimension of a
        sample, x's dim 1): 1 <= channels <= sample_shape[0], where all of them is the same as leaving it out."""
        if self.channels is not None and (not sample_shape or self.channels > sample_shape[0]):
            have = sample_shape[0] if sample_shape else 0
            raise ValueError(f"guidance channels {self.channels} do not fit samples of shape {tuple(sample_shape)}, "
                             f"which have {have} channel(s) (dimension 1 of x); give 1 to {have}, or leave channels "
                             "out to guide them all")


NO_GUIDANCE = Guidance()


def sampler_conventions(sampler: Optional[str] = None, **explicit) -> dict:
    """The conventions (rule, decision, channels) of a public ``sampler`` (``SAMPLERS``), with ``explicit``
    ones; an explicit convention that contradicts the sampler's is refused (ValueError)."""
    if sampler is None:
        return dict(explicit)
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"guidance sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    conventions = SAMPLERS[sampler]
    defaults = {k: Guidance.__dataclass_fields__[k].default for k in explicit}
    contradicted = {k: v for k, v in explicit.items() if v != conventions.get(k, defaults[k])}
    if contradicted:
        given = ", ".join(f"{k}: {v}" for k, v in contradicted.items())
        sets = ", ".join(f"{k}: {v}" for k, v in conventions.items())
        raise ValueError(f"guidance sampler {sampler} sets {sets} (and the other conventions to their defaults); "
                         f"leave out {given}")
    return dict(conventions)


def cfg_combine(conditional, unconditional, scale: float):
    """Classifier-free guidance's ``u + w (c - u)`` of a conditional and an unconditional velocity, or of anything
    linear in them (their errors, a state's residuals built from them)."""
    return unconditional + scale * (conditional - unconditional)
