"""benchmarks/sweep_time.py: a run's wall time split by phase and by metric, for two checkouts side by side."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "sweep_time.py"


@pytest.mark.slow  # two fresh processes, each a small sweep: about 15 s on 2 cores
def test_the_phases_split_each_run_and_each_metric_has_its_own(tmp_path):
    bench = runpy.run_path(str(SCRIPT))
    out = tmp_path / "time.txt"
    args = bench["parse"](["--no-quick", "--samples", "128", "--before", str(ROOT), "--out", str(out)])
    lines: list[str] = []
    measured = bench["run"](args, lines.append)
    runs = measured["samples:128"]
    assert list(runs) == ["before", "now"]  # this checkout as "before": the same code in another process
    for run in runs.values():
        phases = run["phase_wall"]
        assert {"metric trajectory_error", "metric sliced_wasserstein"} <= set(phases)
        assert phases["reference"] > 0 and phases["sampling"] > 0 and phases["startup"] > 0
        # exclusive phases: together they are the run's wall time, start-up included
        assert math.isclose(sum(phases.values()), run["wall"], rel_tol=0.02, abs_tol=0.05)
        assert run["cells"] == run["ok"] == 8
    text = "\n".join(lines)
    assert text.startswith("$ python benchmarks/sweep_time.py --no-quick --samples 128 --before")
    assert "trajectory_error" in text and "metrics' share of the wall time" in text
