"""What a guided reference solve costs, with guidance going on past t = 0 and with guidance stopping there.

    python benchmarks/guided_reference_cost.py [--samples 500] [--tight 1e-8]
        [--out docs/benchmarks/guided_reference_cost.md]

The setting of configs/digits.yaml's reference: the shipped digits U-Net, seed 0's noise and labels, CFG 2 on
[0, 1], dopri5 in float64 at rtol = atol = 1e-5, the samples as one batch.  dopri5 steps past t = 0 and
interpolates back.  Guidance whose interval reaches t = 0 goes on past it (solverbench.guidance); the other
variant stops it at t = 0, so the stages beyond the end see the conditional velocity alone: a jump the solve
spends its evaluations on.  Each variant is solved once; the table gives its backbone evaluations (all, and
those beyond t = 0), its wall time, the distance between the two variants' endpoints beside the reference
tolerance, and Euler at NFE 100's trajectory error against each (and, with ``--tight``, to a solve at a tighter one).  The unguided solve (CFG 1) is the cost to compare
with.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from solverbench.backbone import resolve_backbone
from solverbench.field import VelocityField
import solverbench as sb
from solverbench.guidance import Guidance
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.noise import labels_for, noise_for
from solverbench.reference import Tolerance, reference_trajectory

TOLERANCE = Tolerance(1e-5, 1e-5)  # configs/digits.yaml's reference
SCALE = 2.0
EULER_NFE = 100


@dataclass(frozen=True)
class StoppingAtTheEnd(Guidance):
    """Guidance that stops at the ends of the path: beyond t = 0 (or 1) the field is the conditional one."""

    def applies_at(self, t: float) -> bool:
        return 0.0 <= float(t) <= 1.0 and super().applies_at(t)


class CountingBackbone(torch.nn.Module):
    """The backbone, recording the time of every evaluation."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.sample_shape, self.num_classes, self.null_label = (backbone.sample_shape, backbone.num_classes,
                                                                backbone.null_label)
        self.times: list[float] = []

    def forward(self, x, t, y=None):
        self.times.append(float(t[0]))
        return self.backbone(x, t, y)


def solve(backbone, noise: torch.Tensor, labels: torch.Tensor, guidance: Guidance,
          tolerance: Tolerance = TOLERANCE) -> tuple[torch.Tensor, dict]:
    counted = CountingBackbone(backbone)
    start = time.perf_counter()
    with torch.no_grad():
        end = reference_trajectory(VelocityField(counted, labels, guidance), noise, [1.0, 0.0], tolerance)[-1]
    seconds = time.perf_counter() - start
    return end, {"evaluations": len(counted.times), "beyond": sum(t < 0 for t in counted.times), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=500, help="samples, solved as one batch (default: 500)")
    parser.add_argument("--tight", type=float, default=None,
                        help="also solve the guided field at this tolerance (e.g. 1e-8) and give each guided "
                             "reference's distance to that solve")
    parser.add_argument("--out", help="markdown file to write (default: print)")
    args = parser.parse_args(argv)
    backbone = resolve_backbone("digits").double().eval()
    noise = noise_for(0, range(args.samples), backbone.sample_shape, torch.float32).double()
    labels = labels_for(0, range(args.samples), backbone.num_classes)
    variants = {"unguided (CFG 1)": Guidance(1.0),
                "CFG 2, guidance stopping at t = 0": StoppingAtTheEnd(SCALE),
                "CFG 2, guidance going on past t = 0": Guidance(SCALE)}
    ends, rows = {}, []
    for name, guidance in variants.items():
        ends[name], cost = solve(backbone, noise, labels, guidance)
        rows.append(f"| {name} | {cost['evaluations']} | {cost['beyond']} | {cost['seconds']:.0f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    stopping, going_on = (ends[name] for name in list(variants)[1:])
    distance = {"the two guided references": per_sample_rms(stopping, going_on)}
    float32 = resolve_backbone("digits").eval()  # the grid's cells: a float32 network and state
    with torch.no_grad():
        euler = sb.sample(float32, "euler", noise.float(), labels, nfe=EULER_NFE, cfg_scale=SCALE).samples
    against = {name: per_sample_rms(euler, ends[name]) for name in list(variants)[1:]}
    if args.tight is not None:
        tight, cost = solve(backbone, noise, labels, Guidance(SCALE), Tolerance(args.tight, args.tight))
        print(f"tight solve: {cost}", file=sys.stderr, flush=True)
        distance.update({f"{name} and a solve at {args.tight:g}": per_sample_rms(ends[name], tight)
                         for name in list(variants)[1:]})
    command = "python benchmarks/guided_reference_cost.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# The guided reference's cost, with guidance going on past t = 0 and stopping there",
        "",
        f"Produced by `{command.strip()}` ({torch.get_num_threads()} torch threads; wall times are this",
        "machine's, one run each, the evaluations exact).  Setting: configs/digits.yaml's reference, the shipped",
        f"digits U-Net, seed 0's first {args.samples} noises and labels as one batch, dopri5 in float64 at",
        f"rtol = atol = {TOLERANCE.rtol:g}.  An evaluation is one batched backbone call (a guided one runs the",
        "conditional and unconditional halves as one doubled batch).",
        "",
        "| reference solve | backbone evaluations | of them beyond t = 0 | wall time (s) |",
        "|---|--:|--:|--:|",
        *rows,
        "",
        f"Distances between endpoints (RMS over a sample's coordinates; the solve tolerance is {TOLERANCE.rtol:g}):",
        "",
        "| between | mean over samples | largest |",
        "|---|--:|--:|",
        *[f"| {name} | {d.mean():.2g} | {d.max():.2g} |" for name, d in distance.items()],
        "",
        f"Euler at NFE {EULER_NFE} (the digits table's high-NFE line, CFG 2, float32) has the trajectory error",
        "(mean over samples of the RMS distance to the reference's endpoint):",
        "",
        "| against | trajectory error |",
        "|---|--:|",
        *[f"| {name} | {e.mean():.5f} |" for name, e in against.items()],
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
