"""How much of BA's digits error its last interval makes: BA's trajectory error, and the error it would leave
with its last interval solved exactly from the state BA reaches there (a bound on what training that interval
alone can buy); and, on that interval, how far off each of the predictor's node velocities is, and what its
quadrature leaves with exact ones.

    OMP_NUM_THREADS=1 python -m research.sidenet.last_interval_bound [--samples 200] [--nfe 5 10]
        [--checkpoint digits.pt ...] [--shift 1 0.5] [--out research/sidenet/findings/last_interval_bound.md]

Setting of the attempts table's digits rows (sidenet_attempts.py): CFG 2, seed 0's noise and labels (its first
``--samples``), the reference solve at rtol = atol = 1e-5.  Each solve is the real bi-anchor loop (``bi_anchor``'s
state reuse included) up to the start of its last interval; there it either returns the predictor, as BA does,
or hands the state to the exact solve.  ``--shift`` samples on SD3-shifted grids (``schedule: {name: shifted,
shift: s}``); 1 is the uniform grid.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import torch

import solverbench as sb
from research.sidenet.table_setting import (GUIDANCE, TOLERANCE, checkpoint_path, mean_with_interval, table_samples,
                                           unknown_checkpoint)
from solverbench.backbone import resolve_backbone
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.reference import reference_trajectory
from solverbench.solver import PrepareContext
from solverbench.timegrid import make_time_grid
from solvers.ba.node_velocities import NodeVelocities
from solvers.ba.quadrature import QuadratureRule
from solvers.ba.schemes import bi_anchor_interval, bi_anchor_to_last_interval, cfg_anchor, node_times, probe_offsets


class LastInterval(NamedTuple):
    predicted: torch.Tensor  # the solve's endpoint: the last interval's predictor
    exact: torch.Tensor  # the endpoint with the last interval solved exactly from the state the solve reached
    node_errors: list[torch.Tensor]  # per sample, the RMS error of the predictor's node velocities f_a, f_b, f_end
    exact_nodes: torch.Tensor  # the predictor's endpoint with exact node velocities: the quadrature's own error
    fresh_anchor: torch.Tensor  # the predictor's endpoint anchored at v(x, t) instead of the reused v(x_pred, t)


def last_interval(field: VelocityField, nodes: NodeVelocities, rule: QuadratureRule, x: torch.Tensor,
                  grid: list[float]) -> LastInterval:
    """A bi-anchor solve over ``grid`` (``bi_anchor``'s loop, state reuse included) up to its last interval, which is
    then taken four ways: by the predictor (as the solve takes it), exactly, by the predictor's quadrature with
    exact node velocities (the guided velocities on the exact trajectory from the same state), and by the predictor
    anchored at the velocity of the state it starts from (one more NFE) instead of the previous predictor's, which
    state reuse hands it."""
    with torch.no_grad():
        x, anchor, t, H = bi_anchor_to_last_interval(field, nodes, rule, x, torch.tensor(grid, dtype=torch.float64))
        predicted, _ = bi_anchor_interval(field, nodes, rule, x, anchor, t, H, last=True)
        f = nodes(field, x, anchor, t, probe_offsets(rule, H))
        times = node_times(t, probe_offsets(rule, H))
        states = reference_trajectory(field, x, [t] + times, TOLERANCE)[1:].to(x.dtype)
        exact_f = [field(state, torch.tensor(s)) for state, s in zip(states, times)]
        exact_nodes = x - H * rule.combine([field.guide(*anchor, t), *exact_f])
        fresh = cfg_anchor(field, x, t, [t] + times)
        fresh_anchor, _ = bi_anchor_interval(field, nodes, rule, x, fresh, t, H, last=True)
    return LastInterval(predicted, states[-1], [per_sample_rms(a, b) for a, b in zip(f, exact_f)], exact_nodes,
                        fresh_anchor)


def bound_table(checkpoints: list[str], nfes: list[int], shifts: list[float], samples: int) -> str:
    backbone = resolve_backbone("digits")
    noise, labels, reference = table_samples(backbone, samples)
    field = VelocityField(backbone, labels, Guidance(scale=GUIDANCE))
    lines = ["| SideNet | NFE | grid | BA | last interval exact | last interval: own error | node velocities' error "
             "f_a / f_b / f_end | with exact node velocities: own error | anchored afresh: own error |",
             "|---|--:|---|--:|--:|--:|--:|--:|--:|"]
    for name in checkpoints:
        solver = sb.get_solver("ba", checkpoint=str(checkpoint_path(name)))
        solver.prepare(backbone, PrepareContext())
        for nfe in nfes:
            for shift in shifts:
                grid = make_time_grid({"name": "shifted", "shift": shift} if shift != 1 else "uniform", nfe).tolist()
                last = last_interval(field, solver.node_velocities(field), solver.rule, noise, grid)
                cells = [mean_with_interval(per_sample_rms(end, reference)) for end in (last.predicted, last.exact)]
                cells.append(f"{per_sample_rms(last.predicted, last.exact).mean():.2g}")
                cells.append(" / ".join(f"{e.mean():.2g}" for e in last.node_errors))
                cells.append(f"{per_sample_rms(last.exact_nodes, last.exact).mean():.2g}")
                cells.append(f"{per_sample_rms(last.fresh_anchor, last.exact).mean():.2g}")
                grid_name = "uniform" if shift == 1 else f"shifted {shift:g}"
                lines.append(f"| {name} | {nfe} | {grid_name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--nfe", type=int, nargs="+", default=[10])
    parser.add_argument("--checkpoint", nargs="+", default=["digits.pt"],
                        help="names of files under solvers/ba/checkpoints, or paths")
    parser.add_argument("--shift", type=float, nargs="+", default=[1.0])
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if refusal := unknown_checkpoint(args.checkpoint):
        parser.error(refusal)
    text = bound_table(args.checkpoint, args.nfe, args.shift, args.samples)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.last_interval_bound " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text(
            "# digits: what BA's last interval costs\n\nProduced by\n\n    " + command.strip() + "\n\n"
            f"Trajectory error (± half the 95% interval) of BA on the first {args.samples} samples of the attempts "
            "table's digits setting (CFG 2, reference at rtol = atol = 1e-5), and with the last interval solved "
            "exactly from the state BA reaches at its start: what a perfect last interval would leave. Then, "
            "for the last interval alone (means over the samples): the distance between the two endpoints; the "
            "RMS error of the predictor's node velocities at a H, (1 - a) H and H (the SideNet's, guided, against "
            "the guided velocities on the exact trajectory from the same state; Lobatto weights 5/12, 5/12, "
            "1/12); the distance the predictor's quadrature leaves with those exact node velocities, the "
            "floor of a perfect SideNet; and the predictor's own error when its anchor is the velocity at the state "
            "it starts from (one more NFE) instead of the one state reuse hands it, evaluated at the previous "
            "interval's predictor: what that reuse costs.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
