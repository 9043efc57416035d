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

Where a rank fails, every rank learns of it before it could wait for that rank in a
collective (``decide``, ``check_all``, and ``all_or_none`` before the process group exists):
the first failing rank raises its own error, the others ``PeerFailed`` naming it.  A
command's closing error line is printed once, by rank 0, while the other ranks wait for it
(``report_once``): torchrun stops every rank as soon as one exits with an error.

``world()`` is the current world: one process (rank 0 of 1) unless torch.distributed is
initialised; ``init_from_environment`` initialises it from torchrun's variables.
"""
from __future__ import annotations

import itertools
import math
import os
import pickle
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

REPORT_WAIT_S = 30.0  # how long a rank waits at its exit for rank 0 to print the error line
Failure = tuple[str, tuple[str, ...]]  # what other ranks learn of an error: its message, its class's names


def failure(err: BaseException) -> Failure:
    """An error as other ranks learn of it: its message and the qualified names of its class and bases."""
    return str(err), tuple(f"{cls.__module__}.{cls.__qualname__}" for cls in type(err).__mro__)


class PeerFailed(RuntimeError):
    """Another rank failed first: ``rank`` of ``size``, with its error's ``message``.  Rank 0 prints
    a bad input's line (``report_once``), a rank that raised anything else shows its traceback;
    this rank stops without one."""

    def __init__(self, rank: int, size: int, failed: Failure):
        self.rank, self.size = rank, size
        self.message, self.kinds = failed
        super().__init__(f"rank {rank} of {size} failed: {self.kinds[0].rsplit('.', 1)[-1]}: {self.message}")

    def raised(self, *types: type) -> bool:
        """The failing rank's error was one of ``types`` (or of a subclass)."""
        return any(f"{t.__module__}.{t.__qualname__}" in self.kinds for t in types)


def raise_first(failures: list[Optional[Failure]], error: Optional[BaseException], rank: int) -> None:
    """Given every rank's failure (None: it went on), raise where any rank failed: the first failing
    rank its own ``error``, every other rank ``PeerFailed`` naming it."""
    failed = [r for r, f in enumerate(failures) if f is not None]
    if not failed:
        return
    if failed[0] == rank and error is not None:
        raise error
    raise PeerFailed(failed[0], len(failures), failures[failed[0]]) from error


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
        (rank 0 its own error, the others ``PeerFailed`` naming it)."""
        if not self.sharded:
            return fn()
        outcome: tuple[bool, Any] = (True, None)
        if self.main:
            try:
                outcome = (True, fn())
            except Exception as err:
                self.agree((False, failure(err)))
                raise
        ok, value = self.agree(outcome)
        if not ok:
            raise PeerFailed(0, self.size, value)
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
        """Raise on every rank where any rank failed (``raise_first``: the first failing rank its own
        ``error``, the others ``PeerFailed``), so no rank waits alone in a collective for one that gave up."""
        raise_first(self.all_objects(None if error is None else failure(error)), error, self.rank)

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


def launch_rank() -> int:
    """This process's rank in a torchrun launch (``RANK``; 0 outside one), known before the process group."""
    return int(os.environ.get("RANK", "0"))


_store: Optional[Any] = None  # torchrun's key-value store, once joined
_rounds = itertools.count()  # every rank calls all_or_none in the same order: the nth call's keys


def launch_store() -> Any:
    """The key-value store of the torchrun launch (``MASTER_ADDR:MASTER_PORT``, the one the process
    group is made from), joined once; it outlives the process group."""
    global _store
    if _store is None:
        _store, _, _ = next(dist.rendezvous("env://"))
    return _store


def all_or_none(fn: Callable[[], T]) -> T:
    """``fn()`` on every rank of a torchrun launch, agreed through the launch's store before any
    process group exists (e.g. reading the grid, which names the device and so the backend): where
    ``fn`` raises on any rank, every rank raises (``raise_first``), so no rank goes on to wait in a
    collective for one that stopped.  In one process: ``fn()``."""
    if not launched_by_torchrun():
        return fn()
    value: Any = None
    error: Optional[BaseException] = None
    try:
        value = fn()
    except Exception as err:
        error = err
    store, rank, size = launch_store(), launch_rank(), int(os.environ["WORLD_SIZE"])
    keys = [f"solverbench/all_or_none/{next(_rounds)}/{r}" for r in range(size)]
    store.set(keys[rank], pickle.dumps(None if error is None else failure(error)))
    store.wait(keys)
    raise_first([pickle.loads(store.get(key)) for key in keys], error, rank)
    return value


def report_once(line: str, *, own: bool, status: int = 2) -> None:
    """Print a command's closing error ``line`` to stderr once per launch, and let every rank end with
    ``status`` (the command's): rank 0 prints the line and tells the others, then the ranks meet
    before any exits (each up to ``REPORT_WAIT_S``), since torchrun stops every rank still running
    as soon as one exits with an error (a SIGTERM, which from here on ends a rank with ``status``, and
    once the ranks have met is ignored: the rank is on its way out with ``status``, and Python restores
    a handler's default while it shuts down).  A rank whose error is its ``own`` prints it after all
    where rank 0 does not answer in time (rank 0 did not learn of it).  In one process: print."""
    if not launched_by_torchrun():
        print(line, file=sys.stderr, flush=True)
        return
    on_sigterm(exit_with(status))
    rank, size, wait = launch_rank(), int(os.environ["WORLD_SIZE"]), timedelta(seconds=REPORT_WAIT_S)
    said = rank == 0  # the line is out
    if said:
        print(line, file=sys.stderr, flush=True)
    try:
        store = launch_store()
        if rank == 0:
            store.set("solverbench/reported", b"1")
        else:
            store.wait(["solverbench/reported"], wait)
            said = True
        store.set(f"solverbench/leaving/{rank}", b"1")
        store.wait([f"solverbench/leaving/{r}" for r in range(size)], wait)
    except RuntimeError:  # a timeout (a rank busy elsewhere), or the store's host gone
        pass
    if own and not said:
        print(line, file=sys.stderr, flush=True)
    on_sigterm(signal.SIG_IGN)


def exit_with(status: int) -> Callable[[int, Any], None]:
    """A signal handler that ends the process at once with ``status`` (its output flushed)."""
    def leave(signum: int, frame: Any) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    return leave


def on_sigterm(handler: Any) -> None:
    """Handle SIGTERM (torchrun sends one to every rank still running once a rank has exited) with ``handler``."""
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: torchrun's SIGTERM ends it as it would have
        pass


def init_from_environment(device: str) -> World:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), made from the launch's store:
    NCCL for a CUDA ``device`` (each rank on its ``LOCAL_RANK``'s GPU, so ``cuda`` names it), gloo on
    the CPU."""
    if not launched_by_torchrun() or dist.is_initialized():
        return world()
    if str(device).startswith("cuda:"):
        raise ValueError(f"device {device} would put every rank on one GPU; under torchrun name the device cuda "
                         "(each rank takes the GPU of its LOCAL_RANK)")
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo", store=dist.PrefixStore("default_pg", launch_store()),
                            rank=launch_rank(), world_size=int(os.environ["WORLD_SIZE"]))
    return world()


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
