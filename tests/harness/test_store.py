"""The results store under concurrency and faults: no row lost, no table taken over silently, a damaged
table is one clear line, and the console names every cell that did not finish."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from solverbench import Solver, register_solver
from solverbench.cli import main
from solverbench.grid import parse_grid
from solverbench.studies.sweep import Sweep, cells as expand_cells
from solverbench.report import write_report
from solverbench.results import DamagedResultsError, GridOwnershipError, ResultsTable, read_table
from solverbench.engine import run_grid

GRID = {"name": "shared", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
        "solvers": ["euler", "heun", "midpoint", "rk4", {"name": "flow-dpm", "params": {"order": [2, 3]}}],
        "nfe": [2, 3, 4, 6, 8], "num_samples": 64, "metrics": ["trajectory_error"], "save_samples": 0,
        "reference": {"rtol": 1e-6, "atol": 1e-6}}


def row(cell_id, value=1.0):
    return {"grid": "g", "cell_id": cell_id, "status": "ok", "value": value}


def test_two_writers_of_one_table_lose_no_row(tmp_path):
    first, second = ResultsTable(tmp_path / "g"), ResultsTable(tmp_path / "g")  # both opened empty
    first.put(row("a"))
    second.put(row("b"))  # must not write its stale copy over a
    first.put(row("c"))
    assert sorted(read_table(tmp_path / "g" / "results.parquet")["cell_id"]) == ["a", "b", "c"]


def test_a_writer_reads_the_table_back_only_after_another_wrote(tmp_path, monkeypatch):
    import solverbench.results as results

    first, second = ResultsTable(tmp_path / "g"), ResultsTable(tmp_path / "g")
    first.put(row("a"))
    reads = []
    read = results.read_stored
    monkeypatch.setattr(results, "read_stored", lambda path: reads.append(path) or read(path))
    for cell in "bc":  # after its own write, the next starts from the table it wrote
        first.put(row(cell))
    assert reads == []
    second.put(row("d"))
    first.put(row("e"))
    assert len(reads) == 2  # each of the two read the other's write
    assert sorted(read_table(tmp_path / "g" / "results.parquet")["cell_id"]) == list("abcde")


def test_rows_written_one_at_a_time_read_back_as_the_same_rows_written_at_once(tmp_path):
    """A write converts only its new rows; the table reads back as a frame of all the rows written whole would:
    the same columns in the same order, the same dtypes (an integer column that gains a float or a missing
    value is float, a column missing from early rows is missing there), a replaced row at the end."""
    import numpy as np

    rows = [{"grid": "g", "cell_id": "a", "status": "ok", "nfe": 5, "value": 0.5, "label": "x", "flag": True,
             "error": None},
            {"grid": "g", "cell_id": "b", "status": "failed", "nfe": None, "value": float("nan"), "label": "y",
             "flag": False, "error": "diverged"},
            {"grid": "g", "cell_id": "c", "status": "ok", "nfe": 7, "value": np.float64(2.0), "label": None,
             "flag": True, "error": None, "late": 3.5},
            {"grid": "g", "cell_id": "d", "status": "ok", "nfe": np.int64(9), "value": 1, "label": "z",
             "flag": False, "error": None, "late": None}]
    table = ResultsTable(tmp_path / "g")
    for one in rows:
        table.put(one)
    pd.DataFrame(rows).to_parquet(tmp_path / "whole.parquet", index=False)
    expected = pd.read_parquet(tmp_path / "whole.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "g" / "results.parquet"), expected)
    pd.testing.assert_frame_equal(table.frame, expected)  # what the writer holds is what a read gives
    assert table.done() == {"a", "b", "c", "d"}
    table.put({**rows[1], "status": "ok", "nfe": 6, "value": 0.25, "error": None})  # b again, now at the end
    read = read_table(tmp_path / "g" / "results.parquet")
    assert list(read["cell_id"]) == list("acdb") and read["status"].eq("ok").all()
    assert read["nfe"].tolist() == [5, 7, 9, 6] and read["value"].tolist() == [0.5, 2.0, 1.0, 0.25]


def test_a_table_written_row_by_row_keeps_one_chunk_a_column():
    """Filtering and writing an arrow table cost per chunk: rows added one write at a time must not leave one
    chunk per write (at 512 cells that made each write 70 ms)."""
    from solverbench.results import with_rows

    table = None
    for i in range(6):
        table = with_rows(table, [row(f"c{i}", value=float(i))])
    table = with_rows(table, [row("c2", value=9.0)])  # a replaced row
    assert table.num_rows == 6 and all(column.num_chunks == 1 for column in table.columns)
    assert table["cell_id"].to_pylist() == ["c0", "c1", "c3", "c4", "c5", "c2"]


def write_grid(path: Path, grid: dict) -> Path:
    path.write_text(yaml.safe_dump(grid))
    return path


def run_cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "solverbench", "run", *args, "--no-progress"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_runs_of_one_grid_end_with_every_cell_exactly_once(tmp_path):
    grid = write_grid(tmp_path / "shared.yaml", GRID)
    runs = [run_cli(str(grid), "--results", str(tmp_path / "results"), cwd=tmp_path) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    table = pd.read_parquet(tmp_path / "results" / "shared" / "results.parquet")
    cells = expand_cells(parse_grid(GRID))
    assert len(table) == len(cells) and table["cell_id"].is_unique and (table["status"] == "ok").all()
    # the two runs shared the cells: each ran some, and together exactly all
    ran = [int(out.split("(")[-1].split(" run now")[0]) for _, out in outputs for out in [out.splitlines()[-1]]]
    assert sum(ran) == len(cells), outputs


def test_a_second_grid_file_with_the_same_name_is_refused_unless_forced(tmp_path, capsys):
    first = write_grid(tmp_path / "one.yaml", {**GRID, "nfe": [2]})
    second = write_grid(tmp_path / "two.yaml", {**GRID, "nfe": [3]})
    results = str(tmp_path / "results")
    assert main(["run", str(first), "--results", results, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(second), "--results", results, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(first.resolve()) in err and str(second.resolve()) in err
    assert "--force" in err
    # the same file again (edited) and a moved copy of it are the same grid
    write_grid(first, {**GRID, "nfe": [2, 3]})
    assert main(["run", str(first), "--results", results, "--no-progress"]) == 0
    moved = write_grid(tmp_path / "moved.yaml", yaml.safe_load(first.read_text()))
    assert main(["run", str(moved), "--results", results, "--no-progress"]) == 0
    assert main(["run", str(second), "--results", results, "--no-progress", "--force"]) == 0


def test_ownership_is_checked_in_python_too(tmp_path):
    ResultsTable(tmp_path / "g").adopt(tmp_path / "a.yaml", "h1")
    with pytest.raises(GridOwnershipError, match="a.yaml"):
        ResultsTable(tmp_path / "g").adopt(tmp_path / "b.yaml", "h2")


@pytest.mark.parametrize("damage", [b"", b"not a parquet file at all", "truncated"])
def test_a_damaged_table_is_one_line_naming_the_file_and_what_to_do(tmp_path, capsys, damage):
    grid = write_grid(tmp_path / "shared.yaml", {**GRID, "nfe": [2]})
    results = tmp_path / "results"
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 0
    path = results / "shared" / "results.parquet"
    path.write_bytes(path.read_bytes()[:200] if damage == "truncated" else damage)
    capsys.readouterr()
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "move it aside" in err and "rerun" in err
    with pytest.raises(DamagedResultsError):
        ResultsTable(results / "shared")


def test_report_skips_a_damaged_grid_with_a_warning_and_renders_the_others(tmp_path, capsys):
    results = tmp_path / "results"
    run_grid(parse_grid({**GRID, "name": "good", "nfe": [2]}), results, progress=False)
    run_grid(parse_grid({**GRID, "name": "bad", "nfe": [2]}), results, progress=False)
    (results / "bad" / "results.parquet").write_bytes(b"garbage")
    capsys.readouterr()
    index = write_report(results, tmp_path / "reports")
    err = capsys.readouterr().err
    assert "warning: skipping a grid" in err and "bad" in err
    assert (tmp_path / "reports" / "good" / "table1.md").is_file()
    assert not (tmp_path / "reports" / "bad").exists()
    assert "Skipped, their results table being damaged: bad" in index.read_text()


@register_solver("test-nan")
class NaNSolver(Solver):
    """Returns NaN: a diverging solver."""

    def solve(self, field, x, plan):
        for t, _, _ in plan.steps():
            field(x, t)
        return x * float("nan")


def test_the_closing_summary_lists_failed_cells_and_names_statuses(tmp_path, capsys):
    grid = parse_grid({**GRID, "solvers": ["euler", "test-nan"], "nfe": [2]})
    run_grid(grid, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert "2 cells in" in err and "1 ok, 1 failed" in err
    assert "1 failed cell(s) (recorded with their reason and not rerun; --force reruns them):" in err
    assert "test-nan nfe=2 cfg=1 seed=0: 64 of 64 samples are not finite" in err


def test_the_progress_bar_names_each_cell_by_its_full_label():
    grid = parse_grid({**GRID, "solvers": [{"name": "flow-dpm", "params": {"order": [2, 3]}},
                                           {"name": "ba", "params": {"sidenet": "off"}}], "nfe": [5], "seeds": [0, 1]})
    sweep = Sweep(grid, workspace=None)
    texts = {sweep.cell_text(cell, sweep.varying_keys()) for cell in expand_cells(grid)}
    assert texts == {f"{label} nfe=5 seed={s}" for label in ("flow-dpm(order=2)", "flow-dpm(order=3)",
                                                             "ba(rule=lobatto, nodes=2, sidenet=off)") for s in (0, 1)}


def test_the_reference_solve_shows_its_own_progress(tmp_path, capsys):
    run_grid(parse_grid({**GRID, "solvers": ["euler"], "nfe": [2]}), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "reference solve (dopri5, float64, rtol=1e-06, atol=1e-06) of 64 samples" in err


@pytest.mark.parametrize("name", ["cells.json", "grid.json"])
def test_a_damaged_listing_is_one_clear_line(tmp_path, capsys, name):
    grid = write_grid(tmp_path / "shared.yaml", {**GRID, "nfe": [2]})
    results = tmp_path / "results"
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 0
    (results / "shared" / name).write_text("{not json")
    capsys.readouterr()
    code = main(["run", str(grid), "--results", str(results), "--no-progress"]) if name == "grid.json" else \
        main(["report", "--results", str(results), "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and name in err and "delete it" in err


def forced_cells(tmp_path, monkeypatch, capsys, broken, *options):
    """A grid run once (ok), then forced with euler ``broken`` (raising, or turning NaN): the exit status, the
    rows after it, and its stderr."""
    from solvers.euler import Euler

    grid = write_grid(tmp_path / "shared.yaml", {**GRID, "solvers": ["euler", "heun"], "nfe": [2]})
    results = tmp_path / "results"
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 0
    capsys.readouterr()
    real = Euler.solve
    if broken == "raises":
        monkeypatch.setattr(Euler, "solve", lambda self, field, x, plan: (_ for _ in ()).throw(RuntimeError("boom")))
    else:
        monkeypatch.setattr(Euler, "solve", lambda self, field, x, plan: real(self, field, x, plan) * float("nan"))
    code = main(["run", str(grid), "--results", str(results), "--no-progress", "--force", *options])
    rows = pd.read_parquet(results / "shared" / "results.parquet").set_index("solver")
    return code, rows, capsys.readouterr().err


@pytest.mark.parametrize("broken, status", [("raises", "error"), ("nan", "failed")])
def test_a_forced_cell_that_now_fails_keeps_its_ok_row_and_the_run_says_so(tmp_path, monkeypatch, capsys, broken,
                                                                            status):
    code, rows, err = forced_cells(tmp_path, monkeypatch, capsys, broken)
    assert code == 1 and (rows["status"] == "ok").all() and len(rows) == 2
    assert "1 cell(s) run again did not finish ok; the earlier ok row of each is kept" in err
    assert f"euler nfe=2 cfg=1 seed=0: {status}: " in err and "--replace-with-failures" in err
    assert "2 cells in" in err and "2 ok (1 run now)" in err


@pytest.mark.parametrize("broken, status", [("raises", "error"), ("nan", "failed")])
def test_replace_with_failures_records_a_forced_cells_failure_over_its_ok_row(tmp_path, monkeypatch, capsys, broken,
                                                                               status):
    code, rows, err = forced_cells(tmp_path, monkeypatch, capsys, broken, "--replace-with-failures")
    assert rows.loc["euler", "status"] == status and rows.loc["heun", "status"] == "ok"
    assert code == (1 if status == "error" else 0) and "ok row of each is kept" not in err
