"""Where one SideNet call spends its time: torch.profiler over the batched call of a BA step.

    python benchmarks/sidenet_profile.py                                   # SiT-XL/2 latents, CUDA if available
    python benchmarks/sidenet_profile.py --width 32 128 --batch-size 64 --offsets 2
    python benchmarks/sidenet_profile.py --shape 1 8 8 --classes 10 --device cpu   # the digits SideNet's shape
    python benchmarks/sidenet_profile.py --shape 64 --classes 10 --width 128 --batch-size 1024 --device cpu  # gmm64's

Builds a SideNet of the default architecture (or each ``--width``) for samples of ``--shape``
(an image SideNet for ``C H W``, a vector one for ``D``; by default SiT-XL/2 at 256 px: latents
4 x 32 x 32, 1000 classes), and times ``velocities_at`` for ``--batch-size`` samples at
``--offsets`` node offsets (a BA step asks for both CFG branches and two nodes at once: batch x 2 x
2 rows).  Prints the mean time of
a call and the profiler's operators by their own device time (CPU time on a CPU).  The
weights are random: time does not depend on them.
"""
from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import torch

from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import sidenet_for


class Samples(NamedTuple):
    """What a SideNet is built for: the backbone's sample shape and labels (the null label after the classes)."""
    sample_shape: tuple
    num_classes: int
    null_label: int


def sidenet(shape: list[int], classes: int, width: int) -> torch.nn.Module:
    net = sidenet_for(Samples(tuple(shape), classes, classes), SideNetConfig(width=width).network)
    for p in net.parameters():  # not zero: every layer does its work
        torch.nn.init.normal_(p, std=0.02)
    return net.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs="+", default=[4, 32, 32],
                        help="C H W, or D for vectors (default: SiT latents)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--width", type=int, nargs="+", default=[SideNetConfig.width])
    parser.add_argument("--batch-size", type=int, default=128, help="samples per call (with CFG: both branches)")
    parser.add_argument("--offsets", type=int, default=2, help="node offsets per call (Lobatto-4: 2)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rows", type=int, default=12, help="operators listed")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 3):
        parser.error(f"--shape takes C H W (images) or D (vectors), not {len(args.shape)} numbers")
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, *args.shape, generator=g).to(device)
    v = torch.randn(args.batch_size, *args.shape, generator=g).to(device)
    y = torch.randint(args.classes, (args.batch_size,), generator=g).to(device)
    offsets = [0.05 * (k + 1) for k in range(args.offsets)]
    name = torch.cuda.get_device_name(device) if on_cuda else "CPU"
    print(f"SideNet call: {args.batch_size} samples of {tuple(args.shape)} x {args.offsets} offsets, float32, {name}, "
          f"torch {torch.__version__}")
    for width in args.width:
        net = sidenet(args.shape, args.classes, width).to(device)

        def call():
            net.velocities_at(x, v, 0.5, offsets, y)

        with torch.no_grad():
            for _ in range(3):
                call()
            if on_cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.repeats):
                call()
            if on_cuda:
                torch.cuda.synchronize(device)
            seconds = (time.perf_counter() - start) / args.repeats
            activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_cuda
                                                                  else [])
            with torch.profiler.profile(activities=activities) as prof:
                call()
                if on_cuda:
                    torch.cuda.synchronize(device)
        params = sum(p.numel() for p in net.parameters())
        print(f"\nwidth {width} ({params / 1e6:.2f}M parameters): {1000 * seconds:.2f} ms per call")
        sort = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
