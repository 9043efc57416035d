"""Runs split across processes with torch.distributed: ``torchrun --nproc_per_node=N -m solverbench run GRID``.

Every rank runs the same program (SPMD).  What is split is the per-sample work, by whole
batches: with ``B`` batches of ``batch_size`` samples, rank ``r`` takes batches
``r, r + N, r + 2N, ...``, then every rank gathers every batch's result in batch order.
A batch is therefore the same set of samples, solved the same way, as in one process:
samples, reference endpoints (whose adaptive steps depend on the batch) and every number
made from them are bitwise the same for any number of processes on one kind of device.
Per-sample noise is keyed by (seed, index), so no rank draws another's noise.

Rank 0 alone decides (which cells to run, which it holds the claim of) and broadcasts
its decision, and rank 0 alone writes files (the results store, caches, samples).

``world()`` is the current world: one process (rank 0 of 1) unless torch.distributed is
initialised; ``init_from_environment`` initialises it from torchrun's variables.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class PeerFailed(RuntimeError):
    """Another rank failed (its error is named); that rank reports it, this one stops quietly."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the rank that decides and writes."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.size > 1

    def my_batches(self, num_batches: int) -> range:
        """The batch indices of this rank: ``rank, rank + size, ...``."""
        return range(self.rank, num_batches, self.size)

    def agree(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.sharded:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def decide(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed on rank 0 alone and given to every rank; where it raises, every rank raises
        (rank 0 its own error, the others one that names it)."""
        if not self.sharded:
            return fn()
        outcome: tuple[bool, Any] = (True, None)
        if self.main:
            try:
                outcome = (True, fn())
            except Exception as err:
                outcome = (False, err)
                self.agree((False, f"{type(err).__name__}: {err}"))
                raise
        ok, value = self.agree(outcome)
        if not ok:
            raise PeerFailed(f"rank 0 of {self.size} failed: {value}")
        return value

    def all_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (small picklable objects), in rank order."""
        if not self.sharded:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the ranks (itself in one process)."""
        if not self.sharded:
            return value
        total = value.clone()
        dist.all_reduce(total)
        return total / self.size

    def barrier(self) -> None:
        if self.sharded:
            dist.barrier()

    def check_all(self, error: Optional[BaseException]) -> None:
        """Raise on every rank where any rank failed (the first failing rank's error, named), so no
        rank waits alone in a collective for a rank that gave up."""
        errors = self.all_objects(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
        if failed:
            rank, message = failed[0]
            raise PeerFailed(f"rank {rank} of {self.size} failed: {message}")

    def map_batches(self, fn: Callable[[int], torch.Tensor], num_batches: int) -> list[torch.Tensor]:
        """``[fn(0), ..., fn(num_batches - 1)]`` on every rank, each rank computing its own batches.

        Every ``fn(b)`` must give a tensor of one dtype and trailing shape (its first dimension
        may differ, e.g. a last partial batch)."""
        mine = self._my_results(fn, num_batches)
        if not self.sharded:
            return [mine[b] for b in range(num_batches)]
        return self._gather(mine, num_batches)

    def map_batch_dicts(self, fn: Callable[[int], dict[str, torch.Tensor]], num_batches: int
                        ) -> list[dict[str, torch.Tensor]]:
        """``map_batches`` for an ``fn`` that gives a dict of tensors per batch (e.g. features by name)."""
        mine = self._my_results(fn, num_batches)
        if not self.sharded:
            return [mine[b] for b in range(num_batches)]
        keys = sorted({key for part in self.all_objects(sorted({k for d in mine.values() for k in d}))
                       for key in part})
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(num_batches)]
        for key in keys:
            for b, value in enumerate(self._gather({b: d[key] for b, d in mine.items()}, num_batches)):
                out[b][key] = value
        return out

    def _my_results(self, fn: Callable[[int], Any], num_batches: int) -> dict[int, Any]:
        """``fn(b)`` for this rank's batches; where any rank raised, every rank raises (``check_all``)."""
        mine: dict[int, Any] = {}
        error: Optional[BaseException] = None
        try:
            for b in self.my_batches(num_batches):
                mine[b] = fn(b)
        except Exception as err:  # every rank must learn of it before the gather
            error = err
        self.check_all(error)
        return mine

    def _gather(self, mine: dict[int, torch.Tensor], num_batches: int) -> list[torch.Tensor]:
        """Every rank's batches, in batch order: one padded all_gather of the flattened tensors (on the
        collective's device: the rank's GPU under NCCL, the CPU under gloo)."""
        shapes = self.all_objects({b: (tuple(x.shape), str(x.dtype)) for b, x in mine.items()})
        dtypes = {dtype for part in shapes for _, dtype in part.values()}
        if len(dtypes) > 1:
            raise RuntimeError(f"ranks gave batches of different dtypes: {sorted(dtypes)}")
        dtype = getattr(torch, dtypes.pop().removeprefix("torch."))
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        sizes = [sum(math.prod(s) for s, _ in part.values()) for part in shapes]
        flat = torch.zeros(max(sizes), dtype=dtype, device=device)
        if mine:
            local = torch.cat([mine[b].reshape(-1) for b in sorted(mine)])
            flat[:len(local)] = local.to(device)
        parts = [torch.empty_like(flat) for _ in range(self.size)]
        dist.all_gather(parts, flat)
        out: list[Optional[torch.Tensor]] = [None] * num_batches
        for rank, part in enumerate(parts):
            offset = 0
            for b in sorted(shapes[rank]):
                shape = shapes[rank][b][0]
                n = math.prod(shape)
                out[b] = part[offset:offset + n].reshape(shape)
                offset += n
        return out  # type: ignore[return-value]


def world() -> World:
    """The current world: torch.distributed's rank and size where it is initialised, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device: str) -> World:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL for a CUDA ``device``
    (each rank on its ``LOCAL_RANK``'s GPU, so ``cuda`` names it), gloo on the CPU."""
    if not launched_by_torchrun() or dist.is_initialized():
        return world()
    if str(device).startswith("cuda:"):
        raise ValueError(f"device {device} would put every rank on one GPU; under torchrun name the device cuda "
                         "(each rank takes the GPU of its LOCAL_RANK)")
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
