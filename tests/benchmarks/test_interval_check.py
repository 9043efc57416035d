"""benchmarks/interval_check.py at a tiny size: one cell's standard errors, and the paired differences'."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "interval_check.py"


def test_interval_check_sets_each_standard_error_beside_the_spread_over_independent_sets():
    bench = runpy.run_path(str(SCRIPT))
    lines: list[str] = []
    args = bench["parse"](["--sets", "2", "--bootstrapped", "2", "--gmm-samples", "64", "--digits-samples", "32",
                           "--digits-reference", "160", "--resamples", "20"])
    out = bench["run"](args, lines.append)
    assert [line.split(":")[0] for line in lines] == [
        "FID, digits, 32 samples", "sliced Wasserstein, gmm64, 64 samples",
        "trajectory error, gmm64, 64 samples, euler - heun at NFE 4 from the same noise",
        "sliced Wasserstein, gmm64, 64 samples, euler - heun at NFE 4 from the same noise",
        "FID, digits, 32 samples, euler - heun at NFE 4 from the same noise"]
    for name in ("FID", "sliced Wasserstein"):
        assert len(out[name]["values"]) == 2 and len(out[name]["se"]) == 2
    for name, check in out["paired"].items():
        assert len(check["differences"]) == 2 and math.isfinite(check["sd"]), name
        assert len(check["paired_se"]) == len(check["unpaired_se"]) == 2
        assert all(se > 0 and math.isfinite(se) for se in check["paired_se"] + check["unpaired_se"]), name
    for name in ("trajectory error", "sliced Wasserstein"):  # Euler and Heun on gmm64 move together sample by sample:
        check = out["paired"][name]  # from the same draws, the shared noise cancels from the difference
        assert all(paired < unpaired for paired, unpaired in zip(check["paired_se"], check["unpaired_se"])), name
