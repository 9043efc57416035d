"""The pairwise view: per NFE block and ranked metric, solver x solver paired differences (row minus column)
with their intervals, "—" where two solvers cannot be paired, the ties' planned sample sizes, and the figure;
and, run on a small grid (slow), the files the report writes and links."""
import numpy as np
import pandas as pd
import pytest

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.paired_arrays import write_paired_arrays
from solverbench.report import write_report
from solverbench.report.figures.pairwise import plot_pairwise
from solverbench.metric_columns import KNOWN_BY_NAME
from solverbench.paired import bootstrap_means, sample_draws
from solverbench.report.pairing import NOT_KEPT, CellArrays
from solverbench.report.tables.pairwise_blocks import pairwise_blocks
from solverbench.report.tables.model import format_with_interval
from solverbench.report.tables.pairwise import NOT_PAIRED, pairwise_table
from solverbench.report.tables.render import to_csv, to_markdown

ERROR, SW = KNOWN_BY_NAME["trajectory_error"], KNOWN_BY_NAME["sliced_wasserstein"]
N = 128


def store(root, solvers: dict) -> pd.DataFrame:
    """Sweep rows at NFE 5, one seed: ``solvers[label] = (per-sample errors, SW value, SW replicates)`` (None:
    the cell kept no arrays); the arrays written under ``root``."""
    rows = []
    for label, (errors, sw, replicates) in solvers.items():
        cell_id = f"cell-{label}"
        rows.append({"grid": "g", "cell_id": cell_id, "backbone": "gmm", "backbone_params": "{}", "seed": 0,
                     "num_samples": N, "label_rule": "uniform", "solver": label, "solver_params": "{}",
                     "solver_label": label, "analysis_only": False, "nfe": 5, "nfe_measured": 5, "status": "ok",
                     "error": None, "trajectory_error": float(np.mean(errors)), "sliced_wasserstein": sw})
        if replicates is not None:
            write_paired_arrays(root / "g", cell_id, {"per_sample/trajectory_error": errors,
                                                      "bootstrap/sliced_wasserstein": replicates})
    return pd.DataFrame(rows)


@pytest.fixture
def solvers():
    rng = np.random.default_rng(0)
    common, shared = rng.gamma(2.0, 0.5, N), rng.normal(0, 0.01, 200)
    return {"a": (common, 0.070, 0.070 + shared + rng.normal(0, 0.001, 200)),
            "b": (common + 0.02 + rng.normal(0, 0.05, N), 0.072, 0.072 + shared + rng.normal(0, 0.001, 200)),
            "c": (common + 0.3, 0.090, None)}  # run before cells kept their arrays


def test_an_entry_is_the_paired_difference_row_minus_column(tmp_path, solvers):
    blocks = pairwise_blocks(store(tmp_path, solvers), [ERROR, SW], CellArrays(tmp_path))
    assert [(b.metric.name, b.block, b.labels) for b in blocks] == [("trajectory_error", "5", ["a", "b", "c"]),
                                                                    ("sliced_wasserstein", "5", ["a", "b", "c"])]
    error, sw = (pairwise_table(b, "toy") for b in blocks)
    (a, _, _), (b, _, _) = solvers["a"], solvers["b"]
    draws = sample_draws(N, seed=0)
    replicates = bootstrap_means(b, draws) - bootstrap_means(a, draws)
    low, high = np.percentile(replicates, [2.5, 97.5])
    row_b = error.rows[1]
    assert row_b.cells[1].text == "b"
    assert row_b.cells[2].text == format_with_interval(np.mean(b - a), low, high)  # column (1): a
    assert row_b.record["a"] == pytest.approx(np.mean(b - a))
    assert (row_b.record["a_ci_low"], row_b.record["a_ci_high"]) == pytest.approx((low, high))
    assert error.rows[0].record["b"] == pytest.approx(-np.mean(b - a))
    assert row_b.cells[3].text == "" and row_b.cells[4].text == NOT_PAIRED  # the diagonal; c kept no arrays
    assert "c_ci_low" in to_csv(error).splitlines()[0]
    assert f"{NOT_PAIRED}: not paired ({NOT_KEPT})." in error.notes

    se = np.std(solvers["b"][2] - solvers["a"][2], ddof=1)
    assert sw.rows[1].record["a"] == pytest.approx(0.002)
    assert (sw.rows[1].record["a_ci_low"], sw.rows[1].record["a_ci_high"]) == pytest.approx(
        (0.002 - 1.96 * se, 0.002 + 1.96 * se), rel=1e-3)


def test_the_ties_say_how_many_samples_would_separate_them(tmp_path, solvers):
    blocks = pairwise_blocks(store(tmp_path, solvers), [SW], CellArrays(tmp_path))
    text = to_markdown(pairwise_table(blocks[0], "toy"))
    # b is 0.002 above a, paired se about 0.0014: not shown worse at 128 samples
    assert "- b vs a at NFE 5: about " in text and "samples would separate them (observed difference 0.0020" in text
    assert "at 128)" in text


def test_no_block_is_drawn_where_nothing_could_be_paired(tmp_path, solvers):
    rows = store(tmp_path, {label: (errors, sw, None) for label, (errors, sw, _) in solvers.items()})
    assert pairwise_blocks(rows, [ERROR, SW], CellArrays(tmp_path)) == []
    assert plot_pairwise([], "toy", tmp_path / "none.png") is None


def test_the_figure_is_written(tmp_path, solvers):
    blocks = pairwise_blocks(store(tmp_path, solvers), [ERROR, SW], CellArrays(tmp_path))
    path = plot_pairwise(blocks, "toy", tmp_path / "pairwise.png")
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_the_report_writes_and_links_the_pairwise_tables_and_figure(tmp_path):
    grid = parse_grid({"name": "pairs", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": ["euler", "heun", "midpoint"], "nfe": [4, 6], "num_samples": 64,
                       "batch_size": 64, "metrics": ["trajectory_error", "sliced_wasserstein"],
                       "reference": {"rtol": 1e-4, "atol": 1e-4}})
    run_grid(grid, tmp_path / "results", progress=False)
    index = write_report(tmp_path / "results", tmp_path / "report")
    folder = tmp_path / "report" / "pairs" / "pairwise"
    for metric in ("trajectory_error", "sliced_wasserstein"):
        for nfe in (4, 6):
            for suffix in (".md", ".tex", ".csv"):
                path = folder / f"{metric}_nfe{nfe}{suffix}"
                assert path.is_file() and f"(pairs/pairwise/{path.name})" in index.read_text()
    assert (folder / "pairwise.png").is_file() and "pairs/pairwise/pairwise.png" in index.read_text()
    assert "pairs/pairwise/pairwise.png" in (tmp_path / "report" / "index.html").read_text()
