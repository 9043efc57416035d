"""benchmarks/adaptive_intervals.py at a tiny size: every schedule's row, the paired differences, the costs, the
verdict and the profile figure."""
from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "adaptive_intervals.py"


@pytest.mark.slow
def test_adaptive_intervals_compares_the_adaptive_grid_with_every_fixed_one_on_the_same_samples(tmp_path):
    bench = runpy.run_path(str(SCRIPT), run_name="adaptive_intervals")
    assert bench["main"](["--backbones", "toy2d", "--samples", "8", "--results", str(tmp_path / "results"),
                          "--out", str(tmp_path)]) == 0
    rows = pd.read_parquet(tmp_path / "results" / "adaptive_toy2d" / "results.parquet")
    assert len(rows) == 2 * 4 * 5 and (rows["status"] == "ok").all() and (rows["nfe_measured"] == rows["nfe"]).all()
    page = (tmp_path / "adaptive_intervals.md").read_text()
    assert "python benchmarks/adaptive_intervals.py --samples 8 --backbones toy2d" in page
    for grid in ("uniform", "shifted", "gits", "ld3"):
        assert f"| {grid} |" in page
    assert page.count("comparisons") >= 2 and "## Verdict" in page
    assert (tmp_path / "adaptive_intervals_profile.png").stat().st_size > 10_000
