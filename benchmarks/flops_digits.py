"""FLOPs and peak memory per sample on digits: the backbone's FLOPs per NFE and what BA's shipped SideNet
adds.

    python benchmarks/flops_digits.py

Counts one sample's solve with ``solverbench.flops.solve_cost`` (torch's flop counter: matrix
products and convolutions) for Euler, BA with the shipped SideNet and BA with the SideNet off, at
NFE 5 and 10, without guidance and at CFG 2 (on (0, 1]).  A few seconds on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import solverbench as sb
from backbones.digits.backbone import DigitsFlow
from solverbench.flops import solve_cost
from solverbench.noise import labels_for, noise_for

SIDENET = Path(__file__).resolve().parents[1] / "solvers" / "ba" / "checkpoints" / "digits.pt"


def main() -> None:
    backbone = DigitsFlow()
    noise, labels = noise_for(0, [0], backbone.sample_shape), labels_for(0, [0], backbone.num_classes)
    ba = sb.get_solver("ba", checkpoint=str(SIDENET))
    ba.prepare(backbone)
    solvers = {"euler": sb.get_solver("euler"), "ba (shipped SideNet)": ba,
               "ba (SideNet off)": sb.get_solver("ba", sidenet="off")}
    print(f"{'solver':<22} {'NFE':>4} {'CFG':>4} {'backbone/NFE':>14} {'backbone':>14} {'solver adds':>14} "
          f"{'adds/backbone':>14} {'peak memory':>12}")
    for scale in (1.0, 2.0):
        for nfe in (5, 10):
            for name, solver in solvers.items():
                counted = solve_cost(backbone, solver, noise, labels, nfe=nfe, guidance=sb.Guidance(scale))
                ratio = counted.solver_per_sample / counted.backbone_per_sample
                print(f"{name:<22} {nfe:>4} {scale:>4g} {counted.backbone_per_nfe / 1e6:>12.2f} M "
                      f"{counted.backbone_per_sample / 1e6:>12.1f} M {counted.solver_per_sample / 1e6:>12.1f} M "
                      f"{ratio:>14.2f} {counted.peak_memory_per_sample / 1024:>9.1f} KiB")


if __name__ == "__main__":
    main()
