"""Solve-question training (``questions: solves``): the SideNet regressed on the very questions a
bi-anchor solve asks, answered on the backbone's exact trajectories (distillation targets from the
reference solver).

Chain training (training.py, ``chain_loss``) asks the SideNet about random ``(t, h)`` along chains it
simulates itself: a chain rarely starts at t = 1 and its steps are 0.02 on average, while a
five-interval solve starts every trajectory at t = 1 with offsets up to 0.2.  Here one iteration

1. draws noise at t = 1 and labels (dropped to the null label at ``label_dropout``);
2. solves the trajectories exactly (Dormand-Prince, float64, rtol = atol = ``EXACT_TOLERANCE``)
   through every time a solve on the uniform grid at NFE ``solve_nfe_min`` to ``solve_nfe_max``
   touches (``solve_times``);
3. gives each trajectory an NFE drawn uniformly from that range and ``questions_per_solve``
   questions ``(t, h)`` drawn uniformly from that solve's, and adds ``|| v + S(x, v, t, h, y) - v' ||^2``
   with ``x = x(t)``, ``v = v(x(t), t)`` and ``v' = v(x(t - h), t - h)``; the loss is their mean (with
   ``first_interval_weight: w``, a mean weighted w for the questions of the solve's first interval, the
   forward probe from pure noise and its refinement, and 1 for the others; ``last_interval_weight: w`` likewise
   for the questions of its last interval, the forward probe whose predictor the solve returns uncorrected).

With ``solve_shift: s`` the solves' grids are the uniform ones time-shifted by s (``solve_grid``), the grids
``schedule: {name: shifted, shift: s}`` samples on: a SideNet answers best the questions of the grid it was
trained on.

The questions (``bi_anchor_questions``) are those of the bi-anchor scheme with the default rule
(Lobatto, ``a`` ~ 0.276; schemes.py): per interval ``[t, t - H]`` the forward probe from ``t`` at
``a H, (1 - a) H, H`` and, but on the last interval, the backward refinement from ``t - H`` at
``-a H``.  A sampler with another rule or time grid asks other questions, which this training does
not see; nor does it see an inverting solve's (in path time the uniform grid from 0 to 1 with
negative offsets, node_velocities.py; ``solve_grid_questions(..., inverting=True)``): fitted to
them as well, a gmm64 SideNet kept none of its NFE-5 gain (0.057 at NFE 5, against 0.033 without them).
``questions: both`` adds the chain loss, whose signed steps go both ways.

``solve_loss: endpoints`` (interval_loss.py) draws ``questions_per_solve`` intervals of the solve instead and fits,
per interval, the error of the state it builds from its answers: their errors summed with the rule's weights.

``solve_bank: N`` solves N trajectories once, before training, with the backbone's velocities at every
time of the table, and draws each iteration's trajectories from them (``SolveBank``).
``solve_guidance: w`` solves the trajectories under classifier-free guidance at scale w (over all of
[0, 1]) with their labels kept, and asks every question of the conditional and the unconditional
velocity, as a guided bi-anchor solve corrects both before it guides.  ``solve_target: guided`` fits what that solve
then uses, the guided answer ``u + w (c - u)``, to the guided exact velocity: the branches' errors, weighed as the
guidance weighs them (w on the conditional's, 1 - w on the unconditional's), may cancel, and are not fitted apart.
With ``solve_loss: endpoints`` it fits the state an interval builds from the guided answers.
"""
from __future__ import annotations

import copy
import functools
import math
import time
from typing import Any, NamedTuple, Optional, Protocol, Sequence

import torch
from solverbench.progress import progress_bar

from solverbench.field import VelocityField
from solverbench.guidance import Guidance, cfg_combine
from solverbench.memory import available_bytes
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.timegrid import shifted
from solvers.ba.bank_store import BankStore, SolvedBatch
from solvers.ba.chains import EXACT_TOLERANCE, backbone_velocity, draw_labels, drop_labels
from solvers.ba.config import SideNetConfig
from solvers.ba.interval_loss import DrawnIntervals, SolveIntervals, endpoint_loss, on_device
from solvers.ba.quadrature import QuadratureRule, bi_anchor_rule
from solvers.ba.schemes import probe_offsets, refinement_offsets
from solvers.ba.sidenet import SideNet

Question = tuple[float, float]  # (anchor time t, signed offset h): asks for the velocity at t - h


