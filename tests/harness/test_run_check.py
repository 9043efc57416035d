"""``run GRID --check``: the grid and its results folder checked, the cells counted, nothing run or written."""
from __future__ import annotations

from solverbench.cli import main

GRID = """\
name: checked
backbones: [{name: gmm, params: {preset: gmm2d}}]
solvers: [euler, heun]
nfe: [2]
num_samples: 8
metrics: [trajectory_error]
"""


def test_check_counts_the_cells_done_and_to_run_and_runs_nothing(tmp_path, capsys):
    grid, results = tmp_path / "g.yaml", tmp_path / "r"
    grid.write_text(GRID)
    assert main(["run", str(grid), "--results", str(results), "--check"]) == 0
    said = capsys.readouterr().out
    assert "2 cells, 0 done in" in said and "2 would run" in said and not results.exists()
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 0
    written = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", str(grid), "--results", str(results), "--check"]) == 0
    said = capsys.readouterr().out
    assert "2 cells, 2 done in" in said and "0 would run" in said
    assert main(["run", str(grid), "--results", str(results), "--check", "--force"]) == 0
    assert "2 done in" in (said := capsys.readouterr().out) and "2 would run" in said
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()} == written


def test_check_refuses_what_the_run_would_refuse_in_one_line(tmp_path, capsys):
    grid, results = tmp_path / "g.yaml", tmp_path / "r"
    grid.write_text(GRID)
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 0
    other = tmp_path / "other.yaml"  # the same name, other contents: the folder is not its own
    other.write_text(GRID.replace("nfe: [2]", "nfe: [3]"))
    capsys.readouterr()
    assert main(["run", str(other), "--results", str(results), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("solverbench run: error: results folder") and "--force" in err and "\n" not in err
    assert main(["run", str(other), "--results", str(results), "--check", "--force"]) == 0
    assert "2 cells, 0 done in" in capsys.readouterr().out
    grid.write_text(GRID + "bogus: 1\n")
    assert main(["run", str(grid), "--results", str(results), "--check"]) == 2
    assert "grid key 'bogus'" in capsys.readouterr().err
