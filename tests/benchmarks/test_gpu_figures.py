"""benchmarks/gpu_figures.py, the script of the GPU figures, runs on the CPU at --size tiny."""
from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_figures.py"


def run(tmp_path, *options):
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--size", "tiny", "--resolution", "32", "--batch-sizes", "2", "--repeats", "1", "--device", "cpu",
                 "--out", str(tmp_path), *options]) == 0
    table = pd.read_csv(tmp_path / "gpu_figures_cpu.csv")
    return table, (tmp_path / "gpu_figures_cpu.md").read_text()


def test_every_solver_and_sidenet_variant_gets_a_row_and_the_targets_are_checked(tmp_path):
    table, text = run(tmp_path, "--modes", "fp32", "--nfe", "3")
    assert set(table["solver"].str.split("(").str[0]) == {"euler", "flow-dpm", "flow-unipc", "ba", "ba-single"}
    variants = runpy.run_path(str(SCRIPT))["VARIANTS"]
    assert set(table.loc[table["solver"].str.startswith("ba"), "variant"]) == set(variants)
    assert (table["nfe"] == 3).all() and (table["images_per_second"] > 0).all()
    assert (table.loc[table["solver"] == "euler", "sidenet_share"] == 0).all()
    assert (table.loc[table["solver"].str.startswith("ba"), "sidenet_share"] > 0).all()
    assert "python benchmarks/gpu_figures.py --size tiny" in text and "x euler's wall time (target <= 1.05" in text


@pytest.mark.slow
def test_the_bf16_compiled_mode_runs_on_the_cpu(tmp_path):
    table, text = run(tmp_path, "--modes", "bf16-compiled", "--variants", "project", "--nfe", "3")
    assert (table["mode"] == "bf16-compiled").all()
    assert "euler, bf16-compiled, batch 2" in text
