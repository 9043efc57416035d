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
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

DataSampler = Callable[[int, torch.Generator], tuple[torch.Tensor, Optional[torch.Tensor]]]
WARMUP_STEPS = 100


def option(default, help: str, choices: Optional[tuple] = None):
    """A dataclass field whose ``help`` (and ``choices``) the ``train-backbone`` command shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class FlowTrainingConfig:
    """Optimisation settings every trained flow shares; backbones add their own fields."""

    steps: int = option(2000, "optimiser steps")
    batch_size: int = option(256, "samples per step")
    lr: float = option(2e-3, "peak learning rate (AdamW; warm-up, then cosine decay to 0)")
    ema_decay: float = option(0.999, "decay of the weight average that is saved")
    seed: int = option(0, "seed of initialisation, data order, times and noise")


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
    bar = tqdm(range(config.steps), desc=desc, unit="step", disable=not progress, mininterval=1.0)
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
