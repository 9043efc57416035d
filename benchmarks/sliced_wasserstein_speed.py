"""CPU time of the sliced-Wasserstein metric's point estimate and of one bootstrap draw, before and after
its in-place rewrite, at 16k and 64k samples of 64-D points.  The earlier code is kept in
tests/benchmarks/test_sliced_wasserstein_speed.py, which pins the two to the same bits.

    OMP_NUM_THREADS=1 python benchmarks/sliced_wasserstein_speed.py
"""
from __future__ import annotations

import runpy
import time
from pathlib import Path

import torch

from solverbench.metrics.distribution import sliced_wasserstein2, sliced_wasserstein_resampled

EARLIER = Path(__file__).resolve().parents[1] / "tests" / "test_sliced_wasserstein_speed.py"


def main() -> None:
    earlier = runpy.run_path(str(EARLIER))
    versions = {"earlier": (earlier["reference_sliced_wasserstein2"], earlier["reference_sliced_wasserstein_resampled"]),
                "now": (sliced_wasserstein2, sliced_wasserstein_resampled)}
    g = torch.Generator().manual_seed(0)
    for n in (16384, 65536):
        x, y = (torch.randn(n, 64, generator=g, dtype=torch.float64) for _ in range(2))
        draws = [torch.randint(n, (n,), generator=g) for _ in range(10)]
        for name, (point, resampled) in versions.items():
            start = time.process_time()
            value = point(x, y)
            point_cpu = time.process_time() - start
            statistic = resampled(x, y, 0)
            start = time.process_time()
            first = [statistic(d) for d in draws][0]
            draw_cpu = (time.process_time() - start) / len(draws)
            print(f"n={n} {name:>7}: point estimate {point_cpu:.3f} s CPU, one bootstrap draw {draw_cpu:.3f} s CPU "
                  f"(SW {value:.6f}, first draw {first:.6f})", flush=True)


if __name__ == "__main__":
    main()
