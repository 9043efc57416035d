"""Flow-matching training of a velocity network, in the project's conventions.

One step draws data ``(x0, y)``, ``t ~ U(0, 1)`` and ``eps ~ N(0, I)``, forms
``x_t = (1 - t) x0 + t eps`` and regresses ``net(x_t, t, y)`` on ``eps - x0`` (mean
squared error).  For classifier-free guidance each label is replaced by the null label
with probability ``label_dropout``.  AdamW with a linear warm-up and cosine decay of the
learning rate; an exponential moving average (EMA) of the weights is what gets saved.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional

import torch
from torch import nn
from solverbench.progress import progress_bar

DataSampler = Callable[[int, torch.Generator], tuple[torch.Tensor, Optional[torch.Tensor]]]
WARMUP_STEPS = 100


@dataclass(frozen=True)
class Check:
    """What a training option must be: ``describe`` says it (in errors and ``--help``), ``test`` checks it."""

    describe: str
    test: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE_INT = Check("an integer >= 1", lambda v: _is_int(v) and v >= 1)
NON_NEGATIVE_INT = Check("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE_NUMBER = Check("a number > 0", lambda v: _is_number(v) and v > 0)
FRACTION = Check("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)


def multiple_of(k: int, why: str) -> Check:
    return Check(f"a positive multiple of {k} ({why})", lambda v: _is_int(v) and v >= k and v % k == 0)


def option(default, help: str, choices: Optional[tuple] = None, check: Optional[Check] = None):
    """A dataclass field whose ``help`` (and ``choices``) the ``train-backbone`` command shows;
    the config refuses a value outside ``choices`` or failing ``check`` when it is built."""
    return field(default=default, metadata={"help": help, "choices": choices, "check": check})


@dataclass
class FlowTrainingConfig:
    """Optimisation settings every trained flow shares; backbones add their own fields.

    Every field is checked when a config is built (``choices``, and the ``check`` of its
    ``option``, inherited from a base class where a subclass redefines the field without
    one), so a meaningless setting fails before any training, in one line.
    """

    steps: int = option(2000, "optimiser steps", check=POSITIVE_INT)
    batch_size: int = option(256, "samples per step", check=POSITIVE_INT)
    lr: float = option(2e-3, "peak learning rate (AdamW; warm-up, then cosine decay to 0)", check=POSITIVE_NUMBER)
    ema_decay: float = option(0.999, "decay of the weight average that is saved", check=FRACTION)
    seed: int = option(0, "seed of initialisation, data order, times and noise", check=NON_NEGATIVE_INT)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            choices, check = f.metadata.get("choices"), option_check(type(self), f.name)
            where = f"training option {f.name!r} (--{f.name.replace('_', '-')})"
            if choices is not None and value not in choices:
                raise ValueError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}")
            if check is not None and not check.test(value):
                raise ValueError(f"{where} must be {check.describe}, got {value!r}")


def option_check(config_cls: type, name: str) -> Optional[Check]:
    """The ``check`` of field ``name``: its own, else the nearest base class's."""
    for cls in config_cls.__mro__:
        own = getattr(cls, "__dataclass_fields__", {}).get(name)
        if own is not None and own.metadata.get("check") is not None:
            return own.metadata["check"]
    return None


def flow_matching_loss(net: nn.Module, x0: torch.Tensor, y: Optional[torch.Tensor], generator: torch.Generator,
                       null_label: Optional[int] = None, label_dropout: float = 0.0) -> torch.Tensor:
    """``mean || net(x_t, t, y') - (eps - x0) ||^2`` with ``y'`` = y, each dropped to null w.p. ``label_dropout``."""
    b = x0.shape[0]
    t = torch.rand(b, generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    t_b = t.reshape(b, *([1] * (x0.dim() - 1)))
    x_t = (1 - t_b) * x0 + t_b * eps
    if y is not None and label_dropout > 0:
        drop = torch.rand(b, generator=generator) < label_dropout
        y = torch.where(drop, torch.full_like(y, null_label), y)
    return (net(x_t, t, y) - (eps - x0)).pow(2).mean()


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over ``WARMUP_STEPS``, then cosine decay from ``peak`` to 0 at ``steps``."""
    warmup = min(WARMUP_STEPS, max(steps // 10, 1))
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train_flow(net: nn.Module, draw: DataSampler, config: FlowTrainingConfig, *, null_label: Optional[int] = None,
               label_dropout: float = 0.0, progress: bool = True,
               desc: str = "training") -> tuple[nn.Module, list[float]]:
    """Train ``net`` in place; returns its EMA copy (eval mode) and the loss of every step."""
    generator = torch.Generator().manual_seed(config.seed)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    losses = []
    net.train()
    bar = progress_bar(range(config.steps), desc=desc, unit="step", enabled=progress, off_terminal="total",
                       mininterval=1.0)
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, config.steps, config.lr)
        x0, y = draw(config.batch_size, generator)
        loss = flow_matching_loss(net, x0, y, generator, null_label, label_dropout)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))  # short memory while the weights move fast
        with torch.no_grad():
            for averaged, current in zip(ema.parameters(), net.parameters()):
                averaged.lerp_(current, 1 - decay)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    net.eval()
    return ema, losses
