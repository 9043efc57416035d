"""Where a SideNet falls short: how much of the true velocity change over an offset it predicts, by time.

    OMP_NUM_THREADS=1 python benchmarks/sidenet_diagnosis.py [--checkpoint solvers/ba/checkpoints/gmm64.pt]
        [--samples 8192] [--out docs/benchmarks/sidenet_diagnosis.md]

On gmm64 (the shipped SideNet's backbone), chain starting points ``(x, t)`` are drawn as training
draws them (data carried to a random t, labels kept).  For each offset ``h`` (0.02, a typical
training step; 0.0625, 0.1875 and 0.25, the node offsets of an NFE-5 BA interval) and each band of
t, it compares the SideNet's ``v_hat(t - h)`` with the velocity at the exact trajectory point
``x(t - h)`` (an adaptive solve, ``chains.exact_step``): RMS of ``v_hat - v(t - h)`` against RMS of
``v(t) - v(t - h)``, the change a SideNet that predicted nothing would miss.  The ratio is the
part of the change left unpredicted: 0 is perfect, 1 is no better than ``v`` itself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backbones.gmm import GaussianMixture  # noqa: E402
from solvers.ba.chains import chain_start, exact_step  # noqa: E402
from solvers.ba.checkpoint import load_checkpoint  # noqa: E402
from solvers.ba.config import SideNetConfig  # noqa: E402

OFFSETS = (0.02, 0.0625, 0.1875, 0.25)
BANDS = ((0.0, 0.25), (0.25, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "solvers" / "ba" / "checkpoints" / "gmm64.pt"))
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    gmm = GaussianMixture("gmm64")
    sidenet = load_checkpoint(args.checkpoint, gmm).sidenet
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
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python benchmarks/sidenet_diagnosis.py " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text(
            "# Where the gmm64 SideNet falls short\n\nProduced by\n\n    " + command.strip() + "\n\n"
            "Each cell: the part of the velocity change over the offset h that the SideNet leaves unpredicted, "
            "RMS(v_hat - v(t - h)) / RMS(v(t - h) - v(t)) (0: perfect, 1: no better than v itself), then both "
            f"RMS values; {args.samples} chain starting points as training draws them, split by t.\n\n"
            + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
