"""What a digits SideNet's training loss says about the questions a solve asks: its solve-question losses on the bank
it was fine-tuned on and on trajectories it never saw, and its guided errors at chosen questions of an NFE-N solve.

    OMP_NUM_THREADS=1 python -m research.sidenet.question_errors [--nfe 10] [--checkpoint digits.pt ...]
        [--bank-dir results/.cache/solve_banks] [--out research/sidenet/findings/question_errors.md]

The trajectories are the guided bank of the attempts table's fine-tunings (seed 0, CFG 2, NFE 5 to 15, batches of
256, exact at rtol = atol = 1e-6) grown to 1024: its first 512 are the bank those SideNets were fine-tuned on
(``solve_bank: 512`` draws the first two batches of the same stream), the other 512 are held out.  ``--bank-dir``
reads the batches an earlier training left there and keeps the ones solved here (about 630 s a batch on one
thread).

Losses: the mean over 12 draws of 256 trajectories of the ``solve_loss: nodes`` loss (4 questions each) and of the
``endpoints`` loss (2 intervals each), as training computes them.  Question errors: per question, the mean over the
held-out trajectories of the RMS error of the guided velocity ``v_u + w (v_c - v_u)`` the SideNet predicts there
against the exact one, and (off) of the anchor's own guided velocity, what the SideNet switched off predicts.  As a
yardstick, the last row is a predictor linear in ``(x(t), v(t), label)``, one per question and branch, fitted by ridge
regression (its penalty by 4-fold cross-validation) to ``v(t - h) - v(t)`` on the fine-tuning half.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Optional

import torch

from research.sidenet.table_setting import checkpoint_path, unknown_checkpoint
from solverbench.backbone import resolve_backbone
from solverbench.guidance import cfg_combine
from solvers.ba.bank_store import BankStore
from solvers.ba.checkpoint import load_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.questions import Question, SolveBank, solve_grid_questions

GUIDANCE = 2.0
BANK = SideNetConfig(width=64, questions="solves", solve_bank=1024, solve_guidance=GUIDANCE)  # the fine-tunings'
TRAINED_ON = 512  # the first trajectories: the fine-tunings' bank
LOSSES = (("nodes", 4), ("endpoints", 2))  # solve_loss, and questions (intervals) per trajectory
DRAWS = 12
PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge penalties tried, per row of the fit


def solved_bank(backbone, config: SideNetConfig, bank_dir: str | None) -> SolveBank:
    """The bank of ``config`` as training builds it (the same stream; its batches read from ``bank_dir`` where
    there)."""
    generator = torch.Generator().manual_seed(config.seed)
    store = None if bank_dir is None else BankStore(bank_dir, backbone, config, generator, "cpu")
    return SolveBank(backbone, config, config.solve_bank, generator, "cpu", progress=True, store=store)


def mean_loss(S, bank: SolveBank, solve_loss: str, per: int) -> float:
    """The ``solve_loss`` loss of ``DRAWS`` draws of 256 of the bank's trajectories, ``per`` questions each."""
    bank = copy.copy(bank)
    bank.config = SideNetConfig.from_settings({**bank.config.as_dict(), "solve_loss": solve_loss})
    with torch.no_grad():
        return sum(bank.draw_loss(S, 256, per, torch.Generator().manual_seed(k)).item() for k in range(DRAWS)) / DRAWS


def time_indices(bank: SolveBank, question: Question) -> tuple[int, int]:
    """The bank's time indices of ``question``'s anchor ``t`` and answer ``t - h``."""
    t, h = question
    return bank.table.times.index(round(t, 12)), bank.table.times.index(round(t - h, 12))


def branch_answers(S, bank: SolveBank, question: Question) -> list[torch.Tensor]:
    """Per branch, the velocity at ``t - h`` that ``S`` predicts from ``(x(t), v(t))`` on the bank's trajectories."""
    t, h = question
    anchor, _ = time_indices(bank, question)
    x = bank.states[anchor]
    rows = len(x)
    with torch.no_grad():
        return [v[anchor] + S(x, v[anchor], torch.full((rows,), t), torch.full((rows,), h), y)
                for y, v in zip(bank.branches, bank.velocities)]


