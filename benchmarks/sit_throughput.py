"""Sampling throughput of SiT with every registered solver: wall time per batch and per NFE.

    python benchmarks/sit_throughput.py                     # SiT-XL/2, 256 px, batch 64, random weights
    python benchmarks/sit_throughput.py --size tiny --resolution 32 --batch-size 4 --nfe 5   # CPU smoke run

Runs on CUDA when available (else the CPU).  Each solver samples one batch of random
noise and labels through ``solverbench.sample`` at every NFE budget (after one untimed
warm-up run); the table gives the wall time, the time per NFE and samples per second.
Adaptive solvers (no NFE budget) and analysis-only tools are not samplers and are left
out, with a line saying so.  SideNet solvers get an untrained SideNet of their default
architecture (one training iteration at batch 2, in a temporary cache): what they cost,
not what they are worth.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

import solverbench as sb
from backbones.sit.backbone import SiTBackbone

UNTRAINED_SIDENET = {"iterations": 1, "batch_size": 2}


def runnable_solvers(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The samplers among ``names`` and, for the others, why they are left out."""
    keep, left_out = [], {}
    for name in names:
        cls = sb.SOLVERS.get(name)
        if cls.adaptive:
            left_out[name] = "adaptive (chooses its own NFE)"
        elif cls.analysis_only:
            left_out[name] = "analysis tool, not a sampler"
        else:
            keep.append(name)
    return keep, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="XL", help="S, B, L, XL or tiny (default: XL)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 7, 10, 15])
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="> 1 doubles the batch on the guided steps")
    parser.add_argument("--solvers", nargs="*", default=None, help="default: every registered sampler")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    backbone = SiTBackbone(size=args.size, resolution=args.resolution, random_weights=True).to(device)
    solvers, left_out = runnable_solvers(args.solvers or sb.SOLVERS.names())
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(args.batch_size, *backbone.sample_shape, generator=g).to(device)
    labels = torch.randint(backbone.num_classes, (args.batch_size,), generator=g).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    params = sum(p.numel() for p in backbone.parameters()) / 1e6
    print(f"SiT-{args.size}/2 ({params:.1f}M parameters, random weights), {args.resolution} px, latents "
          f"{tuple(backbone.sample_shape)}, batch {args.batch_size}, CFG {args.cfg_scale}, float32, {name}")
    for solver_name, why in left_out.items():
        print(f"  left out: {solver_name}: {why}")
    print(f"{'solver':<34}{'NFE':>5}{'seconds':>10}{'ms/NFE':>10}{'samples/s':>11}")
    with tempfile.TemporaryDirectory() as cache:
        for solver_name in solvers:
            solver = sb.get_solver(solver_name)
            if solver.uses_sidenet:
                solver.prepare(backbone, cache_dir=cache, settings=UNTRAINED_SIDENET, device=str(device),
                               progress=False)
            sb.sample(backbone, solver, noise, labels, nfe=min(args.nfe), cfg_scale=args.cfg_scale)  # warm-up
            for nfe in args.nfe:
                result = sb.sample(backbone, solver, noise, labels, nfe=nfe, cfg_scale=args.cfg_scale)
                print(f"{solver.label():<34}{result.nfe:>5}{result.wall_time:>10.3f}"
                      f"{1000 * result.wall_time / result.nfe:>10.1f}{args.batch_size / result.wall_time:>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
