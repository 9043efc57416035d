"""benchmarks/paper_time_projection.py: the paper grid's wall time on W workers taking whole cells by claim."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paper_time_projection.py"


@pytest.fixture(scope="module")
def projection():
    return runpy.run_path(str(SCRIPT))


@pytest.mark.parametrize("cells, workers, grid_order, longest_first, bound", [
    ([1, 1, 1, 1, 4], 2, 6, 4, 4),  # the long cell last in the grid: LPT reaches the bound
    ([3, 3, 2, 2, 2], 2, 7, 7, 6),  # Graham's case: longest first is not optimal (3+3 | 2+2+2 is 6)
    ([5, 1], 3, 5, 5, 5),  # more workers than cells: the longest cell
    ([2, 2, 2, 2], 1, 8, 8, 8),  # one worker: the sum
    ([3, 1, 1, 1], 2, 3, 3, 3),  # the worker free first takes the next cell (not round-robin: 3 + 1)
])
def test_packings_give_the_exact_makespans(projection, cells, workers, grid_order, longest_first, bound):
    assert projection["list_schedule"](cells, workers) == grid_order
    assert projection["longest_first"](cells, workers) == longest_first
    assert projection["lower_bound"](cells, workers) == bound


def test_a_cell_split_over_gpus_takes_its_busiest_ranks_batches(projection):
    assert projection["split_over"](60.0, 196, 8) == pytest.approx(60.0 * 25 / 196)
    assert projection["split_over"](60.0, 196, 1) == 60.0


def test_the_script_projects_the_paper_grid_on_8_16_32_workers(projection, capsys):
    projection["main"](["--workers", "8", "16", "32"])
    out = capsys.readouterr().out
    assert "total 24.4 GPU-hours" in out and "on 8 GPUs under torchrun" in out
    rows = {int(line.split()[0]): [float(v) for v in line.split()[2:]] for line in out.splitlines()
            if line.strip() and line.split()[0] in ("8", "16", "32")}
    assert sorted(rows) == [8, 16, 32]
    for workers, (perfect, bound, grid_order, longest) in rows.items():
        assert perfect == pytest.approx(24.4 / workers, abs=0.02)
        assert perfect <= bound <= longest <= grid_order  # on this grid LPT never loses to the grid's order
    assert rows[32][1] == rows[32][2] == pytest.approx(123 / 60, abs=0.01)  # the longest cell: BA at NFE 15
    assert rows[8][2] > rows[8][0] + 0.5  # packing whole cells costs over half an hour against perfect division
    assert "with 32 workers 12 would have no cell" in out


@pytest.mark.parametrize("argv, message", [(["--workers", "0"], "--workers 0"),
                                           (["--gpus-per-worker", "0"], "--gpus-per-worker 0")])
def test_bad_counts_are_refused_before_any_work(projection, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        projection["main"](argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
