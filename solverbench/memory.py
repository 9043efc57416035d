"""Peak tensor memory of a computation, counted the same way on every device (issue: cost columns).

``TensorMemory`` is a dispatch mode that adds up the storages the operators inside it allocate
while they are alive and keeps the largest total.  A storage counts from the operator that
created it until Python frees it; outputs that alias an input (views, in-place operators) are
not new memory.  Tensors made before the mode (the weights, the input noise) are not counted,
so the peak is the working memory of what runs inside: a solver's state and the backbone's
transient activations.  Unlike ``torch.cuda.max_memory_allocated`` it does not depend on an
allocator's caching or rounding, and it works on a CPU, where torch keeps no such statistic.

``available_bytes`` is what a device has free, for checks made before a large allocation.
"""
from __future__ import annotations

import functools
import os
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorMemory(TorchDispatchMode):
    """``with TensorMemory() as memory: ...``, then ``memory.peak`` (bytes) and ``memory.live``."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in a "dynamo disabled" decorator by default: two Python calls
        # per operator, and torch._dynamo imported at the first (over a second).  Nothing here is compiled.
        return False

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, weakref.ref] = {}  # id(storage) -> weak reference that frees its bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        aliased = _aliased_returns(func)
        if isinstance(out, torch.Tensor):  # most operators: one tensor
            if not (aliased and aliased[0]):
                self.track(out.untyped_storage())
            return out
        for i, value in enumerate(tree_leaves(out)):
            if isinstance(value, torch.Tensor) and not (i < len(aliased) and aliased[i]):
                self.track(value.untyped_storage())
        return out

    def track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        known = self._storages.get(key)
        if known is not None and known() is storage:
            return
        size = storage.nbytes()
        self._storages[key] = weakref.ref(storage, lambda ref, key=key, size=size: self.free(key, ref, size))
        self.live += size
        self.peak = max(self.peak, self.live)

    def free(self, key: int, ref: weakref.ref, size: int) -> None:
        if self._storages.get(key) is ref:
            del self._storages[key]
        self.live -= size


@functools.cache
def _aliased_returns(func) -> tuple[bool, ...]:
    """For each return of ``func``'s schema, whether it aliases an input (a view, an in-place result)."""
    return tuple(ret.alias_info is not None for ret in func._schema.returns)


def available_bytes(device: str | torch.device) -> int | None:
    """Memory free for new tensors on ``device``: a GPU's free memory, or the host's available memory
    (``MemAvailable`` of /proc/meminfo, else its free pages); None where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
