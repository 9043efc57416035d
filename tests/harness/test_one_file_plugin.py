"""A solver is one file: tests/plugins/fitted_euler.py needs preparation, reports its own counter,
reads its family's settings and adds a CLI command, and runs through `run`, `report` and the LTE
study with no line of solverbench/ naming it."""
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from solverbench.cli import main

PLUGIN = Path(__file__).parents[1] / "plugins" / "fitted_euler.py"


def write_grid(tmp_path, **extra):
    grid = {"name": "fitted", "plugins": [str(PLUGIN)], "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
            "solvers": [{"name": "fitted-euler", "params": {"damping": [0.0, 0.5]}}, "euler"],
            "solver_settings": {"fitted": {"probes": 4}}, "num_samples": 16,
            "reference": {"rtol": 1e-7, "atol": 1e-7}, **extra}
    path = tmp_path / f"{grid['name']}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_the_plugin_solver_runs_through_run_and_report(tmp_path, capsys):
    grid = write_grid(tmp_path, nfe=[2, 4])
    assert main(["run", str(grid), "--results", str(tmp_path / "results"), "--no-progress"]) == 0
    rows = pd.read_parquet(tmp_path / "results" / "fitted" / "results.parquet").set_index(["solver_label", "nfe"])
    assert (rows["status"] == "ok").all()
    # its counter and its row field are columns; the harness knows nothing of them
    assert rows.loc[("fitted-euler", 4), "fitted_steps"] == 4 and rows.loc[("fitted-euler", 2), "fitted_steps"] == 2
    assert rows.loc[("fitted-euler", 4), "fitted_scale"] > 0 and pd.isna(rows.loc[("euler", 4), "fitted_scale"])
    # damping 0 is plain Euler, to the bit; the fitted scalar changes the other
    assert rows.loc[("fitted-euler", 4), "trajectory_error"] == rows.loc[("euler", 4), "trajectory_error"]
    assert rows.loc[("fitted-euler(damping=0.5)", 4), "trajectory_error"] != rows.loc[("euler", 4), "trajectory_error"]
    assert len(list((tmp_path / "results" / ".cache" / "fitted").glob("*.json"))) == 1  # prepared once, cached
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports")]) == 0
    table = (tmp_path / "reports" / "fitted" / "table1.md").read_text()
    assert "fitted-euler(damping=0.5)" in table


def test_the_plugin_solver_runs_through_the_lte_study(tmp_path):
    grid = write_grid(tmp_path, name="fitted-lte", kind="lte", dtype="float64",
                      lte={"step_sizes": [0.1, 0.05, 0.025], "start_times": [0.6]})
    assert main(["run", str(grid), "--results", str(tmp_path / "results"), "--no-progress"]) == 0
    rows = pd.read_parquet(tmp_path / "results" / "fitted-lte" / "results.parquet")
    assert (rows["status"] == "ok").all() and set(rows["solver"]) == {"fitted-euler", "euler"}
    assert (rows.loc[rows["solver"] == "fitted-euler", "fitted_scale"] > 0).all()


def test_the_plugin_family_settings_are_checked_while_the_grid_is_read(tmp_path, capsys):
    grid = write_grid(tmp_path, nfe=[2], solver_settings={"fitted": {"probe": 4}})
    assert main(["run", str(grid), "--results", str(tmp_path / "results")]) == 2
    assert "grid key 'solver_settings.fitted'" in capsys.readouterr().err


def test_the_plugin_adds_a_command(capsys):
    assert main(["--plugin", str(PLUGIN), "fit-scale", "gmm", "--probes", "4"]) == 0
    assert re.match(r"fitted-euler scale of gmm: \d", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["--plugin", str(PLUGIN), "--help"])
    assert "fit-scale" in capsys.readouterr().out


def test_no_line_of_the_harness_names_the_plugin():
    harness = Path(__file__).resolve().parents[2] / "solverbench"
    assert not [p for p in harness.rglob("*.py")
                if re.search(r"fitted-euler|fitted_(steps|scale)|fit-scale|FittedEuler", p.read_text())]
