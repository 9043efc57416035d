"""A solver run one evaluation at a time, its velocities handed in by a loop it does not own (a pipeline's).

A diffusers pipeline owns its denoising loop: it evaluates the transformer at the latents it holds, then asks the
scheduler for the next latents.  ``SteppedSolve`` turns a solverbench solver's ``solve`` (which calls the velocity
field itself) inside out: the solve runs in a thread of its own on a ``LoopBackbone``, whose every velocity is a
question (``Request``: the state and time it is asked at) that waits until the loop hands in the answer.  The solve
is ``solverbench.sampling.solve_plan``'s, unchanged: the field counts the NFE and the plan is checked, as in
``sample``.  Nothing runs in the thread while the loop runs: the two take turns.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Optional

import torch

from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.sampling import SampleResult, solve_plan
from solverbench.solver import Solver


@dataclass(frozen=True)
class Request:
    """The solve asks for the velocity at ``x`` and time ``t``."""

    x: torch.Tensor
    t: float


class Stopped(Exception):
    """Raised inside a solve's thread to end it (its loop started another run, or was given up)."""


class LoopBackbone:
    """What the solve's field sees as its backbone: the shape, labels, label features and identity of ``described``
    (a backbone that stands for the pipeline's transformer, where the solver needs one: a SideNet's checkpoint is
    checked against it), and velocities that come from the loop."""

    null_label = None  # the loop guides, never the field

    def __init__(self, sample_shape: tuple[int, ...], described: Optional[Any] = None):
        self.sample_shape = tuple(sample_shape)
        self.described = described
        self.num_classes = None if described is None else described.num_classes
        if described is not None and callable(getattr(described, "label_features", None)):
            self.label_features = described.label_features
            self.label_identity = tuple(getattr(described, "label_identity", ()))
        self.ask: Any = None  # set by the SteppedSolve that runs on it

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.ask(x, float(t.reshape(-1)[0]))

    def identity(self) -> dict[str, Any]:
        return self.described.identity() if self.described is not None else {"class": "pipeline loop"}


class SteppedSolve:
    """``solver`` along ``plan`` from ``x`` on ``backbone`` (with ``labels``), in a thread, one velocity at a time:
    ``request`` is what the solve asks now (a ``Request``), ``answer(v)`` hands in its velocity and returns the next
    request, or the ``SampleResult`` once the solve is done; an error in the solve is raised by ``answer``."""

    def __init__(self, solver: Solver, plan: Plan, backbone: LoopBackbone, labels: Optional[torch.Tensor],
                 x: torch.Tensor):
        self._questions: queue.Queue = queue.Queue(maxsize=1)
        self._answers: queue.Queue = queue.Queue(maxsize=1)
        backbone.ask = self._ask
        field = VelocityField(backbone, labels)
        self._thread = threading.Thread(target=self._run, args=(solver, field, x, plan), daemon=True,
                                        name=f"solverbench {solver.label()}")
        self._waiting = False  # the thread waits for an answer
        self._thread.start()
        self.request: Request | SampleResult = self._next()

    def answer(self, velocity: torch.Tensor) -> Request | SampleResult:
        """Hand in the velocity of the current request; the next request, or the result."""
        if not isinstance(self.request, Request):
            raise RuntimeError("the solve is done: it asks for no more velocities")
        self._answers.put(velocity)
        self.request = self._next()
        return self.request

    def stop(self) -> None:
        """End the solve where it waits for a velocity (nothing where it is done)."""
        if self._waiting:
            self._waiting = False
            self._answers.put(Stopped())
            self._thread.join()

    def _ask(self, x: torch.Tensor, t: float) -> torch.Tensor:  # in the solve's thread
        self._questions.put(Request(x, t))
        answer = self._answers.get()
        if isinstance(answer, Stopped):
            raise answer
        return answer

    def _run(self, solver: Solver, field: VelocityField, x: torch.Tensor, plan: Plan) -> None:  # the thread
        try:
            with torch.no_grad():
                self._questions.put(("done", solve_plan(solver, field, x, plan)))
        except Stopped:
            pass
        except BaseException as err:  # handed to the loop's thread, which raises it
            self._questions.put(("error", err))

    def _next(self) -> Request | SampleResult:
        message = self._questions.get()
        if isinstance(message, Request):
            self._waiting = True
            return message
        self._waiting = False
        self._thread.join()
        kind, value = message
        if kind == "error":
            raise value
        return value
