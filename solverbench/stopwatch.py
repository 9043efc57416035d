"""Wall time of a repeated piece of work inside a larger one (a solver's own network inside a solve).

CUDA runs asynchronously, so each timed span synchronises the device before it starts
(excluding queued work that is not its own) and before it stops (including its own).
On the CPU the span is plain ``time.perf_counter`` arithmetic.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates the seconds spent inside ``with stopwatch.timing(device):`` spans."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def timing(self, device: torch.device) -> Iterator[None]:
        synchronize(device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(device)
            self.seconds += time.perf_counter() - start
