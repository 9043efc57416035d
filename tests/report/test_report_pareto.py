"""Quality against cost: operating points, the Pareto front, the best solver per budget, the figure, and
the sweep report that shows them.  Frames are built here; one small grid is run at the end."""
import json

import matplotlib.image
import pandas as pd

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report import write_report
from solverbench.report.figures.pareto import plot_pareto
from solverbench.report.figures.style import SolverStyles
from solverbench.metric_columns import KNOWN_BY_NAME
from solverbench.report.tables.pareto import (FLOPS, NFE, WALL_TIME, available_axes, budget_table, on_front,
                                              operating_points)

ERROR = KNOWN_BY_NAME["trajectory_error"]


def row(label, nfe, error, seconds, flops, *, half=0.001, seed=0, analysis=False):
    return {"cell_id": f"{label}-{nfe}-{seed}", "solver": label, "solver_params": json.dumps({}),
            "solver_label": label, "analysis_only": analysis, "nfe": nfe, "nfe_measured": nfe, "seed": seed,
            "trajectory_error": error, "trajectory_error_ci_low": error - half,
            "trajectory_error_ci_high": error + half, "wall_time_per_sample": seconds, "flops_per_sample": flops,
            "status": "ok", "error": None}


def frame() -> pd.DataFrame:
    """A cheap solver (errors 0.1 / 0.05 / 0.02 at 1 / 2 / 4 ms), an accurate one at 10x its time but the same
    FLOPs (0.03 / 0.01), an oracle that beats both (never a point), and two seeds of the cheap one at NFE 5."""
    return pd.DataFrame([
        row("cheap", 5, 0.10, 1e-3, 1e6), row("cheap", 5, 0.10, 1e-3, 1e6, seed=1),
        row("cheap", 10, 0.05, 2e-3, 2e6), row("cheap", 20, 0.02, 4e-3, 4e6),
        row("accurate", 5, 0.03, 1e-2, 1e6), row("accurate", 10, 0.0105, 2e-2, 2e6, half=0.002),
        row("oracle", 5, 1e-4, 1e-4, 1e5, analysis=True),
    ])


def test_operating_points_average_seeds_and_leave_analysis_only_solvers_out():
    points = operating_points(frame(), ERROR)
    assert sorted(zip(points["solver_label"], points["nfe_block"])) == [
        ("accurate", "10"), ("accurate", "5"), ("cheap", "10"), ("cheap", "20"), ("cheap", "5")]
    assert set(available_axes(points)) == {NFE, WALL_TIME, FLOPS}
    assert available_axes(points.assign(flops_per_sample=float("nan"))) == [NFE, WALL_TIME]


def test_the_front_holds_the_points_nothing_cheaper_beats():
    points = operating_points(frame(), ERROR).set_index(["solver_label", "nfe_block"])
    by_time = on_front(points.reset_index(), WALL_TIME, ERROR).to_numpy()
    named = dict(zip(points.index, by_time))
    assert named == {("cheap", "5"): True, ("cheap", "10"): True, ("cheap", "20"): True,
                     ("accurate", "5"): False, ("accurate", "10"): True}
    by_flops = dict(zip(points.index, on_front(points.reset_index(), FLOPS, ERROR).to_numpy()))
    # at equal FLOPs the accurate solver wins both budgets; cheap NFE 20 costs more and is worse than accurate 10
    assert by_flops == {("cheap", "5"): False, ("cheap", "10"): False, ("cheap", "20"): False,
                        ("accurate", "5"): True, ("accurate", "10"): True}


def test_budget_table_names_the_best_per_budget_and_its_ties():
    table = budget_table(frame(), ERROR, "toy")
    got = [(r.record["cost"], r.record["budget"], r.record["solver"], r.record["nfe"], r.record["ties"])
           for r in table.rows]
    assert got == [
        ("wall_time_per_sample", 1e-3, "cheap", "5", ""),
        ("wall_time_per_sample", 2e-3, "cheap", "10", ""),
        ("wall_time_per_sample", 4e-3, "cheap", "20", ""),
        ("wall_time_per_sample", 2e-2, "accurate", "10", ""),
        ("flops_per_sample", 1e6, "accurate", "5", ""),
        ("flops_per_sample", 2e6, "accurate", "10", ""),
    ]
    tied = frame()
    accurate_10 = (tied["solver_label"] == "accurate") & (tied["nfe"] == 10)
    tied.loc[accurate_10, "trajectory_error_ci_high"] += 0.01  # its interval now reaches cheap 20's
    rows = {(r.record["cost"], r.record["budget"]): r.record["ties"] for r in budget_table(tied, ERROR, "toy").rows}
    assert rows["wall_time_per_sample", 2e-2] == "cheap @ NFE 20"


def test_the_figure_has_one_panel_per_recorded_cost(tmp_path):
    styles = SolverStyles(frame()["solver_label"])
    three = plot_pareto(frame(), ERROR, "toy", tmp_path / "three.png", styles)
    two = plot_pareto(frame().drop(columns="flops_per_sample"), ERROR, "toy", tmp_path / "two.png", styles)
    width = {name: matplotlib.image.imread(path).shape[1] for name, path in (("three", three), ("two", two))}
    assert width["three"] > 1.3 * width["two"]
    assert plot_pareto(frame().iloc[:1], ERROR, "toy", tmp_path / "none.png", styles) is None


def test_a_sweep_report_shows_the_pareto_figure_and_budget_table(tmp_path):
    grid = parse_grid({"name": "costs", "backbones": ["digits"], "solvers": ["euler", "heun"], "nfe": [4, 6],
                       "num_samples": 4, "batch_size": 4, "metrics": ["trajectory_error"],
                       "reference": {"rtol": 1e-4, "atol": 1e-4}})
    run_grid(grid, tmp_path / "results", progress=False)
    write_report(tmp_path / "results", tmp_path / "report")
    setting = tmp_path / "report" / "costs"
    assert (setting / "pareto_trajectory_error.png").exists()
    budgets = (setting / "budgets_trajectory_error.md").read_text()
    assert "| wall time per sample |" in budgets and "| FLOPs per sample |" in budgets
    assert "pareto_trajectory_error.png" in (tmp_path / "report" / "index.md").read_text()
