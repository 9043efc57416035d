"""Acceptance check of the ``digits`` backbone: do its samples look like the digits requested?

    python benchmarks/digits_acceptance.py [--samples 1000] [--nfe 200] [--cfg-scale 2] [--threshold 0.9]

Draws balanced class-conditional samples with ``euler`` at NFE 200 and moderate
classifier-free guidance, and has the project's digits classifier label them; passes
(exit status 0) when at least ``--threshold`` of them get their requested label.
"""
from __future__ import annotations

import argparse
import time

from backbones.digits.acceptance import class_accuracy
from backbones.digits.backbone import DigitsFlow
from backbones.digits.features import DigitsClassifierFeatures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="digits flow checkpoint (default: the shipped one)")
    parser.add_argument("--classifier", default=None, help="digits classifier checkpoint (default: the shipped one)")
    parser.add_argument("--solver", default="euler")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--nfe", type=int, default=200)
    parser.add_argument("--cfg-scale", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    accuracy = class_accuracy(DigitsFlow(args.checkpoint), DigitsClassifierFeatures(args.classifier),
                              num_samples=args.samples, nfe=args.nfe, cfg_scale=args.cfg_scale,
                              solver=args.solver, seed=args.seed)
    verdict = "PASS" if accuracy.overall >= args.threshold else "FAIL"
    print(f"digits acceptance ({args.solver}, NFE {accuracy.nfe}, CFG {args.cfg_scale}, seed {args.seed}): {accuracy}")
    print(f"{verdict}: threshold {args.threshold} ({time.perf_counter() - start:.0f} s)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