def bi_anchor_questions(rule: QuadratureRule, grid: Sequence[float]) -> list[Question]:
    """The node questions of a bi-anchor solve over ``grid`` (decreasing: sampling; increasing: an
    inverting solve in path time): per interval its forward probe, then its backward refinement but on
    the last interval."""
    questions: list[Question] = []
    last = len(grid) - 2
    for k, (t, s) in enumerate(zip(grid, grid[1:])):
        H = t - s
        questions += [(t, h) for h in probe_offsets(rule, H)]
        if k < last:
            questions += [(s, h) for h in refinement_offsets(rule, H)]
    return questions


def solve_grid(nfe: int, shift: float = 1.0) -> list[float]:
    """The ``nfe``-interval grid from t = 1 to 0 the solves are asked on: uniform, or at ``shift`` != 1 the
    uniform grid time-shifted as ``schedule: {name: shifted, shift: s}`` samples (timegrid.py)."""
    if shift == 1:
        return [1 - k / nfe for k in range(nfe + 1)]
    return shifted(nfe, shift).tolist()


def solve_grid_questions(nfe: int, rule: Optional[QuadratureRule] = None, inverting: bool = False,
                         shift: float = 1.0) -> list[Question]:
    """The questions of an ``nfe``-interval bi-anchor solve on ``solve_grid(nfe, shift)`` from t = 1 to 0 (the
    uniform grid at ``shift`` 1; ``inverting``: of the solve from 0 to 1, in path time)."""
    grid = solve_grid(nfe, shift)
    return bi_anchor_questions(rule or bi_anchor_rule("lobatto", 2, None), grid[::-1] if inverting else grid)


def solve_times(questions: Sequence[Question]) -> list[float]:
    """Every time the questions start from or ask about, decreasing from 1 (rounded to 12 digits, so that
    a node time reached two ways is one time)."""
    return sorted({round(t, 12) for q in questions for t in (q[0], q[0] - q[1])}, reverse=True)


class DrawnQuestions(NamedTuple):
    """Drawn questions, flat: the trajectory, the anchor's and the answer's time index, ``t``, ``h``, and whether each
    is a question of its solve's first interval and whether of its last."""

    trajectory: torch.Tensor
    anchor: torch.Tensor
    answer: torch.Tensor
    t: torch.Tensor
    h: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor



class SolveQuestions:
    """The questions of the uniform-grid solves at NFE ``low`` to ``high`` (with quadrature ``rule``; default:
    the bi-anchor scheme's; ``shift`` != 1: of the time-shifted grids) as index tables into their common times."""

    def __init__(self, low: int, high: int, rule: Optional[QuadratureRule] = None, shift: float = 1.0):
        per_nfe = [solve_grid_questions(nfe, rule, shift=shift) for nfe in range(low, high + 1)]
        self.times = solve_times([q for questions in per_nfe for q in questions])
        index = {t: i for i, t in enumerate(self.times)}
        self.count = torch.tensor([len(questions) for questions in per_nfe])
        width = int(self.count.max())
        # per NFE, per question (padded to the longest list): anchor time's index, answer time's index, t, h
        self.anchor = torch.zeros(len(per_nfe), width, dtype=torch.long)
        self.answer = torch.zeros(len(per_nfe), width, dtype=torch.long)
        self.t = torch.zeros(len(per_nfe), width)
        self.h = torch.zeros(len(per_nfe), width)
        self.first = torch.zeros(len(per_nfe), width, dtype=torch.bool)  # asked within the first interval
        self.last = torch.zeros(len(per_nfe), width, dtype=torch.bool)  # asked within the last interval
        for k, (nfe, questions) in enumerate(zip(range(low, high + 1), per_nfe)):
            grid = solve_grid(nfe, shift)  # the first interval ends at grid[1], the last starts at grid[-2]
            for j, (t, h) in enumerate(questions):
                self.anchor[k, j], self.answer[k, j] = index[round(t, 12)], index[round(t - h, 12)]
                self.t[k, j], self.h[k, j] = t, h
                self.first[k, j] = min(t, t - h) >= grid[1] - 1e-12
                self.last[k, j] = max(t, t - h) <= grid[-2] + 1e-12

    def draw(self, n: int, per_trajectory: int, generator: torch.Generator) -> DrawnQuestions:
        """``per_trajectory`` questions for each of ``n`` trajectories, from the solve of an NFE drawn per
        trajectory, each question of it equally likely: (trajectory, anchor index, answer index, t, h, whether it is
        a first-interval question, whether a last-interval one), flat."""
        nfe = torch.randint(len(self.count), (n, 1), generator=generator)
        pick = (torch.rand(n, per_trajectory, generator=generator) * self.count[nfe]).long()
        trajectory = torch.arange(n).repeat_interleave(per_trajectory)
        nfe, pick = nfe.expand(-1, per_trajectory).flatten(), pick.flatten()
        return DrawnQuestions(trajectory, self.anchor[nfe, pick], self.answer[nfe, pick], self.t[nfe, pick],
                              self.h[nfe, pick], self.first[nfe, pick], self.last[nfe, pick])


