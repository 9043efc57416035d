"""``solverbench.sample``: one call from (backbone, solver, noise) to samples and their cost."""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from solverbench.adaptive import decided_plan
from solverbench.backbone import resolve_backbone, weights_dtypes
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.plan import Plan, make_plan
from solverbench.solver import Solver, get_solver


@dataclass
class SampleResult:
    samples: torch.Tensor
    nfe: int  # backbone evaluations per sample, as counted by the velocity field
    wall_time: float  # seconds, the whole solve
    counters: dict[str, float]  # what the solver counted besides NFE in this call (Solver.counters)
    plan: Plan  # the time grid and the evaluations of each interval


class NFEMismatchError(RuntimeError):
    """A solver spent a different number of evaluations than its budget."""


def sample(
    backbone: Any,
    solver: str | Solver,
    noise: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    nfe: Optional[int] = None,
    time_grid: Any = None,
    schedule: str | dict = "uniform",
    cfg_scale: float = 1.0,
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    guidance: Optional[Guidance] = None,
    partial: bool = False,
    t_start: Optional[float] = None,
) -> SampleResult:
    """Integrate the flow from noise (t = 1) to data (t = 0).

    Give an NFE budget ``nfe`` (a whole number >= 1; the solver builds a ``schedule`` grid
    with as many intervals as the budget allows), an explicit decreasing ``time_grid`` (a
    tensor or list) from 1 to 0, or both (a grid made for the budget: it must have the
    intervals the budget makes); adaptive solvers need neither.  The measured NFE is checked
    against the budget.

    ``noise`` is a tensor of shape ``(N, *backbone.sample_shape)`` of finite numbers (NaN or
    infinite noise is refused); ``labels`` (a tensor or list of N integers in ``[0, num_classes)``,
    or the backbone's null label) only for a class-conditional backbone; guidance is
    ``cfg_scale`` (a number >= 0) on ``cfg_interval``, or a ``Guidance`` given whole as
    ``guidance`` (its ``channels``, where given, at most the backbone's channels,
    ``sample_shape[0]``).

    Dtypes: the solve runs in the noise's dtype, and the samples come back in it.  The noise
    must be floating point and, for a backbone with a network, of its weights' dtype (float32
    noise for a float32 network; float16 noise there is refused, not cast: run the network
    under autocast, or cast the backbone, for reduced precision).  A backbone without a
    network (``gmm``, computed in float64 whatever it is given) takes any floating dtype:
    float64 noise gives a float64 solve, and float16 noise a float16 one, its state rounded to
    float16 at every step.  A solver that runs the backbone in a dtype of its own (the
    ``reference`` solve: float64) takes any floating noise.

    ``partial=True`` lets an explicit ``time_grid`` start below 1 or end above 0, to
    integrate only part of the way: ``noise`` is then the state at ``time_grid[0]`` and
    the result the state at ``time_grid[-1]`` (not a sample unless it ends at 0).  Without
    it such a grid is refused.

    ``t_start`` (a time in (0, 1]) starts at that time instead of at noise, with a budget
    (``start_plan``): ``noise`` is then the state at ``t_start`` (e.g. data inverted to it
    by ``invert(..., t_end=t_start)``), the whole budget is spent on ``[t_start, 0]``, and
    ``t_start=1`` is the ordinary solve.
    """
    backbone, solver, labels, guidance = checked_call(backbone, solver, noise, labels, cfg_scale, cfg_interval,
                                                      guidance, "noise")
    plan = start_plan(solver, nfe=nfe, schedule=schedule, time_grid=time_grid, partial=partial, start=t_start,
                      name="t_start")
    return solve_plan(solver, VelocityField(backbone, labels, guidance), noise, plan)


def start_plan(solver: Solver, *, nfe: Any, schedule: str | dict, time_grid: Any, partial: bool,
               start: Any, name: str) -> Plan:
    """The plan of a solve from ``start`` (a time in (0, 1], named ``name`` in the messages) to data: the grid
    the budget makes on ``schedule`` from 1 to 0, scaled by ``start`` onto ``[start, 0]`` (``t -> start * t``,
    so every interval keeps its share of the span and spends what it spends on the whole span).  Without
    ``start``, ``make_plan``'s plan."""
    if start is None:
        return make_plan(solver, nfe=nfe, schedule=schedule, times=time_grid, partial=partial)
    start = check_start_time(start, name)
    if time_grid is not None:
        raise ValueError(f"give {name} or an explicit time_grid, not both: {name} places the budget's grid on "
                         "the part of the path it names, a partial time_grid names its own times")
    if partial:
        raise ValueError(f"partial=True applies to an explicit time_grid; {name} needs none")
    whole = make_plan(solver, nfe=nfe, schedule=schedule)
    if whole.times is None:
        raise ValueError(f"{name} needs a schedule whose grid is made before the solve, to place it on [{name}, 0]; "
                         f"schedule {schedule!r} decides its grid as it solves the whole span")
    return Plan(whole.times * start, whole.stages, whole.adaptive)


