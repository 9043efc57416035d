"""Where a SideNet falls short: which interval of a few-step BA solve makes its error, and how much of
the true velocity change over an offset the SideNet predicts, by time.

    OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_diagnosis [--checkpoint solvers/ba/checkpoints/gmm64.pt]
        [--samples 8192] [--digits-samples 100] [--out research/sidenet/findings/sidenet_diagnosis.md]
    OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_diagnosis --digits-only --digits-checkpoint FILE
        [--digits-shift 0.5] [--digits-samples 100] [--out FILE.md]

1. The error profile of BA at NFE 5 (uniform grid) on gmm64, from the noise and labels of the attempts
   table's setting (seed 0, 1024 samples): for each interval ``[t_k, t_k+1]`` one BA interval is taken
   from the exact state ``x(t_k)`` (``local_step``; the last interval is the predictor alone, as in a
   solve), then the rest of the path is solved exactly.  "local" is the mean per-sample RMS distance to
   ``x(t_k+1)``, "final" the mean distance at t = 0 that this interval's error alone leaves (the part of
   the trajectory error it causes), "moved" the share of samples it carries more than 0.1 from their
   reference endpoint (into another mixture component).  The same for the SideNet switched off, for
   exact node velocities (the oracle), and the floor: the final distance where the interval is taken
   by an exact solve (what two exact solves disagree by).
2. The same NFE-5 solves on grids that give more of their five steps to [0.6, 1], where the profile
   says the error is made.
3. The profile of the 136k digits SideNet at NFE 10 (the digits goal's budget; slow: exact solves of
   the U-Net at 1e-5, on ``--digits-samples`` samples).  ``--digits-only`` makes this profile alone, of
   ``--digits-checkpoint`` on the grid time-shifted by ``--digits-shift`` (``schedule: {name: shifted}``).
4. On gmm64, chain starting points ``(x, t)`` drawn as training draws them (data carried to a random t,
   labels kept).  For each offset ``h`` (0.02, a typical training step, and 0.0625, 0.1875 and 0.25,
   offsets of the size a few-step interval asks: an NFE-5 interval asks 0.055, 0.145 and 0.2) and each
   band of t, it compares the SideNet's ``v_hat(t - h)`` with the velocity at the exact trajectory
   point ``x(t - h)`` (an adaptive solve, ``chains.exact_step``): RMS of ``v_hat - v(t - h)`` against
   RMS of ``v(t) - v(t - h)``, the change a SideNet that predicted nothing would miss.  The ratio is the
   part of the change left unpredicted: 0 is perfect, 1 is no better than ``v`` itself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from research.sidenet import CHECKPOINTS
from research.sidenet.table_setting import GUIDANCE, TOLERANCE, table_inputs
from solverbench.backbone import resolve_backbone
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.report.tables.model import format_with_interval
from solverbench.solver import PrepareContext
from solverbench.timegrid import make_time_grid
from solverbench.uncertainty import mean_interval
from solvers.ba.chains import chain_start, exact_step
from solvers.ba.checkpoint import load_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.schemes import bi_anchor, bi_anchor_interval, cfg_anchor, node_times, probe_offsets

OFFSETS = (0.02, 0.0625, 0.1875, 0.25)
BANDS = ((0.0, 0.25), (0.25, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
PROFILE_NFE = 5
PROFILE_SAMPLES = 1024
HAND_GRIDS = ((1, 0.8, 0.6, 0.4, 0.2, 0), (1, 0.9, 0.7, 0.45, 0.2, 0), (1, 0.9, 0.75, 0.5, 0.25, 0),
              (1, 0.95, 0.85, 0.6, 0.3, 0))  # uniform, then hand-picked: more of the 5 steps in [0.6, 1]
MOVED = 0.1  # a final distance beyond this is another mixture component (they are about 1.4 apart)


def interval_step(solver, field: VelocityField, x: torch.Tensor, t: float, t_next: float, last: bool) -> torch.Tensor:
    """One BA interval from the exact state ``x`` at ``t``: predictor and corrector, or the predictor alone
    on the last interval (a solve returns it there)."""
    if not last:
        return solver.local_step(field, [t], [x], t_next)
    anchor = cfg_anchor(field, x, t, [t] + node_times(t, probe_offsets(solver.rule, t - t_next)))
    return bi_anchor_interval(field, solver.velocities, solver.rule, x, anchor, t, t - t_next, last=True)[0]


def error_profile(backbone, checkpoint: str, nfe: int = PROFILE_NFE, samples: int = PROFILE_SAMPLES,
                  guidance: Guidance = Guidance(), tolerance: Tolerance = Tolerance(1e-9, 1e-9),
                  moved: Optional[float] = MOVED, oracle: bool = True, schedule: str | dict = "uniform") -> str:
    """The per-interval table of the module's docstring, for BA with ``checkpoint`` at ``nfe`` on ``schedule``'s
    grid (seed 0's noise and labels, exact solves at ``tolerance``); "moved" where ``moved`` is given."""
    noise, labels = table_inputs(backbone, samples)
    field = VelocityField(backbone, labels, guidance)
    grid = make_time_grid(schedule, nfe).tolist()
    states = reference_trajectory(field, noise, grid, tolerance).to(noise.dtype)
    solvers = {"BA": sb.get_solver("ba", checkpoint=checkpoint), "SideNet off": sb.get_solver("ba", sidenet="off")}
    if oracle:
        solvers["oracle"] = sb.get_solver("ba-oracle", rtol=1e-10, atol=1e-10)
    columns = "local / final" + (" / moved" if moved is not None else "")
    lines = ["| interval | " + " | ".join(f"{name}: {columns}" for name in solvers) + " | exact step: final |",
             "|---|" + "--:|" * (len(solvers) + 1)]
    totals = {name: 0.0 for name in solvers}
    for solver in solvers.values():
        solver.prepare(backbone, PrepareContext())
    for k, (t, t_next) in enumerate(zip(grid, grid[1:])):
        cells = []
        last = k == nfe - 1
        for name, solver in solvers.items():
            with torch.no_grad():
                stepped = interval_step(solver, field, states[k], t, t_next, last)
                end = stepped if last else reference_trajectory(field, stepped, [t_next, 0.0], tolerance)[-1]
            local = per_sample_rms(stepped, states[k + 1])
            final = per_sample_rms(end, states[-1])
            totals[name] += final.mean().item()
            cell = f"{local.mean():.2g} / {final.mean():.2g}"
            cells.append(cell + (f" / {(final > moved).double().mean():.1%}" if moved is not None else ""))
        with torch.no_grad():  # the floor: two exact solves at ``tolerance`` disagree by this much
            exact = states[k + 1] if last else reference_trajectory(field, states[k + 1], [t_next, 0.0], tolerance)[-1]
        floor = per_sample_rms(exact, states[-1]).mean().item()
        lines.append(f"| [{t:.2g}, {t_next:.2g}] | " + " | ".join(cells) + f" | {floor:.2g} |")
    lines.append("| sum of final | " + " | ".join(f"{totals[name]:.2g}" for name in solvers) + " | |")
    return "\n".join(lines)


def grid_table(gmm: GaussianMixture, checkpoint: str) -> str:
    """BA and BA with the SideNet off at NFE 5 on the uniform grid and on grids with shorter first steps."""
    noise, labels = table_inputs(gmm, PROFILE_SAMPLES)
    field = VelocityField(gmm, labels)
    reference = reference_trajectory(field, noise, [1.0, 0.0], Tolerance(1e-9, 1e-9))[-1].to(noise.dtype)
    solvers = {"BA": sb.get_solver("ba", checkpoint=checkpoint), "SideNet off": sb.get_solver("ba", sidenet="off")}
    lines = ["| time grid | " + " | ".join(f"{name}: error / moved" for name in solvers) + " |",
             "|---|" + "--:|" * len(solvers)]
    for grid in HAND_GRIDS:
        cells = []
        for solver in solvers.values():
            solver.prepare(gmm, PrepareContext())
            sample = bi_anchor(field, solver.velocities, solver.rule, noise, torch.tensor(grid, dtype=torch.float64))
            err = per_sample_rms(sample, reference)
            mean, (low, high) = mean_interval(err, name="trajectory_error", strata=labels)
            cells.append(f"{format_with_interval(mean, low, high)} / {(err > MOVED).double().mean():.1%}")
        lines.append(f"| {', '.join(f'{t:g}' for t in grid)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(CHECKPOINTS / "gmm64.pt"))
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--digits-samples", type=int, default=100, help="samples of the digits profile (slow: "
                        "exact solves of the U-Net)")
    parser.add_argument("--digits-checkpoint", default=str(CHECKPOINTS / "digits.pt"))
    parser.add_argument("--digits-shift", type=float, default=1.0, help="profile digits on the grid time-shifted by "
                        "this (1: uniform)")
    parser.add_argument("--digits-only", action="store_true", help="the digits profile alone")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if not Path(args.digits_checkpoint).is_file():
        parser.error(f"no checkpoint at {args.digits_checkpoint}")
    if not args.digits_shift > 0:
        parser.error(f"--digits-shift must be positive, got {args.digits_shift}")
    schedule = "uniform" if args.digits_shift == 1 else {"name": "shifted", "shift": args.digits_shift}
    command = "OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_diagnosis " + " ".join(argv or sys.argv[1:])
    digits = error_profile(resolve_backbone("digits"), args.digits_checkpoint, nfe=10, samples=args.digits_samples,
                           guidance=Guidance(scale=GUIDANCE), tolerance=TOLERANCE, moved=None, oracle=False,
                           schedule=schedule)
    grid_name = "the uniform grid" if args.digits_shift == 1 else f"the grid time-shifted by {args.digits_shift:g}"
    digits_text = (f"The profile of `{Path(args.digits_checkpoint).name}` at NFE 10 on {grid_name}, in the setting "
                   "of the attempts table (CFG 2, exact solves at rtol = atol = 1e-5), on its first "
                   f"{args.digits_samples} samples. \"exact step: final\" is the floor: the final distance when the "
                   "interval is taken by an exact solve, what two solves at that tolerance disagree by; a cell near it "
                   "says nothing about that interval.\n\n" + digits)
    if args.digits_only:
        print(digits)
        if args.out:
            Path(args.out).write_text("# Which interval makes digits' NFE-10 error\n\nProduced by\n\n    "
                                      + command.strip() + "\n\n" + digits_text + "\n")
        return 0
    gmm = GaussianMixture("gmm64")
    sidenet = load_checkpoint(args.checkpoint, gmm).sidenet
    profile = error_profile(gmm, args.checkpoint)
    grids = grid_table(gmm, args.checkpoint)
    x, t, y = chain_start(gmm, SideNetConfig(label_dropout=0.0), args.samples, torch.Generator().manual_seed(5), "cpu")
    v = gmm(x, t, y)
    lines = ["| t band | " + " | ".join(f"h = {h:g}" for h in OFFSETS) + " |", "|---|" + "--:|" * len(OFFSETS)]
    for lo, hi in BANDS:
        cells = []
        for h in OFFSETS:
            m = (t >= lo) & (t < hi) & (t - h >= 0)
            if m.sum() < 100:
                cells.append("–")
                continue
            xs, ts, vs, ys = x[m], t[m], v[m], y[m]
            hs = torch.full((len(xs),), h)
            target = gmm(exact_step(gmm, xs, ts, hs, ys), ts - hs, ys)
            with torch.no_grad():
                predicted = sidenet.velocity(xs, vs, ts, hs, ys)
            missed = (predicted - target).pow(2).mean().sqrt().item()
            change = (target - vs).pow(2).mean().sqrt().item()
            cells.append(f"{missed / change:.2f} ({missed:.3g} of {change:.3g})")
        lines.append(f"| [{lo}, {hi}) | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(profile + "\n\n" + grids + "\n\n" + digits + "\n\n" + text)
    if args.out:
        Path(args.out).write_text(
            "# Where the SideNet falls short (gmm64, digits)\n\nProduced by\n\n    " + command.strip() + "\n\n"
            "## gmm64: which interval of an NFE-5 solve makes the error\n\n"
            "Each cell: local / final / moved for one BA interval taken from the exact state, the rest solved "
            "exactly: the mean per-sample RMS distance to the exact state at the interval's end, the mean "
            f"distance at t = 0 that it alone leaves, and the share of the {PROFILE_SAMPLES} samples it moves more "
            f"than {MOVED} from their reference endpoint (into another component). The last interval is the "
            "predictor alone, as in a solve; \"exact step: final\" is the floor (the interval taken by an exact "
            "solve).\n\n" + profile + "\n\n"
            "## gmm64: the same solve on grids with shorter first steps\n\n"
            "Trajectory error at NFE 5 (± half the 95% interval) and the share of samples that end more than "
            f"{MOVED} from their reference endpoint (rtol = atol = 1e-9), same noise and labels; the grids after the "
            "uniform one were picked by hand after reading the profile above (not tuned on this noise).\n\n"
            + grids + "\n\n"
            "## digits at NFE 10\n\n" + digits_text + "\n\n"
            "## gmm64: how much of the velocity change the SideNet predicts\n\n"
            "Each cell: the part of the velocity change over the offset h that the SideNet leaves unpredicted, "
            "RMS(v_hat - v(t - h)) / RMS(v(t - h) - v(t)) (0: perfect, 1: no better than v itself), then both "
            f"RMS values; {args.samples} chain starting points as training draws them, split by t.\n\n"
            + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