@functools.lru_cache(maxsize=8)
def question_table(low: int, high: int, shift: float = 1.0) -> SolveQuestions:
    """``SolveQuestions(low, high, shift=shift)``, built once per NFE range and grid (every iteration draws from
    it)."""
    return SolveQuestions(low, high, shift=shift)


def config_table(config: SideNetConfig) -> SolveQuestions:
    """The question table of ``config``'s solves."""
    return question_table(config.solves.solve_nfe_min, config.solves.solve_nfe_max, config.solves.solve_shift)


@functools.lru_cache(maxsize=8)
def interval_table(low: int, high: int, shift: float = 1.0) -> SolveIntervals:
    """The intervals of the solves of ``question_table(low, high, shift)``, indexed into its times."""
    grids = [solve_grid(nfe, shift) for nfe in range(low, high + 1)]
    return SolveIntervals(grids, question_table(low, high, shift).times, bi_anchor_rule("lobatto", 2, None))


def draw(config: SideNetConfig, n: int, per_trajectory: int, generator: torch.Generator
         ) -> DrawnQuestions | DrawnIntervals:
    """What ``n`` trajectories are asked, ``per_trajectory`` each: questions (``solve_loss: nodes``) or intervals
    (``endpoints``, interval_loss.py) of their solves."""
    solves = config.solves
    low, high, shift = solves.solve_nfe_min, solves.solve_nfe_max, solves.solve_shift
    table = interval_table(low, high, shift) if solves.solve_loss == "endpoints" else question_table(low, high, shift)
    return table.draw(n, per_trajectory, generator)


def fit(S: Any, x: torch.Tensor, drawn: DrawnQuestions | DrawnIntervals,
        answers: Sequence[tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]],
        config: SideNetConfig) -> torch.Tensor:
    """The loss of the drawn questions (``fit_loss``) or intervals (``endpoint_loss``), weighted as ``config`` says;
    ``x``: the anchors' states, ``answers``: per branch ``(y, v, v')`` at the drawn rows."""
    weights = question_weights(drawn.first, drawn.last, config)
    guidance = config.solves.solve_guidance if config.solves.solve_target == "guided" else None
    if isinstance(drawn, DrawnIntervals):
        return endpoint_loss(S, x, drawn, answers, weights, guidance)
    return fit_loss(S, x, drawn.t, drawn.h, answers, weights, guidance)


def exact_trajectories(backbone: Any, config: SideNetConfig, n: int, generator: torch.Generator, device: str,
                       times: Sequence[float]) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """``n`` trajectories from noise at t = 1, solved exactly through ``times`` (float64 Dormand-Prince at
    ``EXACT_TOLERANCE``) under ``solve_guidance``: (states ``[len(times), n, ...]``, labels, the solve's NFE).
    Labels are uniform over the classes; unguided, dropped to the null label at ``label_dropout``; guided, kept
    (the questions are then asked of both branches, ``branch_labels``)."""
    noise = torch.randn(n, *backbone.sample_shape, generator=generator).to(device)
    labels = draw_labels(backbone, n, generator, device)
    if config.solves.solve_guidance == 1:
        labels = drop_labels(labels, backbone.null_label, config.optimisation.label_dropout, generator)
    field = VelocityField(backbone, labels, Guidance(scale=config.solves.solve_guidance))
    with torch.no_grad():
        states = reference_trajectory(field, noise, times, Tolerance(EXACT_TOLERANCE, EXACT_TOLERANCE))
    return states.to(noise.dtype), labels, field.nfe


def branch_labels(backbone: Any, labels: Optional[torch.Tensor], config: SideNetConfig) -> list[Optional[torch.Tensor]]:
    """The labels each question is asked with: the trajectories' own; under ``solve_guidance`` also the null
    label, as a guided bi-anchor solve corrects the conditional and the unconditional velocity alike."""
    if config.solves.branches == 1:
        return [labels]
    return [labels, torch.full_like(labels, backbone.null_label)]


