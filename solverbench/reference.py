"""Reference endpoints: the adaptive float64 solve from the same noise, labels and guidance.

Cached on disk, keyed by everything that defines them (backbone identity, seed, sample
count, sample dtype, guidance, tolerances), so every solver of a sweep, and every later
sweep, reuses one solve.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from solverbench.backbone import backbone_identity, backbone_in_dtype
from solverbench.field import VelocityField
from solverbench.hashing import spec_hash
from solverbench.noise import labels_for, noise_for
from solverbench.solver import get_solver


def reference_key(backbone: Any, seed: int, num_samples: int, dtype: str, cfg_scale: float,
                  cfg_interval: tuple[float, float], rtol: float, atol: float) -> dict[str, Any]:
    return {
        "backbone": backbone_identity(backbone), "seed": int(seed), "num_samples": int(num_samples),
        "dtype": dtype, "cfg_scale": float(cfg_scale), "cfg_interval": [float(v) for v in cfg_interval],
        "rtol": float(rtol), "atol": float(atol), "method": "dopri5",
    }


class ProgressBackbone:
    """A backbone that moves a progress bar to the time it is evaluated at (the solve runs t = 1 -> 0)."""

    STEPS = 1000  # bar units per batch

    def __init__(self, backbone: Any, bar: tqdm, batch: int):
        self.backbone, self.bar, self.batch = backbone, bar, batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backbone, name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        position = self.batch * self.STEPS + round(self.STEPS * (1.0 - float(t.reshape(-1)[0])))
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)
        return self.backbone(x, t, y)


def solve_reference(backbone: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], cfg_scale: float,
                    cfg_interval: tuple[float, float], rtol: float, atol: float, batch_size: int,
                    progress: bool = False) -> torch.Tensor:
    solver = get_solver("reference", rtol=rtol, atol=atol)
    backbone64 = backbone_in_dtype(backbone, torch.float64)  # once, not per batch
    grid = torch.tensor([1.0, 0.0], dtype=torch.float64)
    batches = range(0, len(noise), batch_size)
    bar = tqdm(total=len(batches) * ProgressBackbone.STEPS, disable=not progress, file=sys.stderr,
               desc=f"reference solve (dopri5, float64, rtol={rtol:g}, atol={atol:g}) of {len(noise)} samples",
               bar_format="{desc}: {percentage:3.0f}% of t from 1 to 0 [{elapsed}<{remaining}]")
    out = []
    with bar:
        for i, start in enumerate(batches):
            sl = slice(start, start + batch_size)
            field = VelocityField(ProgressBackbone(backbone64, bar, i), None if labels is None else labels[sl],
                                  cfg_scale, cfg_interval)
            out.append(solver.solve(field, noise[sl].double(), grid))
            bar.update((i + 1) * ProgressBackbone.STEPS - bar.n)  # this batch reached t = 0
    return torch.cat(out)


def reference_endpoints(backbone: Any, *, seed: int, num_samples: int, dtype: torch.dtype, cfg_scale: float,
                        cfg_interval: tuple[float, float], rtol: float = 1e-9, atol: float = 1e-9,
                        batch_size: int = 1024, device: str = "cpu", cache_dir: Optional[Path] = None,
                        progress: bool = False) -> torch.Tensor:
    """Float64 endpoints of the reference solve for samples ``0 .. num_samples - 1`` of ``seed``."""
    dtype_name = str(dtype).removeprefix("torch.")
    key = reference_key(backbone, seed, num_samples, dtype_name, cfg_scale, cfg_interval, rtol, atol)
    path = Path(cache_dir) / f"{spec_hash(key)}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        stored = torch.load(path, weights_only=True)
        return stored["endpoints"].to(device)
    indices = range(num_samples)
    noise = noise_for(seed, indices, backbone.sample_shape, dtype).to(device)
    labels = labels_for(seed, indices, backbone.num_classes)
    labels = None if labels is None else labels.to(device)
    endpoints = solve_reference(backbone, noise, labels, cfg_scale, cfg_interval, rtol, atol, batch_size, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent runs never share a temporary file
        torch.save({"endpoints": endpoints.cpu(), "key": str(key)}, tmp)
        tmp.replace(path)
    return endpoints
