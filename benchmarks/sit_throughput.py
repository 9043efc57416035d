"""Sampling throughput of SiT with every registered solver: wall time per batch and per NFE.

    python benchmarks/sit_throughput.py                     # SiT-XL/2, 256 px, batch 64, random weights
    python benchmarks/sit_throughput.py --tf32 --cfg-scale 4 --csv sit.csv
    python benchmarks/sit_throughput.py --solvers ba --nfe 10 --sidenet-width 32 64 128   # SideNet cost by width
    python benchmarks/sit_throughput.py --size tiny --resolution 32 --batch-size 4 --nfe 5   # CPU smoke run

Runs on CUDA when available (else the CPU).  Each solver samples one batch of random
noise and labels through ``solverbench.sample`` at every NFE budget, after one untimed
warm-up run; each time is the median of ``--repeats`` runs.  The table gives the wall
time of the batch, the time per NFE, samples per second, and the part of the wall time
spent in the SideNet (timed apart by the solver: its counter ``sidenet_time`` in ``SampleResult.counters``).
Adaptive solvers (no NFE budget) and analysis-only tools are not samplers and are left
out, with a line saying so.  SideNet solvers get an untrained SideNet of their default
architecture, or of each ``--sidenet-width`` (one training iteration at batch 2, in a
temporary cache): what they cost, not what they are worth.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile

import pandas as pd
import torch

import solverbench as sb
from backbones.sit.backbone import SiTBackbone

UNTRAINED_SIDENET = {"iterations": 1, "batch_size": 2}


def uses_sidenet(solver) -> bool:
    """A BA solver (the family whose settings are SideNet settings) with its SideNet on."""
    return getattr(solver, "family", None) == "ba" and getattr(solver, "sidenet_on", True)


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


def timed(backbone, solver, noise, labels, nfe: int, cfg_scale: float, repeats: int) -> dict:
    """Median wall time and SideNet time of ``repeats`` samplings of one batch."""
    runs = [sb.sample(backbone, solver, noise, labels, nfe=nfe, cfg_scale=cfg_scale) for _ in range(repeats)]
    return {"nfe": runs[0].nfe, "seconds": statistics.median(r.wall_time for r in runs),
            "sidenet_seconds": statistics.median(r.counters.get("sidenet_time", 0.0) for r in runs),
            "sidenet_calls": runs[0].counters.get("sidenet_calls", 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="XL", help="S, B, L, XL or tiny (default: XL)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 7, 10, 15])
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="> 1 doubles the batch on the guided steps")
    parser.add_argument("--solvers", nargs="*", default=None, help="default: every registered sampler")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the median is reported")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix products (as REPA's sampler does)")
    parser.add_argument("--sidenet-width", type=int, nargs="+", default=None,
                        help="time SideNet solvers once per SideNet width (default: the default architecture)")
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file (after every solver)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    device = torch.device(args.device)
    backbone = SiTBackbone(size=args.size, resolution=args.resolution, random_weights=True).to(device)
    solvers, left_out = runnable_solvers(args.solvers or sb.SOLVERS.names())
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(args.batch_size, *backbone.sample_shape, generator=g).to(device)
    labels = torch.randint(backbone.num_classes, (args.batch_size,), generator=g).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    backbone_params = sum(p.numel() for p in backbone.parameters())
    precision = "float32, TF32 matmuls" if args.tf32 else "float32"
    print(f"SiT-{args.size}/2 ({backbone_params / 1e6:.1f}M parameters, random weights), {args.resolution} px, "
          f"latents {tuple(backbone.sample_shape)}, batch {args.batch_size}, CFG {args.cfg_scale}, {precision}, "
          f"{name}, torch {torch.__version__}; median of {args.repeats} runs")
    for solver_name, why in left_out.items():
        print(f"  left out: {solver_name}: {why}")
    print(f"{'solver':<34}{'NFE':>5}{'seconds':>10}{'ms/NFE':>10}{'samples/s':>11}{'SideNet s':>11}{'share':>7}")
    rows = []
    runs = [(name, width) for name in solvers
            for width in ((args.sidenet_width or [None]) if uses_sidenet(sb.SOLVERS.get(name)) else [None])]
    with tempfile.TemporaryDirectory() as cache:
        for solver_name, width in runs:
            solver = sb.get_solver(solver_name)
            if uses_sidenet(solver):
                settings = UNTRAINED_SIDENET | ({"width": width} if width else {})
                solver.prepare(backbone, sb.PrepareContext(cache_dir=cache, settings=settings, device=str(device),
                                                           progress=False))
                count = solver.loaded.sidenet.parameter_count()
                print(f"  {solver.label()}: SideNet width {solver.loaded.config.width}, {count / 1e6:.2f}M "
                      f"parameters ({100 * count / backbone_params:.2f}% of the backbone)")
            sb.sample(backbone, solver, noise, labels, nfe=min(args.nfe), cfg_scale=args.cfg_scale)  # warm-up
            for nfe in args.nfe:
                row = {"solver": solver.label(), **timed(backbone, solver, noise, labels, nfe, args.cfg_scale,
                                                         args.repeats)}
                if uses_sidenet(solver):
                    row.update(sidenet_width=solver.loaded.config.width,
                               sidenet_params=solver.loaded.sidenet.parameter_count())
                row.update(ms_per_nfe=1000 * row["seconds"] / row["nfe"],
                           samples_per_second=args.batch_size / row["seconds"])
                rows.append(row)
                shown = row["solver"] + (f" [width {width}]" if width else "")
                print(f"{shown:<34}{row['nfe']:>5}{row['seconds']:>10.3f}{row['ms_per_nfe']:>10.1f}"
                      f"{row['samples_per_second']:>11.1f}{row['sidenet_seconds']:>11.3f}"
                      f"{100 * row['sidenet_seconds'] / row['seconds']:>6.1f}%")
            if args.csv:  # after every solver (and width), so a run cut short keeps what it measured
                pd.DataFrame(rows).assign(backbone=f"SiT-{args.size}/2", batch_size=args.batch_size,
                                          cfg_scale=args.cfg_scale, tf32=args.tf32, device_name=name,
                                          torch=torch.__version__).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
