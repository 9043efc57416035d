"""Chain training of a SideNet beside a frozen backbone (docs/ba-solver.md, "Chain training").

One iteration: start a batch at ``(x, t)`` with ``v = backbone(x, t, y)``; K times draw a
signed step ``h``, simulate ``x' = x - h sum_i w_i v_hat_i`` with the SideNet at the
Gauss-Legendre nodes (no grad; ``chain_steps: exact``: solve the backbone's ODE to ``t - h``
instead, so the targets lie on the true trajectory), take the stop-gradient target ``v' = backbone(x', t - h, y)``,
add ``|| v + S(x, v, t, h, y) - v' ||^2`` to the loss and move on to ``(x', t - h, v')``.
The loss is the mean of the K terms; AdamW, grad-norm clipping, EMA of the weights.

``questions: solves`` replaces the chains by the questions of exact bi-anchor solves at NFE
``solve_nfe_min`` to ``solve_nfe_max`` (questions.py, ``question_loss``; with ``solve_bank``, drawn from
trajectories solved once before the loop, ``SolveBank``, whose solving counts in the training time),
``questions: both`` adds that loss to the chains'; the optimiser, EMA, label dropout and checkpoint stay
those of this loop.  Each mode is a ``LossSource`` (``Chains`` here, ``FreshSolves`` and ``SolveBank`` in
questions.py; ``loss_sources`` picks them), and an iteration's loss is the sum of theirs.

Data come from ``backbone.sample_data``; a backbone without data trains data-free (chains
start from noise carried to a random ``t`` by the backbone itself, ``chains.noise_start``),
which ``data: auto`` announces in one line on stderr.

Under torchrun (``torchrun --nproc_per_node=N -m solverbench train-sidenet ...``) the training
is data-parallel: DistributedDataParallel averages the gradients of N ranks, each running
its share of the batch's chains from its own stream; rank 0 writes the checkpoint.  (A
grid's run trains a missing SideNet on rank 0 alone, so its samples stay those of one
process.)

The ``recipe`` setting (config.py) picks the other settings' defaults and three behaviours: the
official recipe's EMA has no warm-up, its chains run the backbone under reduced-precision
autocast, and its steps may be 1e-5 where no room is left, with t' clamped to [0, 1]
(as the authors' BALoss does).
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch.nn.parallel import DistributedDataParallel
from solverbench.progress import progress_bar

from solverbench.distributed import World

from solvers.ba.bank_store import BankStore
from solvers.ba.checkpoint import CheckpointMismatchError, LoadedSideNet, load_checkpoint
from solvers.ba.chains import (backbone_autocast, backbone_velocity, chain_start, exact_step, resolve_data_mode,
                               signed_steps, simulate_step)
from solvers.ba.config import SideNetConfig
from solvers.ba.quadrature import gauss_legendre
from solvers.ba.questions import FreshSolves, LossSource, SolveBank
from solvers.ba.sidenet import SideNet, sidenet_for


@dataclass
class TrainingStats:
    iterations: int
    batch_size: int
    seconds: float
    data_mode: str
    parameters: int
    backbone_calls: int  # batched backbone calls (K + 1 per iteration, more in data-free mode; questions: solves,
    # an exact solve's and one per time it touches)
    final_loss: float  # mean loss over the last 5% of iterations
    loss: list[float] = field(default_factory=list)  # per iteration
    recipe: str = "project"  # the training recipe (SideNetConfig.recipe)
    processes: int = 1  # data-parallel ranks (torchrun), each running batch_size / processes chains
    backbone_autocast: Optional[str] = None  # the chains' backbone precision under autocast, None: full
    bank_batches_read: int = 0  # solve-bank batches read from --bank-dir instead of solved: their solving
    bank_seconds_read: float = 0.0  # (these seconds, when it was done) is not in ``seconds`` but is in a result
    # row's train_seconds; their calls are in ``backbone_calls``
    init_seconds: Optional[float] = 0.0  # init_from: the training time of the checkpoint started from (its row's
    # train_seconds; None where its file does not say), not in ``seconds`` but in a result row's train_seconds
    bank: Optional[str] = None  # the solve bank kept under --bank-dir (its folder's name), None: none kept
    bank_seconds: float = 0.0  # what solving all of that bank's batches took, read or solved here
    bank_seconds_counted: float = 0.0  # of bank_seconds_read, what init_seconds already holds: the checkpoint
    # started from used the same kept bank, so a chain of fine-tunings pays for its bank once

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EMA:
    """Exponential moving average of a model's weights.  With ``warmup`` (the project recipe)
    ``decay_k = min(decay, (1 + k) / (10 + k))``, so that a short run is not dominated by its
    initial weights; without (the official recipe) ``decay`` from the first update."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = True):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        self.updates += 1
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p, 1 - decay)