def fit_loss(S: Any, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
             answers: Sequence[tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]],
             weight: Optional[torch.Tensor] = None, guidance: Optional[float] = None) -> torch.Tensor:
    """``|| v + S(x, v, t, h, y) - v' ||^2`` averaged over the questions (a mean weighted by ``weight``, one per
    question, where given) and then over the branches; ``answers``: per branch ``(y, v, v')``.  With ``guidance`` w
    (two branches, conditional first): the error of the guided answer ``u + w (c - u)`` against the guided exact
    velocity instead, what a guided solve uses (``solve_target: guided``)."""
    def mean(error: torch.Tensor) -> torch.Tensor:
        if weight is None:
            return error.mean()
        return (error.flatten(1).mean(1) * weight).sum() / weight.sum()
    errors = [v + S(x, v, t, h, y) - target for y, v, target in answers]
    if guidance is not None:
        return mean(cfg_combine(*errors, guidance).pow(2))
    return torch.stack([mean(error.pow(2)) for error in errors]).mean()


def question_weights(first: torch.Tensor, last: torch.Tensor, config: SideNetConfig) -> Optional[torch.Tensor]:
    """Each question's loss weight: ``first_interval_weight`` in a solve's first interval, ``last_interval_weight``
    in its last, their product where one interval is both, 1 elsewhere (None: all 1, the plain mean)."""
    first_weight, last_weight = config.solves.first_interval_weight, config.solves.last_interval_weight
    if first_weight == 1 and last_weight == 1:
        return None
    return torch.where(first, first_weight, 1.0) * torch.where(last, last_weight, 1.0)


def question_loss(sidenet: SideNet, backbone: Any, config: SideNetConfig, n: int, generator: torch.Generator,
                  device: str, trained: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, int]:
    """The loss of the module's docstring on ``n`` fresh trajectories and ``questions_per_solve`` questions each
    (``S`` called through ``trained``, the DistributedDataParallel wrapper of ``sidenet`` where there is one); and
    the batched backbone calls it took (the exact solve's, and per branch one for the anchors and one for the
    answers)."""
    states, labels, nfe = exact_trajectories(backbone, config, n, generator, device, config_table(config).times)
    drawn = on_device(draw(config, n, config.solves.questions_per_solve, generator), device)
    x, x_answer = states[drawn.anchor, drawn.trajectory], states[drawn.answer, drawn.trajectory]
    answers = []
    for y in branch_labels(backbone, labels, config):
        y = None if y is None else y[drawn.trajectory]
        answers.append((y, backbone_velocity(backbone, x, drawn.t, y),
                        backbone_velocity(backbone, x_answer, drawn.t - drawn.h, y)))
    return fit(sidenet if trained is None else trained, x, drawn, answers, config), nfe + 2 * len(answers)


class LossSource(Protocol):
    """What one training iteration's loss comes from: chains (training.py), fresh solves or a bank."""

    calls: int  # batched backbone calls spent before the first iteration

    def loss(self, sidenet: SideNet, generator: torch.Generator,
             trained: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, int]:
        """One iteration's loss (``S`` called through ``trained``, the DistributedDataParallel wrapper of ``sidenet``
        where there is one) and the batched backbone calls it took."""


class FreshSolves:
    """``question_loss`` on ``batch_size`` fresh exact trajectories per iteration: a ``LossSource``."""

    calls = 0

    def __init__(self, backbone: Any, config: SideNetConfig, batch_size: int, device: str):
        self.backbone, self.config, self.batch_size, self.device = backbone, config, batch_size, device

    def loss(self, sidenet: SideNet, generator: torch.Generator,
             trained: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, int]:
        return question_loss(sidenet, self.backbone, self.config, self.batch_size, generator, self.device, trained)


