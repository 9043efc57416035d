"""`run GRID --workers N`: N worker processes share a grid's cells; the rows are those of one process, a
worker that dies neither hangs the run nor loses a cell, and a meaningless N is one line before any work."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from solverbench.cli import main
from solverbench.results_compare import compare_stores

from dying_solvers import write_plugin  # tests/harness/

ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin file of workers-euler and workers-heun, one for the module."""
    return write_plugin(tmp_path_factory.mktemp("plugin"), "workers")


@pytest.fixture
def grid(tmp_path, plugin):
    grid = {"name": "split", "plugins": [str(plugin)], "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
            "solvers": ["workers-euler", "workers-heun"], "nfe": [2, 4], "num_samples": 32,
            "metrics": ["trajectory_error"], "save_samples": 0, "reference": {"rtol": 1e-6, "atol": 1e-6}}
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def run(grid, results, *options):
    return main(["run", str(grid), "--results", str(results), "--no-progress", *options])


def test_two_workers_share_the_cells_and_write_the_rows_of_one_process(tmp_path, grid, monkeypatch, capsys):
    assert run(grid, tmp_path / "one") == 0
    (tmp_path / "barrier").mkdir()
    monkeypatch.setenv("SOLVERBENCH_TEST_WORKERS", f"barrier:{tmp_path / 'barrier'}")
    capsys.readouterr()
    assert main(["run", str(grid), "--results", str(tmp_path / "two"), "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    assert "4 cells in" in err and "4 ok (4 run now)" in err and "4 rows in" in out
    # one progress line per cell of the grid (stderr is not a terminal here), counting the whole grid
    lines = [line for line in err.splitlines() if line.startswith("split [")]
    assert sorted(line.split("]")[0] for line in lines) == [f"split [{n}/4" for n in range(1, 5)]
    assert all(line.endswith(" s") and ": ok, " in line for line in lines)
    comparison = compare_stores(tmp_path / "one", tmp_path / "two")
    assert comparison.identical, comparison.differences
    assert "trajectory_error" in comparison.strict_columns
    rows = pd.read_parquet(tmp_path / "two" / "split" / "results.parquet")
    assert len(rows) == 4 and rows["cell_id"].is_unique and (rows["status"] == "ok").all()
    pids = set(rows["pid"])
    assert len(pids) == 2 and os.getpid() not in pids  # both workers ran cells; this process none
    # a second run finds every cell done and starts no worker
    assert run(grid, tmp_path / "two", "--workers", "2") == 0
    assert "4 of 4 cells already done" in capsys.readouterr().err


@pytest.mark.slow  # two worker processes: about 4 s on 2 cores
def test_a_killed_worker_is_reported_and_the_other_worker_takes_its_cell(tmp_path, grid, monkeypatch, capsys):
    (tmp_path / "kill").mkdir()
    monkeypatch.setenv("SOLVERBENCH_TEST_WORKERS", f"kill-one:{tmp_path / 'kill'}")
    assert run(grid, tmp_path / "results", "--workers", "2") == 0
    err = capsys.readouterr().err
    killed = [line for line in err.splitlines() if "was killed by SIGKILL" in line]
    assert len(killed) == 1 and killed[0].startswith("worker ")
    rows = pd.read_parquet(tmp_path / "results" / "split" / "results.parquet")
    assert len(rows) == 4 and (rows["status"] == "ok").all() and rows["pid"].nunique() == 1


@pytest.mark.slow  # two worker processes: about 2 s on 2 cores
def test_workers_that_all_die_leave_their_cells_to_the_next_run(tmp_path, grid, monkeypatch, capsys):
    monkeypatch.setenv("SOLVERBENCH_TEST_WORKERS", "kill-all")
    assert run(grid, tmp_path / "results", "--workers", "2") == 1
    err = capsys.readouterr().err
    assert err.count("was killed by SIGKILL") == 2
    assert "4 cell(s) have no row: the workers ended without them; run the same command again to run them" in err
    monkeypatch.delenv("SOLVERBENCH_TEST_WORKERS")
    assert run(grid, tmp_path / "results") == 0
    assert len(pd.read_parquet(tmp_path / "results" / "split" / "results.parquet")) == 4


@pytest.mark.parametrize("options, message", [
    (["--workers", "0"], "--workers 0: give at least 1 worker"),
    (["--workers", "5"], "--workers 5: the grid has only 4 cells; give at most 4 workers"),
    (["--workers", "2", "--force"], "--workers with --force: each worker would redo every cell"),
    (["--workers", "5", "--check"], "--workers 5: the grid has only 4 cells"),
])
def test_a_meaningless_number_of_workers_is_one_line_before_any_work(tmp_path, grid, capsys, options, message):
    assert run(grid, tmp_path / "results", *options) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("solverbench run: error: ") and message in err
    assert not (tmp_path / "results" / "split" / "results.parquet").exists()


def test_workers_under_torchrun_are_refused(monkeypatch):
    from solverbench import distributed
    from solverbench.cli import refuse_workers

    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    with pytest.raises(ValueError, match="^--workers starts its own processes: run it without torchrun"):
        refuse_workers(argparse.Namespace(workers=2, force=False))


@pytest.mark.slow  # two gloo processes: about 10 s on 2 cores
def test_workers_under_a_real_torchrun_are_one_line_and_exit_status_2(tmp_path, grid):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(launcher + ["-m", "solverbench", "run", str(grid), "--results", str(tmp_path / "results"),
                                      "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    assert done.stderr.count("solverbench run: error: --workers starts its own processes") == 1