def question_error(S, bank: SolveBank, question: Question, scale: float) -> tuple[float, float]:
    """The mean RMS error of the guided velocity at ``t - h`` predicted from ``(x(t), v(t))``, and of ``v(t)`` itself
    (the SideNet off), over the bank's trajectories."""
    anchor, answer = time_indices(bank, question)

    def guided(per_branch):
        return cfg_combine(*per_branch, scale) if len(per_branch) == 2 else per_branch[0]
    predicted = branch_answers(S, bank, question)
    target = guided([v[answer] for v in bank.velocities])
    off = guided([v[anchor] for v in bank.velocities])

    def rms(a):
        return (a - target).flatten(1).pow(2).mean(1).sqrt().mean().item()
    return rms(guided(predicted)), rms(off)


def branch_errors(S, bank: SolveBank, question: Question) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """At ``question``: the mean RMS error of the conditional and of the unconditional answer, and the correlation of
    the two branches' errors (over all rows and entries); for the SideNet, then for the SideNet off."""
    anchor, answer = time_indices(bank, question)
    predicted = [p - v[answer] for p, v in zip(branch_answers(S, bank, question), bank.velocities)]
    off = [v[anchor] - v[answer] for v in bank.velocities]

    def summary(errors):
        c, u = (e.flatten(1) for e in errors)
        return (c.pow(2).mean(1).sqrt().mean().item(), u.pow(2).mean(1).sqrt().mean().item(),
                ((c * u).sum() / (c.norm() * u.norm())).item())
    return summary(predicted), summary(off)


def linear_features(x: torch.Tensor, v: torch.Tensor, labels: Optional[torch.Tensor], classes: int) -> torch.Tensor:
    """``[x, v, one-hot label, 1]`` per row, float64: what the linear predictor reads."""
    onehot = torch.zeros(len(x), classes, dtype=torch.float64)
    if labels is not None:
        onehot[torch.arange(len(x)), labels.clamp(max=classes - 1)] = 1.0
    return torch.cat([x.flatten(1).double(), v.flatten(1).double(), onehot,
                      torch.ones(len(x), 1, dtype=torch.float64)], dim=1)


def ridge_fit(features: torch.Tensor, targets: torch.Tensor, penalty: float) -> torch.Tensor:
    gram = features.T @ features
    return torch.linalg.solve(gram + penalty * torch.eye(len(gram), dtype=gram.dtype), features.T @ targets)


def ridge_penalty(features: torch.Tensor, targets: torch.Tensor, folds: int = 4) -> float:
    """The ridge penalty of ``PENALTIES`` (scaled by the rows) with the least ``folds``-fold cross-validated error."""
    rows = len(features)
    fold = torch.arange(rows) % folds

    def error(penalty: float) -> float:
        total = 0.0
        for k in range(folds):
            fit, held = fold != k, fold == k
            W = ridge_fit(features[fit], targets[fit], penalty * rows)
            total += (features[held] @ W - targets[held]).pow(2).sum().item()
        return total
    return min(PENALTIES, key=error)


def linear_question_error(trained: SolveBank, held_out: SolveBank, question: Question, scale: float,
                          classes: int) -> tuple[float, float]:
    """``question_error`` for the predictor linear in ``(x(t), v(t), label)``, per branch, fitted by ridge regression
    (penalty cross-validated) to ``v(t - h) - v(t)`` on the trajectories of ``trained``."""
    anchor, answer = time_indices(trained, question)
    fitted = []
    for y, v in zip(trained.branches, trained.velocities):
        features, target = linear_features(trained.states[anchor], v[anchor], y, classes), (v[answer] - v[anchor])
        target = target.flatten(1).double()
        fitted.append(ridge_fit(features, target, ridge_penalty(features, target) * len(features)))
    weights = iter(fitted)

    def linear(x, v, t_, h_, y):
        return (linear_features(x, v, y, classes) @ next(weights)).to(v.dtype).reshape(v.shape)
    return question_error(linear, held_out, question, scale)