class SolveBank:
    """``solve_bank`` trajectories solved exactly once, before training, with the backbone's velocities (per
    branch) at every time of the question table; each iteration draws its trajectories from the bank (with
    replacement) and costs no backbone call.  Where the exact solve is what costs (a neural backbone solved in
    float64 at rtol 1e-6: hundreds of evaluations of each batch), this trades fresh trajectories for
    iterations.  A ``LossSource`` drawing ``draws`` trajectories an iteration (default: ``batch_size``)."""

    def __init__(self, backbone: Any, config: SideNetConfig, size: int, generator: torch.Generator, device: str,
                 progress: bool = False, draws: Optional[int] = None, store: Optional[BankStore] = None):
        self.table = config_table(config)
        self.size, self.calls, self.config = size, 0, config
        self.draws = config.optimisation.batch_size if draws is None else draws
        self.read, self.seconds_read = 0, 0.0  # batches read from ``store``, and what solving them took
        self.seconds = 0.0  # what solving every batch took (read or solved here)
        self.key = None if store is None else store.folder.name  # the kept bank's name, None: not kept
        check_bank_fits(backbone, config, size, len(self.table.times), device)
        chunks = range(0, size, config.optimisation.batch_size)
        for index, start in enumerate(progress_bar(chunks, desc="solve bank", unit="batch", enabled=progress,
                                                   off_terminal="total", leave=False)):
            rows = min(config.optimisation.batch_size, size - start)
            batch = None if store is None else store.read(index, rows, generator)
            if batch is None:
                batch = solve_batch(backbone, config, self.table.times, rows, generator, device)
                if store is not None:
                    store.write(index, batch, generator)
            else:
                self.read, self.seconds_read = self.read + 1, self.seconds_read + batch.seconds
            self.seconds += batch.seconds
            if index == 0:  # the whole bank at once, filled batch by batch (no second copy to concatenate)
                self.states = batch.states.new_empty(batch.states.shape[0], size, *batch.states.shape[2:])
                self.velocities = batch.velocities.new_empty(*batch.velocities.shape[:2], size,
                                                             *batch.velocities.shape[3:])
                labels = None if batch.labels is None else batch.labels.new_empty(size)
            self.states[:, start:start + rows] = batch.states  # [time, trajectory, ...]
            self.velocities[:, :, start:start + rows] = batch.velocities  # [branch, time, trajectory, ...]
            if labels is not None:
                labels[start:start + rows] = batch.labels
            self.calls += batch.calls
        self.branches = branch_labels(backbone, labels, config)

    def subset(self, rows: slice) -> "SolveBank":
        """A view of the bank holding only its trajectories ``rows`` (held-out halves, say); nothing is copied."""
        view = copy.copy(self)
        view.states, view.velocities = self.states[:, rows], self.velocities[:, :, rows]
        view.branches = [None if y is None else y[rows] for y in self.branches]
        view.size = view.states.shape[1]
        return view

    def loss(self, sidenet: SideNet, generator: torch.Generator,
             trained: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, int]:
        loss = self.draw_loss(sidenet if trained is None else trained, self.draws,
                              self.config.solves.questions_per_solve, generator)
        return loss, 0

    def draw_loss(self, S: Any, n: int, per_trajectory: int, generator: torch.Generator) -> torch.Tensor:
        """The loss of ``n`` trajectories drawn from the bank, ``per_trajectory`` questions each."""
        pick = torch.randint(self.size, (n,), generator=generator)
        drawn = on_device(draw(self.config, n, per_trajectory, generator), self.states.device)
        j = pick.to(self.states.device)[drawn.trajectory]
        answers = [(None if y is None else y[j], v[drawn.anchor, j], v[drawn.answer, j])
                   for y, v in zip(self.branches, self.velocities)]
        return fit(S, self.states[drawn.anchor, j], drawn, answers, self.config)


def solve_batch(backbone: Any, config: SideNetConfig, times: Sequence[float], rows: int, generator: torch.Generator,
                device: str) -> SolvedBatch:
    """``rows`` exact trajectories through ``times`` and the backbone's velocities on them, per branch."""
    begin = time.perf_counter()
    x, y, nfe = exact_trajectories(backbone, config, rows, generator, device, times)
    branches = branch_labels(backbone, y, config)
    velocities = torch.stack([torch.stack([
        backbone_velocity(backbone, x_k, torch.full((rows,), t_k, device=device), b) for x_k, t_k in zip(x, times)])
        for b in branches])
    return SolvedBatch(x, y, velocities, nfe + len(branches) * len(times), time.perf_counter() - begin)


def check_bank_fits(backbone: Any, config: SideNetConfig, size: int, times: int, device: str) -> None:
    """Refuse, before any solving, a bank whose states and velocities (per branch) at every time of its table
    would not fit in the memory ``device`` has free."""
    branches = config.solves.branches
    needed = size * times * (1 + branches) * math.prod(backbone.sample_shape) * torch.get_default_dtype().itemsize
    free = available_bytes(device)
    if free is not None and needed > free:
        raise ValueError(f"SideNet setting 'solve_bank' {size} needs {in_units(needed)} on {device} (states and "
                         f"{branches} velocit{'y' if branches == 1 else 'ies'} at {times} times, NFE "
                         f"{config.solves.solve_nfe_min} to {config.solves.solve_nfe_max}) and {in_units(free)} is "
                         "free; give a smaller solve_bank or a narrower NFE range")


def in_units(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