def check_start_time(value: Any, name: str) -> float:
    """A time strictly above data and at most noise: a real number (or a one-number real tensor) in (0, 1]."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype.is_floating_point:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a time in (0, 1] (a number), got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1] (between data t=0, excluded, and noise t=1), got {value:g}")
    return value


def checked_call(backbone: Any, solver: str | Solver, x: Any, labels: Any, cfg_scale: float,
                 cfg_interval: tuple[float, float], guidance: Optional[Guidance], what: str
                 ) -> tuple[Any, Solver, Optional[torch.Tensor], Guidance]:
    """The backbone, solver, labels and guidance of a ``sample`` or ``invert`` call, checked (``x`` is the
    start state, named ``what`` in the messages)."""
    backbone = resolve_backbone(backbone)
    solver = get_solver(solver)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (N, {', '.join(map(str, backbone.sample_shape))}), "
                        f"got {type(x).__name__}")
    if tuple(x.shape[1:]) != tuple(backbone.sample_shape):
        raise ValueError(
            f"{what} has sample shape {tuple(x.shape[1:])}, the backbone expects {tuple(backbone.sample_shape)}"
        )
    check_dtype(x, backbone, solver, what)
    check_finite(x, what)
    labels = check_labels(labels, backbone, len(x))
    if guidance is None:
        guidance = Guidance(cfg_scale, cfg_interval)
    elif (cfg_scale, tuple(cfg_interval)) != (1.0, (0.0, 1.0)):
        raise ValueError("give guidance either as cfg_scale/cfg_interval or as guidance=Guidance(...), not both")
    guidance.check_fits(backbone.sample_shape)
    return backbone, solver, labels, guidance


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_dtype(x: torch.Tensor, backbone: Any, solver: Solver, what: str) -> None:
    """``x`` floating point, and of the backbone's weights' dtype where it has one, unless the solver runs the
    backbone in a dtype of its own (``Solver.backbone_dtype``: the reference solve's float64) (``sample``'s rule)."""
    weights = weights_dtypes(backbone) if solver.backbone_dtype is None else set()
    if not x.is_floating_point():
        wanted = dtype_name(next(iter(weights))) if len(weights) == 1 else "float32"
        raise TypeError(f"{what} has dtype {dtype_name(x.dtype)}; give floating-point {what} ({wanted}, e.g. "
                        f"{what}.to(torch.{wanted}))")
    if len(weights) == 1 and x.dtype not in weights:
        wanted = dtype_name(next(iter(weights)))
        raise TypeError(f"{what} has dtype {dtype_name(x.dtype)}, but the backbone's weights are {wanted}: give "
                        f"{wanted} {what} ({what}.to(torch.{wanted})), or cast the backbone (backbone.to(torch."
                        f"{dtype_name(x.dtype)}))")


def check_finite(x: torch.Tensor, what: str) -> None:
    """Refuse a start state with NaN or infinite entries, counting the samples that hold any."""
    bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(dim=1).sum()) if x.numel() else 0
    if bad:
        raise ValueError(f"{what}: {bad} of {len(x)} samples are not finite (they hold NaN or inf); give finite "
                         f"{what}")


def solve_plan(solver: Solver, field: VelocityField, x: torch.Tensor, plan: Plan) -> SampleResult:
    """``solver`` along ``plan`` on ``field`` from ``x``, timed, its NFE checked against the plan's budget.

    An adaptive schedule's plan (``plan.pilot``) is decided first, on its pilot (solverbench.adaptive); the
    result's plan is the grid walked, and its counters add ``pilot_nfe`` and ``pilot_seconds`` (per pilot
    trajectory; the pilot is not in ``wall_time``)."""
    pilot = {}
    if plan.pilot is not None:
        plan, decided = decided_plan(solver, field, x, plan)
        pilot = {"pilot_nfe": decided.pilot_nfe, "pilot_seconds": decided.seconds}
    before = solver.counters()
    start = time.perf_counter()
    out = solver.solve(field, x, plan)
    if out.is_cuda:
        torch.cuda.synchronize(out.device)
    wall = time.perf_counter() - start

    if not plan.adaptive and field.nfe != plan.nfe:
        raise NFEMismatchError(f"{solver.label()} spent {field.nfe} NFE for a budget of {plan.nfe}")
    counters = {name: value - before.get(name, 0) for name, value in solver.counters().items()} | pilot
    return SampleResult(samples=out, nfe=field.nfe, wall_time=wall, counters=counters, plan=plan)


def check_labels(labels: Any, backbone: Any, n: int) -> Optional[torch.Tensor]:
    """Class labels as a tensor of shape ``(n,)`` of integer classes the backbone knows.

    A list (or other sequence) is turned into a tensor, as time grids are; floats, other
    shapes, labels outside ``[0, num_classes)`` (the null label excepted) and labels for an
    unconditional backbone are refused.
    """
    if labels is None:
        return None
    name = type(backbone).__name__
    num_classes = getattr(backbone, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"{name} is unconditional (num_classes is None): give no labels")
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"labels must be a tensor or list of {n} integer class indices, got "
                            f"{type(labels).__name__}") from None
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        example = f" (e.g. {labels.flatten()[0].item():g})" if labels.numel() and not labels.is_complex() else ""
        raise TypeError(f"labels must be integer class indices, got {str(labels.dtype).removeprefix('torch.')} "
                        f"labels{example}; convert whole-number labels with .long()")
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,) = ({n},), one class index per sample, got shape "
                         f"{tuple(labels.shape)}" + ("; flatten them (labels.flatten())"
                                                     if labels.numel() == n else ""))
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} noise samples")
    null = getattr(backbone, "null_label", None)
    bad = (labels < 0) | (labels >= num_classes)
    if null is not None:
        bad &= labels != null
    if bad.any():
        allowed = f"[0, {num_classes})" + (f" or the null label {null}" if null is not None else "")
        raise ValueError(f"labels must lie in {allowed} for {name}, got {labels[bad][0].item()}")
    return labels
