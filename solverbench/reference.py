"""The reference solve: adaptive Dormand-Prince 5(4) through torchdiffeq, in float64, tight tolerance.

``reference_trajectory`` integrates a velocity field (its backbone copied to float64) and
gives the states at chosen times; the trajectory error and the LTE study measure every
solver against it, and the registered ``reference`` solver is a thin wrapper of it.

``reference_endpoints`` gives the endpoints from given noise, labels and guidance, cached
on disk keyed by everything that defines them (backbone identity, seed, sample count,
sample dtype, guidance, tolerances), so every solver of a sweep, and every later sweep,
reuses one solve; an entry that cannot be used (truncated, foreign, of another key or shape)
is moved aside, named in one line, and solved again (``solverbench.cache_entry``).  Under
torchrun the batches of a solve are split across the ranks (each batch solved as in one
process, so the endpoints are the same), and rank 0 alone reads, mends and writes the cache.
Runs sharing a results folder (``run --workers``, Slurm workers) solve each reference once: the
first to ask holds a lease beside the cache file while it solves (``solverbench.leases``), the
others wait for it and read the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from solverbench.backbone import backbone_identity, backbone_in_dtype
from solverbench.cache_entry import UnfitEntry, load_tensors, read_shared_entry, save_atomically
from solverbench.distributed import world
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.hashing import spec_hash
from solverbench.leases import Lease
from solverbench.progress import progress_bar

METHOD = "dopri5"


@dataclass(frozen=True)
class Tolerance:
    """Relative and absolute tolerance of the reference solve."""

    rtol: float = 1e-9
    atol: float = 1e-9

    def __post_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))


def reference_trajectory(field: VelocityField, x: torch.Tensor, times: Any, tolerance: Tolerance,
                         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """States at every time in ``times`` (decreasing, the first that of ``x``), ``(len(times), *x.shape)``.

    The backbone runs in ``dtype`` (a copy of a float32 network); its evaluations are added
    to ``field``'s NFE count.
    """
    from torchdiffeq import odeint  # here, not at the top: it imports scipy (half a second) for every command

    solve_field = field.with_backbone(backbone_in_dtype(field.backbone, dtype))
    times = torch.as_tensor(times).to(device=x.device, dtype=dtype)
    try:
        return odeint(lambda t, y: solve_field(y, t), x.to(dtype), times, rtol=tolerance.rtol, atol=tolerance.atol,
                      method=METHOD)
    finally:
        field.nfe += solve_field.nfe


def guided_past_the_end(guidance: Guidance, inverting: bool = False) -> bool:
    """Whether guidance reaches the end the solve steps past (t = 0; t = 1 for an inversion) and so goes on
    beyond it (solverbench.guidance): the stages dopri5 takes past the end see the guided field."""
    t_lo, t_hi = guidance.interval
    return guidance.on and (t_hi == 1.0 if inverting else t_lo == 0.0)


def reference_key(backbone: Any, seed: int, num_samples: int, dtype: str, guidance: Guidance,
                  tolerance: Tolerance, label_rule: str = "uniform", inverting: bool = False) -> dict[str, Any]:
    return {
        **({"direction": "inversion", "start": "data draw 0"} if inverting else {}),
        "backbone": backbone_identity(backbone), "seed": int(seed), "num_samples": int(num_samples),
        **({"labels": label_rule} if label_rule != "uniform" else {}),
        "dtype": dtype, "cfg_scale": guidance.scale, "cfg_interval": list(guidance.interval),
        **({"cfg_convention": guidance.convention} if guidance.convention else {}),
        **({"past_the_end": "guided"} if guided_past_the_end(guidance, inverting) else {}),
        "rtol": tolerance.rtol, "atol": tolerance.atol, "method": METHOD,
    }


class ProgressBackbone:
    """A backbone that moves a progress bar to the time it is evaluated at (the solve runs t = 1 -> 0, or
    0 -> 1 when it inverts)."""

    STEPS = 1000  # bar units per batch

    def __init__(self, backbone: Any, bar: tqdm, batch: int, inverting: bool = False):
        self.backbone, self.bar, self.batch, self.inverting = backbone, bar, batch, inverting

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backbone, name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        now = float(t.reshape(-1)[0])
        position = self.batch * self.STEPS + round(self.STEPS * (now if self.inverting else 1.0 - now))
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)
        return self.backbone(x, t, y)


def solve_reference(backbone: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], guidance: Guidance,
                    tolerance: Tolerance, batch_size: int, progress: bool = False,
                    inverting: bool = False) -> torch.Tensor:
    """Float64 endpoints at t = 0 of the reference solve from ``noise`` at t = 1, in batches (split
    across the ranks under torchrun; the bar follows rank 0's).  ``inverting``: from data at t = 0
    (``noise`` holds it) to t = 1, on the mirrored field (docs/inversion.md)."""
    backbone64 = backbone_in_dtype(backbone, torch.float64)  # once, not per batch
    ranks = world()
    starts = range(0, len(noise), batch_size)
    mine = len(ranks.my_batches(len(starts)))
    desc = (f"reference {'inversion' if inverting else 'solve'} ({METHOD}, float64, rtol={tolerance.rtol:g}, "
            f"atol={tolerance.atol:g}) of {len(noise)} samples"
            + (f" ({mine} of {len(starts)} batches here)" if ranks.sharded else ""))
    bar = progress_bar(total=mine * ProgressBackbone.STEPS, desc=desc, enabled=progress, off_terminal="total",
                       bar_format="{desc}: {percentage:3.0f}% of t from " + ("0 to 1" if inverting else "1 to 0")
                                  + " [{elapsed}<{remaining}]")
    done = [0]  # batches this rank finished

    def solve(b: int) -> torch.Tensor:
        sl = slice(starts[b], starts[b] + batch_size)
        field = VelocityField(ProgressBackbone(backbone64, bar, done[0], inverting),
                              None if labels is None else labels[sl], guidance, mirrored=inverting)
        endpoint = reference_trajectory(field, noise[sl].double(), [1.0, 0.0], tolerance)[-1]
        done[0] += 1
        bar.update(done[0] * ProgressBackbone.STEPS - bar.n)  # this batch reached t = 0
        return endpoint

    with bar:
        return torch.cat(ranks.map_batches(solve, len(starts)))


def reference_endpoints(backbone: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], *, seed: int,
                        dtype_name: str, guidance: Guidance, tolerance: Tolerance, label_rule: str = "uniform",
                        batch_size: int = 1024,
                        cache_dir: Optional[Path] = None, progress: bool = False,
                        inverting: bool = False, known: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Float64 endpoints of the reference solve from ``noise`` (samples ``0 .. N - 1`` of ``seed``,
    drawn in ``dtype_name``, with ``labels`` drawn by ``label_rule``), read from the cache where an
    earlier run stored them.  ``inverting``: the exact inversion of data draw 0 of ``seed`` (in
    ``noise``'s place) from t = 0 to t = 1.  ``known``: the endpoints of the first samples, solved
    earlier in whole batches (a multiple of ``batch_size``); only the rest are solved, in the batches a
    solve of all ``N`` would take, so the endpoints are the same."""
    key = reference_key(backbone, seed, len(noise), dtype_name, guidance, tolerance, label_rule, inverting)
    path = Path(cache_dir) / f"{spec_hash(key)}.pt" if cache_dir is not None else None
    ranks = world()
    if path is None or not ranks.main:
        return _read_or_solve(backbone, noise, labels, key, path, guidance, tolerance, batch_size, progress,
                              inverting, known)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one run solves, the others wait and read its file: runs sharing a results folder (workers) solve it once
    with Lease(path.with_name(path.name + ".lease")):
        return _read_or_solve(backbone, noise, labels, key, path, guidance, tolerance, batch_size, progress,
                              inverting, known)


def _read_or_solve(backbone: Any, noise: torch.Tensor, labels: Optional[torch.Tensor], key: dict[str, Any],
                   path: Optional[Path], guidance: Guidance, tolerance: Tolerance, batch_size: int, progress: bool,
                   inverting: bool, known: Optional[torch.Tensor]) -> torch.Tensor:
    ranks = world()
    if path is not None:
        stored = read_shared_entry(path, "cached reference " + ("inversion" if inverting else "solve"),
                                   lambda p: read_endpoints(p, key, noise.shape))
        if stored is not None:
            return stored.to(noise.device)
    start = 0 if known is None else len(known)
    if start % batch_size or start > len(noise):
        raise ValueError(f"known endpoints of {start} samples are not whole batches of {batch_size} of the "
                         f"{len(noise)} asked for")
    endpoints = solve_reference(backbone, noise[start:], None if labels is None else labels[start:], guidance,
                                tolerance, batch_size, progress and ranks.main, inverting)
    if known is not None:
        endpoints = torch.cat([known.to(endpoints.device), endpoints])
    if path is not None and ranks.main:
        save_atomically({"endpoints": endpoints.cpu(), "key": str(key)}, path)
    return endpoints


def read_endpoints(path: Path, key: dict[str, Any], shape: torch.Size) -> torch.Tensor:
    """The endpoints a reference cache file holds, checked: written for ``key``, float64 of ``shape``."""
    stored = load_tensors(path, ("endpoints", "key"))
    if stored["key"] != str(key):
        raise UnfitEntry("was written for another reference solve than its name says (stored key differs)")
    endpoints = stored["endpoints"]
    if not isinstance(endpoints, torch.Tensor) or endpoints.dtype != torch.float64 or endpoints.shape != shape:
        found = f"{endpoints.dtype} {tuple(endpoints.shape)}" if isinstance(endpoints, torch.Tensor) else \
            type(endpoints).__name__
        raise UnfitEntry(f"holds endpoints {found}, not float64 {tuple(shape)}")
    return endpoints
