"""benchmarks/sweep_scaling.py's quick mode, and the results store's cached reads (what it optimises)."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

import pandas as pd
import pytest

import solverbench.results as results
from solverbench.results import DamagedResultsError, ResultsTable, read_table

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sweep_scaling.py"


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_quick_mode_times_both_series_by_phase_fits_exponents_and_profiles(tmp_path):
    bench = runpy.run_path(str(SCRIPT))
    out = tmp_path / "scaling.txt"
    lines: list[str] = []
    args = bench["parse"](["--quick", "--top", "5", "--out", str(out)])
    measured = bench["run"](args, lines.append)
    for name, sizes in (("samples", [256, 512, 1024]), ("cells", [4, 8, 16])):
        series = measured[name]
        assert series["sizes"] == sizes and len(series["runs"]) == len(sizes)
        for run in series["runs"]:
            assert set(run["phase_cpu"]) == set(bench["PHASES"]) and run["wall"] > 0 and run["cpu"] > 0
            assert run["phase_cpu"]["reference"] > 0 and run["phase_cpu"]["metrics"] > 0
            # the phases split the run: their sum is its CPU time (the rest is charged to "rest")
            assert math.isclose(sum(run["phase_cpu"].values()), run["cpu"], rel_tol=0.05, abs_tol=0.05)
        assert all(math.isfinite(series["exponents"][key]) for key in ("cpu", "wall", "metrics", "sampling"))
        assert isinstance(series["flagged"], list)
    text = "\n".join(lines)
    assert text.startswith("$ python benchmarks/sweep_scaling.py --quick") and "CPU cores" in text
    assert text.count("exponent") >= 2 and text.count("cProfile of") == 2 and "run_grid" in text
    # the reference is solved once per run, whatever the cell count
    cells = measured["cells"]["runs"]
    assert cells[-1]["phase_cpu"]["reference"] < 3 * cells[0]["phase_cpu"]["reference"] + 0.05


def row(cell_id, status="ok", value=1.0):
    return {"grid": "g", "cell_id": cell_id, "status": status, "value": value}


@pytest.fixture
def reads(monkeypatch):
    """Counts the store's reads of table files."""
    count = [0]
    read = results.read_stored

    def counted(path):
        count[0] += 1
        return read(path)

    monkeypatch.setattr(results, "read_stored", counted)
    return count


def test_done_after_its_own_writes_reads_nothing_and_still_sees_another_writer(tmp_path, reads):
    mine, other = ResultsTable(tmp_path / "g"), ResultsTable(tmp_path / "g")
    mine.put(row("a"))
    mine.put(row("b", status="error"))
    reads[0] = 0
    assert mine.done() == {"a"} and mine.done() == {"a"}
    assert reads[0] == 0  # the table on disk is the one it wrote
    other.put(row("c"))  # another run (another table object) writes
    assert mine.done() == {"a", "c"} and reads[0] >= 1
    reads[0] = 0
    assert mine.done() == {"a", "c"} and reads[0] == 0  # read once, then cached again
    mine.put(row("b"))  # the retried cell: read-modify-write keeps c
    assert sorted(read_table(tmp_path / "g" / "results.parquet")["cell_id"]) == ["a", "b", "c"]
    assert mine.done() == {"a", "b", "c"}


def test_a_table_replaced_with_the_same_size_is_read_again(tmp_path):
    """The cache is keyed by the file's identity (inode, times), not its size alone."""
    table = ResultsTable(tmp_path / "g")
    table.put(row("a"))
    assert table.done() == {"a"}
    other = tmp_path / "other"
    ResultsTable(other).put(row("b"))  # a table of the same shape and size
    assert (other / "results.parquet").stat().st_size == table.path.stat().st_size
    (other / "results.parquet").replace(table.path)
    assert table.done() == {"b"} and list(table.refresh()["cell_id"]) == ["b"]


def test_refresh_gives_the_table_as_read_from_disk_and_rereads_only_after_a_change(tmp_path, reads):
    table = ResultsTable(tmp_path / "g")
    table.put_many([row("a"), {**row("b", status="error"), "error": "RuntimeError: x", "traceback": "tb"}])
    frame = table.refresh()
    pd.testing.assert_frame_equal(frame, read_table(table.path))  # a read, not the frame it wrote
    other = ResultsTable(tmp_path / "g")
    reads[0] = 0
    assert table.refresh() is frame and reads[0] == 0
    other.put(row("c"))  # its own read of the table is still current: no read
    assert list(table.refresh()["cell_id"]) == ["a", "b", "c"] and reads[0] == 1


def test_a_damaged_or_deleted_table_is_seen_by_a_cached_table(tmp_path):
    table = ResultsTable(tmp_path / "g")
    table.put(row("a"))
    assert table.done() == {"a"}
    table.path.write_bytes(b"not parquet")
    with pytest.raises(DamagedResultsError, match="cannot be read"):
        table.done()
    table.path.unlink()
    assert table.done() == set() and table.refresh().empty
