"""benchmarks/worker_scaling.py: a grid of small cells run by 1 process, 2 workers and torchrun x2, each
process's wall time split into start-up, its cells (reference, lock wait, collectives), idle and tail."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "worker_scaling.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(SCRIPT))


def test_a_process_s_terms_add_up_to_the_wall_time(bench):
    record = {"cells": [[101.0, 103.0, True], [103.0, 103.5, False], [104.0, 106.0, True], [106.0, 106.5, False]],
              "reference": [[0.5, True, True]], "lock": [[0.1, 0.01, True], [0.2, 0.01, False]],
              "collectives": {"inside": 0.3, "outside": 1.0}}
    terms = bench["process_terms"](record, launch_at=100.0, grid_last=107.0, end=108.0)
    assert list(terms) == list(bench["TERMS"])
    expected = {"start-up": 1.0, "reference": 0.5, "lock wait": 0.1, "collectives": 0.3, "other cell work": 3.1,
                "between cells": 1.0, "idle at end": 1.0, "tail": 1.0}  # only the cells it ran: until 106
    assert terms == pytest.approx(expected)
    assert sum(terms.values()) == pytest.approx(8.0)


@pytest.mark.parametrize("argv, message", [(["--cells", "7"], "--cells 7"), (["--cell-samples", "1"],
                                                                           "--cell-samples 1")])
def test_bad_sizes_are_refused_before_any_run(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        bench["parse"](argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow  # three runs of 8 cells in fresh processes: about 40 s on 2 cores
def test_quick_mode_runs_the_grid_three_ways_and_accounts_for_each_process(bench):
    lines: list[str] = []
    runs = bench["run"](bench["parse"](["--quick"]), lines.append)
    assert list(runs) == ["1 worker", "2 workers", "torchrun x2"]
    base = runs["1 worker"]["rows"].set_index("cell_id").sort_index()
    for label, run in runs.items():
        rows = run["rows"]
        assert len(rows) == 8 and rows["cell_id"].is_unique and (rows["status"] == "ok").all()
        mine = rows.set_index("cell_id").sort_index()
        assert mine.index.equals(base.index)
        assert np.allclose(mine[["trajectory_error", "sliced_wasserstein"]], base[["trajectory_error",
                           "sliced_wasserstein"]], rtol=1e-6, atol=0)
        processes = run["analysis"]["processes"]
        assert len(processes) == run["mode"].processes
        for p in processes:  # every term measured, and together the run's wall time
            assert math.isclose(sum(p["terms"].values()), run["wall"], rel_tol=1e-9, abs_tol=1e-6)
            assert all(value >= -1e-6 for value in p["terms"].values())
            assert p["solved"] + p["read"] >= 1  # each process solves the reference or reads the cache
        assert sum(p["solved"] for p in processes) >= 1  # a fresh results folder: solved at least once
    workers = runs["2 workers"]["analysis"]["processes"]
    assert sum(p["cells"] for p in workers) == 8 and all(p["collectives_all"] == 0 for p in workers)
    assert sum(p["holds"] for p in workers) >= 8  # each cell's row is written under the lock
    ranks = runs["torchrun x2"]["analysis"]["processes"]
    assert [p["name"] for p in ranks] == ["rank 0", "rank 1"] and all(p["cells"] == 8 for p in ranks)
    assert ranks[0]["holds"] >= 8 and ranks[1]["holds"] == 0  # rank 0 alone writes
    assert all(p["terms"]["collectives"] > 0 for p in ranks)
    text = "\n".join(lines)
    assert text.startswith("$ python benchmarks/worker_scaling.py --quick")
    assert "run cells8.yaml --results results-2-workers --no-progress --workers 2" in text
    assert "torchrun --standalone --nproc_per_node 2 -m solverbench" in text
    assert "speed-up" in text and text.count("most lost to") == 2