def chain_loss(sidenet: SideNet, backbone: Any, x: torch.Tensor, t: torch.Tensor, y, config: SideNetConfig,
               generator: torch.Generator, trained: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """Mean over the K steps of ``|| v + S(x, v, t, h, y) - v' ||^2`` (``S`` called through ``trained``,
    the DistributedDataParallel wrapper of ``sidenet`` where there is one)."""
    S = sidenet if trained is None else trained
    chains = config.chains
    rule = gauss_legendre(chains.sim_nodes)
    autocast = backbone_autocast(config, x.device)
    official = config.optimisation.recipe == "official"
    v = backbone_velocity(backbone, x, t, y, autocast)
    terms = []
    for _ in range(chains.chain_length):
        h = signed_steps(t, chains.step_rate, generator, min_room=1e-5 if official else 0.0,
                         inward_at_noise=chains.noise_starts > 0)
        x_next = exact_step(backbone, x, t, h, y) if chains.chain_steps == "exact" else \
            simulate_step(sidenet, x, v, t, h, y, rule)
        t_next = (t - h).clamp(0.0, 1.0) if official else t - h
        v_next = backbone_velocity(backbone, x_next, t_next, y, autocast)  # target, reused as the next anchor
        terms.append((v + S(x, v, t, h, y) - v_next).pow(2).mean())
        x, t, v = x_next, t_next, v_next
    return torch.stack(terms).mean()


class Chains:
    """Chain training's loss (``chain_loss``) on ``batch_size`` fresh chains per iteration: a ``LossSource``."""

    calls = 0  # before the first iteration

    def __init__(self, backbone: Any, config: SideNetConfig, mode: str, batch_size: int, device: str):
        self.backbone, self.config, self.mode, self.batch_size, self.device = backbone, config, mode, batch_size, device

    def loss(self, sidenet: SideNet, generator: torch.Generator,
             trained: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, int]:
        chains = self.config.chains
        x, t, y = chain_start(self.backbone, self.config, self.batch_size, generator, self.device)
        calls = chains.chain_length + 1 + (0 if self.mode == "data" else 2 * chains.noise_steps)
        return chain_loss(sidenet, self.backbone, x, t, y, self.config, generator, trained), calls


def loss_sources(backbone: Any, config: SideNetConfig, chain_mode: Optional[str], batch_size: int,
                 generator: torch.Generator, device: str, ranks: World, progress: bool,
                 bank_dir: Optional[str | Path] = None) -> list[LossSource]:
    """What each iteration's loss adds up, in the order they draw from ``generator``: the chains (``chain_mode``
    not None), then the solve questions, fresh or from a bank solved here (this rank's share of it; its batches
    kept under, and read back from, ``bank_dir`` where given)."""
    sources: list[LossSource] = []
    if chain_mode is not None:
        sources.append(Chains(backbone, config, chain_mode, batch_size, device))
    if config.uses_solve_bank:
        store = None if bank_dir is None else BankStore(bank_dir, backbone, config, generator, device)
        size = rank_share("solve_bank", config.solves.solve_bank, ranks)
        sources.append(SolveBank(backbone, config, size, generator, device, progress=progress, draws=batch_size,
                                 store=store))
    elif config.questions != "chains":
        sources.append(FreshSolves(backbone, config, batch_size, device))
    return sources


def train_sidenet(backbone: Any, config: SideNetConfig, *, device: str = "cpu", progress: bool = True,
                  ranks: World = World(), bank_dir: Optional[str | Path] = None, stop_after: Optional[int] = None
                  ) -> tuple[SideNet, SideNet, TrainingStats]:
    """Train a SideNet for ``backbone``; returns (raw, EMA, statistics).  Sample with the EMA.

    ``ranks``: the processes that train it together (``solverbench.distributed.world()`` under
    torchrun; every one of them must call this); one process by default.  ``bank_dir``: where a
    ``solve_bank``'s batches are kept and read back (bank_store.py); refused without a bank.
    ``stop_after``: run only the first N iterations of the configured ones (the same learning-rate
    schedule), to check that a recipe reproduces a checkpoint's recorded losses without its whole cost."""
    check_bank_dir(config, bank_dir)
    fit, chains = config.optimisation, config.chains
    if stop_after is not None and not 1 <= stop_after <= fit.iterations:
        raise ValueError(f"stop_after must be 1 to the {fit.iterations} iterations, got {stop_after}")
    chain_mode = None if config.questions == "solves" else resolve_data_mode(backbone, chains.data)
    data_mode = {"chains": chain_mode, "solves": "solves", "both": f"{chain_mode} and solves"}[config.questions]
    if chains.data == "auto" and chain_mode == "noise":
        print(f"SideNet training is data-free: data is auto and the backbone {type(backbone).__name__} has no "
              f"sample_data, so chains start from noise carried to their t by the backbone ({chains.noise_steps} "
              "Heun steps); set data: noise to choose this explicitly", file=sys.stderr)
    batch_size = rank_share("batch_size", fit.batch_size, ranks)
    check_solve_guidance(config, backbone)
    torch.manual_seed(fit.seed)  # the SideNet's initial weights (the same on every rank)
    sidenet = sidenet_for(backbone, config.network)
    initial = start_from_checkpoint(sidenet, backbone, config)  # before any solving or chain
    sidenet = sidenet.to(device).train()
    trained = DistributedDataParallel(sidenet) if ranks.sharded else None
    ema = EMA(sidenet, fit.ema_decay, warmup=fit.recipe == "project")
    optimizer = torch.optim.AdamW(sidenet.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    schedule = None
    if fit.lr_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / fit.iterations)))
    generator = torch.Generator().manual_seed(fit.seed + ranks.rank)  # rank 0's: one process's stream
    losses: list[float] = []
    began = time.perf_counter()
    sources = loss_sources(backbone, config, chain_mode, batch_size, generator, device, ranks,
                           progress=progress and ranks.main, bank_dir=bank_dir)
    bank = next((source for source in sources if isinstance(source, SolveBank)), None)
    backbone_calls = sum(source.calls for source in sources)  # a bank's solving, before the first iteration
    run = fit.iterations if stop_after is None else stop_after
    bar = progress_bar(range(run), desc="SideNet", unit="it", enabled=progress and ranks.main,
                       off_terminal="total", leave=False)
    for _ in bar:
        terms, calls = zip(*(source.loss(sidenet, generator, trained) for source in sources))
        loss = sum(terms[1:], terms[0])
        backbone_calls += sum(calls)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sidenet.parameters(), fit.grad_clip)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        ema.update(sidenet)
        losses.append(ranks.mean(loss.detach()).item())  # over every rank's chains
        bar.set_postfix(loss=f"{losses[-1]:.3e}")
    bar.close()
    tail = losses[-max(1, len(losses) // 20):]
    autocast = backbone_autocast(config, device)
    stats = TrainingStats(
        iterations=run, batch_size=fit.batch_size, seconds=time.perf_counter() - began,
        data_mode=data_mode, parameters=sidenet.parameter_count(),
        backbone_calls=backbone_calls,
        final_loss=sum(tail) / len(tail), loss=losses, recipe=fit.recipe, processes=ranks.size,
        backbone_autocast=None if autocast is None else str(autocast).removeprefix("torch."),
        bank_batches_read=0 if bank is None else bank.read,
        bank_seconds_read=0.0 if bank is None else bank.seconds_read,
        init_seconds=0.0 if initial is None else training_seconds(initial.stats),
        bank=None if bank is None else bank.key,
        bank_seconds=0.0 if bank is None else bank.seconds,
        bank_seconds_counted=bank_seconds_counted(bank, initial),
    )
    return sidenet.eval(), ema.model, stats


def check_solve_guidance(config: SideNetConfig, backbone: Any) -> None:
    """Guided solve questions need a backbone with a null label (ValueError)."""
    if config.questions != "chains" and config.solves.solve_guidance != 1 and backbone.null_label is None:
        raise ValueError(f"SideNet setting 'solve_guidance' is {config.solves.solve_guidance:g}, but the backbone "
                         f"{type(backbone).__name__} has no null label, so it cannot be guided; drop solve_guidance")


def start_from_checkpoint(sidenet: SideNet, backbone: Any, config: SideNetConfig) -> Optional[LoadedSideNet]:
    """Load ``init_from``'s EMA weights into ``sidenet`` (built from the settings), after checking the file against
    the backbone and that architecture; returns the checkpoint (None: no ``init_from``, the random initialisation
    stays)."""
    loaded = read_init_from(backbone, config, sidenet.spec)
    if loaded is not None:
        sidenet.load_state_dict(loaded.sidenet.state_dict())
    return loaded


def read_init_from(backbone: Any, config: SideNetConfig, wanted: dict[str, Any]) -> Optional[LoadedSideNet]:
    """``init_from``'s checkpoint, checked: a file (FileNotFoundError), readable, made for ``backbone`` and holding
    the SideNet of spec ``wanted`` (the one the settings build; CheckpointMismatchError); None without one."""
    if not config.optimisation.init_from:
        return None
    path = Path(config.optimisation.init_from)
    if not path.is_file():
        raise FileNotFoundError(f"SideNet setting 'init_from': no checkpoint at {path}")
    loaded = load_checkpoint(path, backbone)
    if loaded.sidenet.spec != wanted:
        differ = sorted(k for k in set(wanted) | set(loaded.sidenet.spec)
                        if wanted.get(k) != loaded.sidenet.spec.get(k))
        raise CheckpointMismatchError(
            f"SideNet setting 'init_from': {path} holds another SideNet than these settings build, in "
            + "; ".join(f"{k}: {loaded.sidenet.spec.get(k)!r} != {wanted.get(k)!r}" for k in differ)
            + " (checkpoint != settings); give the checkpoint's architecture settings")
    return loaded


def training_seconds(stats: dict[str, Any]) -> Optional[float]:
    """What a checkpoint's training cost in all, as its result rows report it: its own seconds, the solving of
    the bank batches it read from disk (less what the checkpoint it started from already paid for them) and the
    training of that checkpoint (None: not recorded)."""
    seconds, before = stats.get("seconds"), stats.get("init_seconds", 0.0)
    if seconds is None or before is None:
        return None
    return seconds + stats.get("bank_seconds_read", 0.0) - stats.get("bank_seconds_counted", 0.0) + before


def bank_seconds_counted(bank: Optional[SolveBank], initial: Optional[LoadedSideNet]) -> float:
    """What of ``bank``'s batches read from disk the checkpoint started from already paid for: where it used the
    same kept bank, the solving of the batches both used (banks of one stream share their first batches)."""
    if bank is None or bank.key is None or initial is None or initial.stats.get("bank") != bank.key:
        return 0.0
    return min(bank.seconds_read, float(initial.stats.get("bank_seconds", 0.0)))


def check_bank_dir(config: SideNetConfig, bank_dir: Optional[str | Path]) -> None:
    """A bank directory needs a solve bank to keep."""
    if bank_dir is not None and not config.uses_solve_bank:
        raise ValueError(f"the bank directory {bank_dir} is for a solve bank (questions: solves or both, with "
                         "solve_bank), and these settings have none; drop it or set solve_bank")


def rank_share(name: str, total: int, ranks: World) -> int:
    """This rank's share of ``total`` (the batch's chains, the bank's trajectories) split over the ranks
    (refused where it does not divide)."""
    if total % ranks.size:
        raise ValueError(f"SideNet setting {name!r} {total} does not split over {ranks.size} processes; "
                         f"give a multiple of {ranks.size}")
    return total // ranks.size
