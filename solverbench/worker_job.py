"""What each task of a submitted job array runs (``run GRID --launcher slurm``): the ordinary worker command.

The command is ``python -m solverbench run GRID --results R --no-progress``, or the same under ``torchrun`` over
the GPUs of the worker's allocation; it takes the grid's cells by claim from the shared results folder.  Its
output goes to the job's log; its exit is the job's outcome: 0 (every cell it took done) or 1 (cells raised:
their rows say why) end the job normally, anything else fails it with one line (``WorkerFailed``).  A job
interrupted by its time limit or by preemption asks submitit to requeue it (``checkpoint``): the requeued worker
goes on with the cells left.  This module imports no torch: a job starts its worker at once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Optional


class WorkerFailed(RuntimeError):
    """A worker that ended otherwise than by finishing its cells; the message says how, in one line."""


@dataclass
class WorkerJob:
    """The picklable function of a submitted job: ``job(index)`` runs worker ``index``'s command."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to every worker's environment
    per_worker_env: Optional[list[dict[str, str]]] = None  # added to each worker's own (its GPUs, on this machine)

    def __call__(self, index: int) -> int:
        env = {**os.environ, **self.env, **(self.per_worker_env[index] if self.per_worker_env else {})}
        process = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, errors="replace")
        try:
            first_error = None
            for line in process.stderr:  # passed through to the job's log; its first error line kept
                sys.stderr.write(line)
                sys.stderr.flush()
                if first_error is None and "error:" in line:
                    first_error = line.strip()
            code = process.wait()
        except BaseException:  # the job is interrupted (time limit, preemption, cancel): so is its worker
            process.kill()
            process.wait()
            raise
        if code in (0, 1):
            return code
        raise WorkerFailed(exit_text(code, first_error))

    def checkpoint(self, index: int) -> Any:
        """What submitit requeues when the job's time is up or it is preempted: the same worker (it goes on with
        the cells left)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, index)


def exit_text(code: int, error: Optional[str]) -> str:
    """A worker's exit in words: the signal that killed it, or its status and its error line."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker was killed by {name}; its unfinished cell goes to the next run"
    return f"the worker exited with status {code}" + (f": {error}" if error else "")
