"""SideNet settings: architecture and chain-training knobs, validated, in one flat mapping.

The same keys serve a grid's ``sidenet:`` mapping, per-solver overrides in a grid's solver
params, and the options of ``python -m solverbench train-sidenet``.  Together with the
backbone's identity they key the SideNet cache.  The official BA-solver values (ImageNet,
BA_SOLVER.md) are K = 8, lambda = 50, lr 1e-4, clip 1, EMA 0.9996, label dropout 0.1, 250
iterations at batch 4096; the defaults here keep those except where a CPU-sized run
(smaller batch, more iterations) needs otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from solvers.ba.sidenet.base import OUTPUT_HEADS

DATA_MODES = ("auto", "data", "noise")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class SideNetConfig:
    # architecture
    width: int = 128  # hidden width (MLP) or base channels (image; the paper: 128-256)
    depth: int = 3  # residual blocks
    embed_dim: int = 128  # sinusoidal embedding size of t and h
    heads: int = 4  # attention heads of the image SideNet's middle block
    output_head: str = "gated"  # gated: W u + alpha x + beta v (sidenet/base.py); plain: W u (the paper's)
    # chain training
    iterations: int = 1200
    batch_size: int = 256
    chain_length: int = 8  # K steps per chain (K + 1 backbone calls)
    step_rate: float = 50.0  # lambda of the truncated exponential step-size law
    sim_nodes: int = 3  # Gauss-Legendre nodes of the no-grad chain simulation
    label_dropout: float = 0.1  # probability of replacing a label by the null label
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    data: str = "auto"  # data: backbone.sample_data; noise: chains from noise; auto: data where it exists
    noise_steps: int = 8  # data-free mode: Heun steps that carry noise from t = 1 to the chain's start
    seed: int = 0

    def __post_init__(self):
        positive_ints = ("width", "depth", "embed_dim", "heads", "iterations", "batch_size", "chain_length",
                         "noise_steps")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SideNet setting {name!r} must be a positive integer, got {value!r}")
        if self.embed_dim % 2:
            raise ValueError(f"SideNet setting 'embed_dim' must be even, got {self.embed_dim}")
        for name in ("step_rate", "lr", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SideNet setting {name!r} must be a positive number, got {value!r}")
        for name, lo, hi in (("label_dropout", 0.0, 1.0), ("ema_decay", 0.0, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not lo <= value < hi:
                raise ValueError(f"SideNet setting {name!r} must lie in [{lo}, {hi}), got {value!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"SideNet setting 'weight_decay' must be a non-negative number, got {self.weight_decay!r}")
        if self.sim_nodes not in range(1, 6):
            raise ValueError(f"SideNet setting 'sim_nodes' must be 1 to 5 Gauss-Legendre nodes, got {self.sim_nodes!r}")
        if self.data not in DATA_MODES:
            raise ValueError(f"SideNet setting 'data' must be one of {', '.join(DATA_MODES)}, got {self.data!r}")
        if self.output_head not in OUTPUT_HEADS:
            raise ValueError(
                f"SideNet setting 'output_head' must be one of {', '.join(OUTPUT_HEADS)}, got {self.output_head!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"SideNet setting 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SideNet setting 'seed' must be a non-negative integer, got {self.seed!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_settings(cls, *layers: Mapping[str, Any], where: str = "sidenet") -> "SideNetConfig":
        """Defaults, then each mapping in turn (a grid's ``sidenet:``, then a solver's overrides)."""
        merged: dict[str, Any] = {}
        for layer in layers:
            unknown = sorted(set(layer) - set(cls.keys()))
            if unknown:
                raise ValueError(f"{where}: unknown SideNet setting(s) {', '.join(map(repr, unknown))}; "
                                 f"known settings: {', '.join(cls.keys())}")
            merged.update(layer)
        floats = {f.name for f in fields(cls) if f.type == "float"}
        merged = {k: float(v) if k in floats and isinstance(v, int) and not isinstance(v, bool) else v
                  for k, v in merged.items()}
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def architecture(self) -> dict[str, Any]:
        return {"width": self.width, "depth": self.depth, "embed_dim": self.embed_dim, "heads": self.heads,
                "output_head": self.output_head}
