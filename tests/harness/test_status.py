"""`status GRID`: from the results table and the cells' claims, per solver (and backbone), the cells done, running,
failed and left, and a total line; it runs and writes nothing, and exits with status 0."""
import json
import os
import time

import yaml

from solverbench.cli import main
from solverbench.grid import load_grid
from solverbench.results import CLAIMS, ResultsTable
from solverbench.studies.sweep import Sweep, cells

GRID = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}},
                                  {"name": "gmm", "params": {"preset": "gmm64"}}],
        "solvers": ["euler", {"name": "flow-dpm", "params": {"order": 2}}], "nfe": [2, 4, 6], "num_samples": 8,
        "metrics": ["trajectory_error"]}


def cell_ids(grid):
    """cell id -> (solver label, backbone preset, nfe)."""
    ids = [unit.ids[0] for unit in Sweep(grid, None).units()]
    return {cell_id: (cell.solver.label, cell.backbone.params["preset"], cell.nfe)
            for cell_id, cell in zip(ids, cells(grid))}


def snapshot(folder):
    """The files under ``folder`` and their modification times (a claim's age is read against a probe file created
    and removed at once: folders' times may change), save the times of the claims, which their holders' heartbeat
    touches whenever it beats."""
    return {str(p): None if p.parent.name == CLAIMS else p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file()}


def test_status_counts_done_running_failed_and_left_per_solver_and_backbone(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOLVERBENCH_CLAIM_STALE_S", "600")
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(GRID))
    grid = load_grid(path)
    ids = cell_ids(grid)
    by = {(solver, backbone, nfe): cell_id for cell_id, (solver, backbone, nfe) in ids.items()}
    table = ResultsTable(tmp_path / "results" / "g")
    table.adopt(path, grid.hash)
    table.put_many([{"grid": "g", "cell_id": by[("euler", "gmm2d", n)], "status": "ok"} for n in (2, 4, 6)] +
                   [{"grid": "g", "cell_id": by[("flow-dpm(order=2)", "gmm2d", 2)], "status": "failed", "error": "nan"},
                    {"grid": "g", "cell_id": by[("flow-dpm(order=2)", "gmm64", 2)], "status": "error",
                     "error": "boom"}])
    stale = tmp_path / "results" / "g" / CLAIMS / f"{by[('euler', 'gmm64', 4)]}.lock"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"host": "node-elsewhere", "pid": 7, "token": "x"}))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # an hour without heartbeat: its holder is gone
    with table.claim(by[("euler", "gmm64", 2)]) as mine, table.claim(by[("flow-dpm(order=2)", "gmm64", 2)]) as retried:
        assert mine and retried  # this process runs those two cells now, one of them a retry of a cell that raised
        before = snapshot(tmp_path / "results")
        assert main(["status", str(path), "--results", str(tmp_path / "results")]) == 0
        assert snapshot(tmp_path / "results") == before  # nothing written
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"g ({path}): 12 cells, results in {tmp_path / 'results' / 'g' / 'results.parquet'}"
    assert [line.split() for line in lines[1:7]] == [
        ["solver", "and", "backbone", "done", "running", "failed", "left"],
        ["euler", "on", "gmm", '{"preset":"gmm2d"}', "3", "0", "0", "0"],
        ["flow-dpm(order=2)", "on", "gmm", '{"preset":"gmm2d"}', "0", "0", "1", "2"],
        ["euler", "on", "gmm", '{"preset":"gmm64"}', "0", "1", "0", "2"],
        ["flow-dpm(order=2)", "on", "gmm", '{"preset":"gmm64"}', "0", "1", "0", "2"],
        ["total", "3", "2", "1", "6"]]
    notes = "\n".join(lines[7:])
    assert "running: 2 claims held by" in notes and f"pid {os.getpid()}" in notes
    assert "1 claim(s) whose holder is gone (node-elsewhere pid 7): their cells count as left" in notes
    assert "failed: 1 recorded with their reason" in notes and "6 cell(s) left" in notes


def test_status_of_a_grid_not_run_yet_is_every_cell_left(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({**GRID, "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}]}))
    assert main(["status", str(path), "--results", str(tmp_path / "results")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:5]] == [["solver", "done", "running", "failed", "left"],
                                                     ["euler", "0", "0", "0", "3"],
                                                     ["flow-dpm(order=2)", "0", "0", "0", "3"],
                                                     ["total", "0", "0", "0", "6"]]
    assert not (tmp_path / "results").exists()
