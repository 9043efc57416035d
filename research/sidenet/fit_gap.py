"""Whether a digits SideNet has fitted its bank rather than the backbone: BA's trajectory error at NFE N on the
trajectories of the solve bank it was trained on, against its error on the attempts table's samples, which it never
saw.

    OMP_NUM_THREADS=1 python -m research.sidenet.fit_gap --checkpoint FILE [FILE ...] [--nfe 10] [--shift 0.5]
        [--samples 500] [--bank-dir results/.cache/solve_banks] [--out research/sidenet/findings/fit_gap.md]

The bank is the one each checkpoint's own settings name (``solve_bank`` trajectories of its seed's stream, solved
exactly at rtol = atol = 1e-6 under its ``solve_guidance``, on its ``solve_shift``'s grids): read from ``--bank-dir``
where a training kept it, solved here otherwise.  BA starts from each trajectory's noise, with its label, and is
measured against that trajectory's exact end.  The held-out side is the attempts table's setting (sidenet_attempts.py):
seed 0's first ``--samples`` noises and labels, the reference solve at rtol = atol = 1e-5.  Both sample at CFG 2 on
SD3's grid shifted by ``--shift`` (1: the uniform grid).  The two sets are different draws of the same distribution,
so a SideNet that learned the backbone does alike on both; one that learned its bank does better on the bank.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import solverbench as sb
from research.sidenet.question_errors import solved_bank
from research.sidenet.table_setting import (GUIDANCE, Endpoints, checkpoint_path, mean_with_interval, table_samples,
                                           unknown_checkpoint)
from solverbench.backbone import resolve_backbone
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.plan import make_plan
from solverbench.solver import PrepareContext
from solverbench.timegrid import make_time_grid
from solvers.ba.checkpoint import load_checkpoint
from solvers.ba.questions import SolveBank


def bank_endpoints(bank: SolveBank, dtype: torch.dtype) -> Endpoints:
    """The bank's trajectories as samples: where each starts, with its label, and where its exact solve ends."""
    times = bank.table.times
    start, end = times.index(1.0), times.index(0.0)
    return Endpoints(bank.states[start].to(dtype), bank.branches[0], bank.states[end].to(dtype))


def ba_errors(solver, backbone, samples: Endpoints, guidance: float, schedule, nfe: int) -> torch.Tensor:
    """Per sample: the RMS distance of ``solver``'s end at ``nfe`` on ``schedule`` from the exact one."""
    field = VelocityField(backbone, samples.labels, Guidance(scale=guidance))
    with torch.no_grad():
        end = solver.solve(field, samples.noise, make_plan(solver, nfe=nfe, times=make_time_grid(schedule, nfe)))
    return per_sample_rms(end, samples.exact)


def check_banked(name: str, config) -> None:
    """Refuse, in one line, a SideNet that was not trained on a solve bank sampled at the table's CFG."""
    if not config.uses_solve_bank:
        raise ValueError(f"{name} was not trained on a solve bank (questions: {config.questions}, solve_bank: "
                         f"{config.solve_bank}): there is no training set to compare with")
    if config.solve_guidance != GUIDANCE:
        raise ValueError(f"{name}'s bank was solved at CFG {config.solve_guidance:g}, the table samples at CFG "
                         f"{GUIDANCE:g}: its trajectories are not the sampler's")


def gap_table(checkpoints: list[str], nfes: list[int], shift: float, samples: int, bank_dir: str | None) -> str:
    backbone = resolve_backbone("digits")
    loaded = {name: load_checkpoint(checkpoint_path(name), backbone) for name in checkpoints}
    for name, entry in loaded.items():
        check_banked(name, entry.config)
    held_out = table_samples(backbone, samples)
    schedule = {"name": "shifted", "shift": shift} if shift != 1 else "uniform"
    lines = ["| SideNet | its bank | NFE | on its bank | held out | held out - bank |", "|---|---|--:|--:|--:|--:|"]
    banks: dict[str, Endpoints] = {}
    for name, entry in loaded.items():
        bank = solved_bank(backbone, entry.config, bank_dir)
        key = bank.key or f"{entry.config.solve_bank} solved here"
        if key not in banks:  # checkpoints trained on one bank share its samples
            banks[key] = bank_endpoints(bank, held_out.noise.dtype)
        solver = sb.get_solver("ba", checkpoint=str(checkpoint_path(name)))
        solver.prepare(backbone, PrepareContext())
        for nfe in nfes:
            on_bank = ba_errors(solver, backbone, banks[key], GUIDANCE, schedule, nfe)
            away = ba_errors(solver, backbone, held_out, GUIDANCE, schedule, nfe)
            lines.append(f"| {name} | {key} ({len(on_bank)}) | {nfe} | {mean_with_interval(on_bank)} | "
                         f"{mean_with_interval(away)} | {away.mean() - on_bank.mean():.2g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", required=True,
                        help="names of files under solvers/ba/checkpoints, or paths")
    parser.add_argument("--nfe", type=int, nargs="+", default=[10])
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--bank-dir", default=None, help="where the banks' batches are kept (train-sidenet's)")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if refusal := unknown_checkpoint(args.checkpoint):
        parser.error(refusal)
    if args.samples < 2 or args.shift <= 0 or min(args.nfe) < 1:
        parser.error("--samples must be at least 2, --shift positive and every --nfe at least 1")
    text = gap_table(args.checkpoint, args.nfe, args.shift, args.samples, args.bank_dir)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.fit_gap " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text("# digits: has a SideNet fitted its bank?\n\nProduced by\n\n    " + command.strip()
                                  + "\n\n" + (__doc__ or "").split("\n\n", 2)[2] + "\nTrajectory error ± half the "
                                  "95% interval; the last column is the difference of the two means.\n\n" + text
                                  + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
