"""States a results folder can be found in, each one line or handled, never a traceback: a parquet table that is
not solverbench's, a folder the run may not write, the temporary files and claim files a killed run leaves."""
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml

from solverbench.cli import main
from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report import write_report
from solverbench.results import CLAIMS, DamagedResultsError, ResultsTable
from solverbench.studies.sweep import Sweep

GRID = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "solvers": ["euler", "heun"],
        "nfe": [2, 4], "num_samples": 8, "metrics": ["trajectory_error"], "reference": {"rtol": 1e-6, "atol": 1e-6}}


def grid_file(tmp_path, **changes):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({**GRID, **changes}))
    return path


def run(tmp_path, *options, **changes):
    return main(["run", str(grid_file(tmp_path, **changes)), "--results", str(tmp_path / "results"), "--no-progress",
                 *options])


def one_error_line(capsys, command="run"):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"solverbench {command}: error: "), err
    return err


def no_cell_runs(monkeypatch):
    monkeypatch.setattr(Sweep, "run_cell", lambda *args: pytest.fail("a cell ran"))


# -- a parquet table that is not a results table ----------------------------------------------------------------

def test_a_foreign_parquet_table_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    table = tmp_path / "results" / "g" / "results.parquet"
    table.parent.mkdir(parents=True)
    pd.DataFrame({"a": [1]}).to_parquet(table)
    no_cell_runs(monkeypatch)
    assert run(tmp_path) == 2
    err = one_error_line(capsys)
    assert str(table) in err and "not a solverbench results table" in err and "columns: a" in err
    assert "move it aside" in err
    with pytest.raises(DamagedResultsError):
        ResultsTable(table.parent)


def test_report_skips_a_foreign_table_with_a_warning_and_renders_the_others(tmp_path, capsys):
    results = tmp_path / "results"
    run_grid(parse_grid({**GRID, "name": "good", "nfe": [2]}), results, progress=False)
    run_grid(parse_grid({**GRID, "name": "grid_only", "nfe": [2]}), results, progress=False)
    (results / "foreign").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(results / "foreign" / "results.parquet")
    pd.DataFrame({"grid": ["grid_only"], "cell_id": ["x"]}).to_parquet(results / "grid_only" / "results.parquet")
    capsys.readouterr()
    index = write_report(results, tmp_path / "reports")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning: skipping a grid" in line]
    assert len(warnings) == 2 and any("foreign" in w for w in warnings) and any("no column status" in w
                                                                                  for w in warnings)
    assert (tmp_path / "reports" / "good" / "table1.md").is_file()
    assert "Skipped, their results table being damaged: foreign, grid_only" in index.read_text()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "again"), "--grid", "foreign"]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()  # no traceback: the grid named, then no results
    assert "not a solverbench results table" in warning and error.startswith("solverbench report: error: no readable")


# -- a folder the run may not write (simulated: this test may run as root, whom permission bits do not stop) ------

def deny_writes_under(monkeypatch, folder):
    """``os.access`` says no write access under ``folder``, as for a user without it (or a read-only mount)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(Path(folder).resolve()):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def snapshot(folder):
    return {str(p): p.stat().st_mtime_ns for p in Path(folder).rglob("*")}


def test_a_read_only_results_folder_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    assert run(tmp_path, nfe=[2]) == 0
    before = snapshot(tmp_path / "results")
    capsys.readouterr()
    deny_writes_under(monkeypatch, tmp_path / "results")
    no_cell_runs(monkeypatch)
    assert run(tmp_path) == 2  # NFE 4 added: two cells to run
    err = one_error_line(capsys)
    assert f"results folder {tmp_path / 'results' / 'g'} is read-only for this process" in err
    assert "2 of 4 cells are still to run" in err and "--results" in err
    assert run(tmp_path, "--force", nfe=[2]) == 2
    assert "--force redoes every one" in one_error_line(capsys)
    assert snapshot(tmp_path / "results") == before


def test_a_complete_grid_in_a_read_only_folder_gives_its_summary_and_writes_nothing(tmp_path, capsys, monkeypatch):
    assert run(tmp_path) == 0
    before = snapshot(tmp_path / "results")
    capsys.readouterr()
    deny_writes_under(monkeypatch, tmp_path / "results")
    no_cell_runs(monkeypatch)
    assert run(tmp_path) == 0
    captured = capsys.readouterr()
    assert "4 cells in" in captured.err and "4 ok (0 run now)" in captured.err and "nothing written" in captured.err
    assert "4 rows in" in captured.out
    assert snapshot(tmp_path / "results") == before


def test_report_reads_a_read_only_results_folder_and_writes_only_its_out_folder(tmp_path, capsys, monkeypatch):
    assert run(tmp_path) == 0
    before = snapshot(tmp_path / "results")
    deny_writes_under(monkeypatch, tmp_path / "results")
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "index.md").is_file()
    assert snapshot(tmp_path / "results") == before


# -- tidy after a kill ---------------------------------------------------------------------------------------------

def test_stale_temporary_files_go_once_a_run_holds_the_lock(tmp_path):
    assert run(tmp_path, nfe=[2]) == 0
    folder = tmp_path / "results" / "g"
    stale = [folder / name for name in (".results.parquet.4242.tmp", ".grid.json.4242.tmp", ".cells.json.4243.tmp")]
    for path in stale:
        path.write_bytes(b"half a file")
    kept = folder / "notes.tmp"  # not a file the store writes
    kept.write_text("mine")
    assert run(tmp_path) == 0
    assert not [path for path in stale if path.exists()] and kept.read_text() == "mine"
    assert len(pd.read_parquet(folder / "results.parquet")) == 4


def test_claim_files_of_finished_cells_are_removed(tmp_path):
    assert run(tmp_path) == 0
    claims = tmp_path / "results" / "g" / CLAIMS
    assert claims.is_dir() and list(claims.iterdir()) == []


def test_a_claim_is_free_once_its_holder_leaves_the_cell_and_a_later_taker_finds_the_cell_done(tmp_path):
    table, other = ResultsTable(tmp_path / "g"), ResultsTable(tmp_path / "g")
    path = tmp_path / "g" / CLAIMS / "a.lock"
    with table.claim("a") as mine:
        assert mine and path.exists()
        with other.claim("a") as theirs:  # held: another run does not get it
            assert not theirs
    assert not path.exists()  # left without a row (as for a cell that raised): free for the next run
    with table.claim("a") as mine:
        assert mine
        table.put({"grid": "g", "cell_id": "a", "status": "ok"})
    assert not path.exists()
    with other.claim("a") as mine:  # a later run takes the claim and finds the cell done
        assert mine and "a" in other.done()


def test_a_run_waiting_on_a_claim_goes_on_when_its_holder_leaves_and_finds_the_cell_done(tmp_path):
    """A run waiting for a cell that another run holds goes on once that run left it, and then finds its row."""
    table = ResultsTable(tmp_path / "g")
    freed = threading.Event()
    seen = {}

    def waiter():
        waiting = ResultsTable(tmp_path / "g")
        waiting.wait_for_claim("a")
        with waiting.claim("a") as mine:
            seen["mine"], seen["done"] = mine, "a" in waiting.done()
        freed.set()

    with table.claim("a") as mine:
        assert mine
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not freed.wait(0.3)  # it waits on the claim
        table.put({"grid": "g", "cell_id": "a", "status": "ok"})
    assert freed.wait(30) and seen == {"mine": True, "done": True}
    thread.join()
