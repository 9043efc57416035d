"""How far a SideNet of the shipped size can get at NFE 5 on gmm64 when nothing but its own fit limits it.

    OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_ceiling [--iterations 1200 [4800 ...]] [--width 128]
        [--results results] [--out research/sidenet/findings/sidenet_ceiling.md]

Chain training asks the SideNet about random ``(t, h)`` along chains it simulates itself.  Here the
same network (the shipped gmm64 architecture, trained with the project recipe's optimiser, lr 1e-3
cosine, EMA 0.999, batch 256) is instead regressed directly on the questions an NFE-5 BA solve on the
uniform grid asks, answered exactly: every iteration draws fresh noise and labels, solves their
trajectories exactly (float64, rtol = atol = 1e-9) through the grid and the quadrature nodes, and
fits ``v + S(x, v, t, h, y)`` to the exact velocity at ``t - h`` for each forward probe (anchor
``x(t_k)``, offsets ``a H``, ``(1 - a) H``, ``H``) and each backward refinement (anchor ``x(t_k+1)``,
offset ``-a H``).  That is the most favourable training a SideNet of this size can have for this
one solve: no chain drift, no questions it is never asked.  Its error is a ceiling for the chain
trainer at this size and budget, not a sampler anyone should ship (it is fitted to one NFE).

Each SideNet is written to ``RESULTS/.cache/sidenet_ceiling/`` (and reused from there) and evaluated through the engine in
the attempts table's setting (``sidenet_attempts.py``: 1024 samples, reference at 1e-9),
with the per-interval error profile of ``sidenet_diagnosis.py``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from backbones.gmm import GaussianMixture
from research.sidenet.attempts import Attempt
from research.sidenet.sidenet_attempts import error, measure
from research.sidenet.sidenet_diagnosis import error_profile
from solverbench.field import VelocityField
from solverbench.reference import Tolerance, reference_trajectory
from solvers.ba.checkpoint import load_checkpoint, save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.quadrature import QuadratureRule, bi_anchor_rule
from solvers.ba.questions import SolveQuestions
from solvers.ba.sidenet import sidenet_for
from solvers.ba.training import EMA

NFE = 5
EXACT = Tolerance(1e-9, 1e-9)


def solve_questions(nfe: int, rule: QuadratureRule) -> tuple[list[float], list[tuple[int, int]]]:
    """The times an NFE-``nfe`` uniform solve touches (decreasing) and its questions as (anchor, answer) indices."""
    table = SolveQuestions(nfe, nfe, rule)
    count = int(table.count[0])
    return table.times, list(zip(table.anchor[0, :count].tolist(), table.answer[0, :count].tolist()))


def train(gmm: GaussianMixture, config: SideNetConfig, generator: torch.Generator):
    """The direct regression of the module's docstring; returns (raw, EMA, seconds, final loss)."""
    times, questions = solve_questions(NFE, bi_anchor_rule("lobatto", 2, None))
    torch.manual_seed(config.seed)
    sidenet = sidenet_for(gmm, config.network).train()
    ema = EMA(sidenet, config.ema_decay)
    optimizer = torch.optim.AdamW(sidenet.parameters(), lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / config.iterations)))
    losses = []
    start = time.perf_counter()
    for _ in tqdm(range(config.iterations), desc="ceiling SideNet", unit="it", leave=False):
        noise = torch.randn(config.batch_size, *gmm.sample_shape, generator=generator)
        labels = torch.randint(gmm.num_classes, (config.batch_size,), generator=generator)
        field = VelocityField(gmm, labels)
        states = reference_trajectory(field, noise, times, EXACT).float()
        velocities = [gmm(x, torch.full((len(x),), t), labels) for x, t in zip(states, times)]
        terms = []
        for anchor, answer in questions:
            n = len(noise)
            x, v = states[anchor], velocities[anchor]
            t, h = torch.full((n,), times[anchor]), torch.full((n,), times[anchor] - times[answer])
            terms.append((v + sidenet(x, v, t, h, labels) - velocities[answer]).pow(2).mean())
        loss = torch.stack(terms).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sidenet.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        ema.update(sidenet)
        losses.append(loss.item())
    tail = losses[-max(1, len(losses) // 20):]
    return sidenet.eval(), ema.model, time.perf_counter() - start, sum(tail) / len(tail)


def ceiling_sidenet(gmm: GaussianMixture, iterations: int, width: int, results: str) -> tuple[Path, dict]:
    """The regressed SideNet's checkpoint (trained here unless RESULTS holds it) and its statistics."""
    path = Path(results) / ".cache" / "sidenet_ceiling" / f"gmm64_nfe{NFE}_w{width}_it{iterations}.pt"
    if not path.exists():
        config = SideNetConfig(iterations=iterations, width=width)
        raw, ema, seconds, final_loss = train(gmm, config, torch.Generator().manual_seed(1))
        stats = {"iterations": iterations, "batch_size": config.batch_size, "seconds": seconds,
                 "final_loss": final_loss, "data_mode": "exact questions of an NFE-5 solve",
                 "parameters": ema.parameter_count()}
        save_checkpoint(path, raw=raw, ema=ema, config=config, stats=stats, backbone=gmm)
    return path, load_checkpoint(path, gmm).stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, nargs="+", default=[1200], help="one SideNet per count")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    gmm = GaussianMixture("gmm64")
    trained = [ceiling_sidenet(gmm, n, args.width, args.results) for n in args.iterations]
    attempts = [Attempt("gmm64", str(path), "", checkpoint=str(path.resolve())) for path, _ in trained]
    measured, goal = measure("gmm64", attempts, args.results)
    lines = ["| SideNet regressed on the NFE-5 questions | training (s) | final loss | NFE 5 | NFE 10 |",
             "|---|--:|--:|--:|--:|"]
    for attempt, (path, stats) in zip(attempts, trained):
        rows = measured[attempt.name]
        lines.append(f"| width {args.width} ({stats['parameters']:,} parameters), {stats['iterations']} iterations "
                     f"at batch {stats['batch_size']} | {stats['seconds']:.0f} | {stats['final_loss']:.3g} | "
                     f"{error(rows[5])} | {error(rows[10])} |")
    lines.append(f"| goal: Euler at NFE 100 | | | {error(goal)} | |")
    profiles = [f"{stats['iterations']} iterations, per interval of the NFE-5 solve (local / final / moved, as in "
                f"research/sidenet/findings/sidenet_diagnosis.md):\n\n" + error_profile(gmm, str(path)) for path, stats in trained]
    text = "\n".join(lines) + "\n\n" + "\n\n".join(profiles)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_ceiling " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text("# gmm64 at NFE 5: a SideNet fitted to the solve's own questions\n\nProduced by\n\n"
                                  f"    {command.strip()}\n\nTraining times on one CPU thread of the 2-core machine, "
                                  f"with other jobs beside it.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
