"""Is the digits reference tight enough for the goal's comparison?  The attempts table measures digits against a
dopri5 reference at rtol = atol = 1e-5; this measures that reference against a tighter one, and the goal's two sides
(Euler at NFE 100 and a BA SideNet at NFE 10) against both.

    OMP_NUM_THREADS=1 python -m research.sidenet.reference_tolerance [--samples 200] [--tight 1e-8]
        [--checkpoint results/.cache/sidenet/bc2dd09554955777.pt] [--shift 0.5]
        [--out research/sidenet/findings/reference_tolerance.md]

Setting of the attempts table's digits rows (sidenet_attempts.py): CFG 2, seed 0's noise and labels (the first
``--samples``), float32 solves.  Both references are the sweep's own (``solve_reference``: float64, the given
tolerance), each solved as one batch of the samples, as the table solves its 500 (an adaptive solve's steps
are the batch's, so the loose one is not the table's to the bit).  A reference is tight enough where its
distance to the tighter one is small beside the errors compared, and the verdict (which side is lower, the
paired difference) is the same against both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import solverbench as sb
from research.sidenet.table_setting import (GUIDANCE, TOLERANCE, checkpoint_path, mean_with_interval, table_inputs,
                                           unknown_checkpoint)
from solverbench.backbone import resolve_backbone
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.plan import make_plan
from solverbench.reference import Tolerance, solve_reference
from solverbench.solver import PrepareContext
from solverbench.timegrid import make_time_grid


def comparison(endpoints: dict[str, torch.Tensor], loose: torch.Tensor, tight: torch.Tensor) -> list[str]:
    """Markdown rows: the loose reference against the tight one, then each solve's error against both; and, where
    there are two solves, the paired difference (second minus first) against both."""
    lines = ["| | against the loose reference | against the tight one |", "|---|--:|--:|",
             f"| the loose reference | 0 | {mean_with_interval(per_sample_rms(loose, tight))} |"]
    errors = {name: (per_sample_rms(x, loose), per_sample_rms(x, tight)) for name, x in endpoints.items()}
    lines += [f"| {name} | {mean_with_interval(a)} | {mean_with_interval(b)} |" for name, (a, b) in errors.items()]
    if len(errors) == 2:
        (first, (a0, b0)), (second, (a1, b1)) = errors.items()
        paired = [mean_with_interval(a1 - a0), mean_with_interval(b1 - b0)]
        lines.append(f"| {second} minus {first}, paired | {paired[0]} | {paired[1]} |")
    return lines


def solve(backbone, field: VelocityField, noise: torch.Tensor, name: str, nfe: int, schedule, **params) -> torch.Tensor:
    solver = sb.get_solver(name, **params)
    solver.prepare(backbone, PrepareContext())
    with torch.no_grad():
        return solver.solve(field, noise, make_plan(solver, nfe=nfe, times=make_time_grid(schedule, nfe)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--tight", type=float, default=1e-8, help="rtol = atol of the tighter reference")
    parser.add_argument("--checkpoint", default="digits_guided.pt",
                        help="the BA SideNet: a file under solvers/ba/checkpoints, or a path")
    parser.add_argument("--shift", type=float, default=1.0, help="BA's grid: SD3's time shift (1: uniform)")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if refusal := unknown_checkpoint([args.checkpoint]):
        parser.error(refusal)
    if not 0 < args.tight < TOLERANCE.rtol:
        parser.error(f"--tight must lie in (0, {TOLERANCE.rtol:g}), the tables' tolerance; got {args.tight:g}")
    backbone = resolve_backbone("digits")
    noise, labels = table_inputs(backbone, args.samples)
    guidance = Guidance(scale=GUIDANCE)
    loose = solve_reference(backbone, noise, labels, guidance, TOLERANCE, args.samples, progress=True).float()
    tight = solve_reference(backbone, noise, labels, guidance, Tolerance(args.tight, args.tight), args.samples,
                            progress=True).float()
    field = VelocityField(backbone, labels, guidance)
    grid = "uniform" if args.shift == 1 else {"name": "shifted", "shift": args.shift}
    endpoints = {"Euler, NFE 100": solve(backbone, field, noise, "euler", 100, "uniform"),
                 f"BA, NFE 10 ({args.checkpoint})": solve(backbone, field, noise, "ba", 10, grid,
                                                          checkpoint=str(checkpoint_path(args.checkpoint)))}
    text = "\n".join(comparison(endpoints, loose, tight))
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.reference_tolerance " + " ".join(argv or sys.argv[1:])
        grid_name = "uniform grid" if args.shift == 1 else f"grid shifted {args.shift:g}"
        Path(args.out).write_text(
            "# digits: is the reference at 1e-5 tight enough?\n\nProduced by\n\n    " + command.strip() + "\n\n"
            f"Trajectory error (± half the 95% interval) on the first {args.samples} samples of the attempts table's "
            "digits setting (CFG 2), against its reference (dopri5, float64, rtol = atol = 1e-5) and against one at "
            f"rtol = atol = {args.tight:g}, each solved as one batch of the samples; BA on the {grid_name}. The first "
            "row is the loose reference's own distance to the tight one.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
