"""CPU time of the sliced-Wasserstein metric's point estimate and of one bootstrap draw, the plain
implementation beside the one the metric uses, at 1k, 16k and 64k samples of 64-D points.  The plain code is
kept in tests/benchmarks/test_sliced_wasserstein_speed.py, which pins the two to the same numbers (to float64
rounding).

    OMP_NUM_THREADS=1 python benchmarks/sliced_wasserstein_speed.py [--samples 1024 16384 65536]

The plain draw gathers the draw's samples and sorts each direction's projections; the metric takes the counts
of each sample in every draw at once and makes one compiled pass per direction and draw over the
projections sorted once (``solverbench.metrics.distribution.resampled_from_sorted``; the first call, which
compiles the pass where numba has not cached it, is not timed).
"""
from __future__ import annotations

import argparse
import runpy
import time
from pathlib import Path

import numpy as np
import torch

from solverbench.metrics.distribution import sliced_wasserstein2, sliced_wasserstein_resampled

PLAIN = Path(__file__).resolve().parents[1] / "tests" / "benchmarks" / "test_sliced_wasserstein_speed.py"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[1024, 16384, 65536], help="points per set")
    parser.add_argument("--draws", type=int, default=20, help="bootstrap draws timed (default 20)")
    args = parser.parse_args(argv)
    plain = runpy.run_path(str(PLAIN))
    g = torch.Generator().manual_seed(0)
    for n in args.samples:
        x, y = (torch.randn(n, 64, generator=g, dtype=torch.float64) for _ in range(2))
        draws = [torch.randint(n, (n,), generator=g) for _ in range(args.draws)]
        versions = {"plain": (plain["reference_sliced_wasserstein2"], plain["reference_sliced_wasserstein_resampled"],
                              lambda idx: idx),
                    "metric": (sliced_wasserstein2, sliced_wasserstein_resampled,
                               lambda idx: np.bincount(idx.numpy(), minlength=n).astype(np.uint8))}
        for name, (point, resampled, draw) in versions.items():
            start = time.process_time()
            value = point(x, y)
            point_cpu = time.process_time() - start
            start = time.process_time()
            statistic = resampled(x, y, 0)
            setup_cpu = time.process_time() - start
            given = [draw(d) for d in draws]  # the counts of a draw are made once per run, not timed
            if name == "metric":
                given = np.stack(given)
                statistic(given[:1])  # compiled (or read from numba's cache) on the first call
                start = time.process_time()
                first = statistic(given)[0]
            else:
                start = time.process_time()
                first = [statistic(d) for d in given][0]
            draw_cpu = (time.process_time() - start) / len(draws)
            print(f"n={n} {name:>6}: point estimate {point_cpu:.3f} s CPU, bootstrap set-up {setup_cpu:.3f} s, "
                  f"one bootstrap draw {1e3 * draw_cpu:.2f} ms CPU (SW {value:.6f}, first draw {first:.6f})",
                  flush=True)


if __name__ == "__main__":
    main()