def question_groups(nfe: int) -> dict[str, list[Question]]:
    """The questions of an NFE-``nfe`` solve on the uniform grid this table shows: its first interval's forward probe,
    its last refinement (of the interval before the last) and its last forward probe (the predictor's)."""
    questions = solve_grid_questions(nfe)
    return {"first probe (a H, (1 - a) H, H from t = 1)": questions[:3],
            "last refinement (-a H)": [questions[-4]],
            "last probe (a H, (1 - a) H, H toward t = 0)": questions[-3:]}


def tables(names: list[str], nfe: int, bank_dir: str | None) -> str:
    backbone = resolve_backbone("digits")
    bank = solved_bank(backbone, BANK, bank_dir)
    trained, held_out = bank.subset(slice(0, TRAINED_ON)), bank.subset(slice(TRAINED_ON, None))
    groups = question_groups(nfe)
    losses = ["| SideNet | " + " | ".join(f"{loss} loss: fine-tuning bank / held out" for loss, _ in LOSSES) + " |",
              "|---|" + "--:|" * len(LOSSES)]
    errors = ["| SideNet | " + " | ".join(groups) + " |", "|---|" + "--:|" * len(groups)]
    for name in names:
        S = load_checkpoint(checkpoint_path(name), backbone).sidenet.eval()
        losses.append(f"| {name} | " + " | ".join(
            f"{mean_loss(S, trained, loss, per):.3g} / {mean_loss(S, held_out, loss, per):.3g}"
            for loss, per in LOSSES) + " |")
        cells = []
        for questions in groups.values():
            measured = [question_error(S, held_out, q, GUIDANCE) for q in questions]
            cells.append(", ".join(f"{e:.3f} (off {off:.3f})" for e, off in measured))
        errors.append(f"| {name} | " + " | ".join(cells) + " |")
    first = groups[next(iter(groups))]
    branches = ["| SideNet | " + " | ".join(f"h = {h:.3f}" for _, h in first) + " |", "|---|" + "--:|" * len(first)]
    for name in names:
        S = load_checkpoint(checkpoint_path(name), backbone).sidenet.eval()
        cells = []
        for question in first:
            (c, u, r), (c0, u0, r0) = branch_errors(S, held_out, question)
            cells.append(f"{c:.3f} / {u:.3f} / {r:.2f} (off {c0:.3f} / {u0:.3f} / {r0:.2f})")
        branches.append(f"| {name} | " + " | ".join(cells) + " |")
    classes = backbone.null_label + 1  # the labels and the null label
    cells = []
    for questions in groups.values():
        measured = [linear_question_error(trained, held_out, q, GUIDANCE, classes) for q in questions]
        cells.append(", ".join(f"{e:.3f} (off {off:.3f})" for e, off in measured))
    errors.append("| linear in (x(t), v(t), label), ridge-fitted on the fine-tuning bank | " + " | ".join(cells) + " |")
    return ("### Losses\n\n" + "\n".join(losses) + f"\n\n### Guided errors at questions of the NFE-{nfe} solve, "
            "held out\n\n" + "\n".join(errors) + "\n\n### The branches at the first probe, held out\n\n"
            "Per node: the conditional answer's error / the unconditional's / the correlation of the two errors "
            "(guidance at w = 2 takes 2 c - u of them: correlated errors cancel, uncorrelated ones add up).\n\n"
            + "\n".join(branches))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--checkpoint", nargs="+", default=["digits.pt"],
                        help="names of files under solvers/ba/checkpoints, or paths")
    parser.add_argument("--bank-dir", default=None, help="where the bank's batches are kept (train-sidenet's)")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if refusal := unknown_checkpoint(args.checkpoint):
        parser.error(refusal)
    if not 5 <= args.nfe <= 15:
        parser.error(f"--nfe must be one of the bank's NFE 5 to 15, got {args.nfe}")
    text = tables(args.checkpoint, args.nfe, args.bank_dir)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.question_errors " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text("# digits: what the solve-question losses say about a solve's questions\n\n"
                                  "Produced by\n\n    " + command.strip() + "\n\n" + (__doc__ or "").split("\n\n", 2)[2]
                                  + "\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
