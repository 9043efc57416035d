"""Each cell keeps what a paired comparison needs: per-sample values, and bootstrap replicates drawn
on the same indices for every solver of the table."""
import numpy as np
import pytest
import torch

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.paired_arrays import read_paired_arrays
from solverbench.uncertainty import Z


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    grid = parse_grid({"name": "paired", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": ["euler", "heun"], "nfe": [4], "num_samples": 96, "batch_size": 32,
                       "metrics": ["trajectory_error", "sliced_wasserstein", "log_likelihood"],
                       "metric_options": {"bootstrap_resamples": 40, "exceedance": {"trajectory_error": 0.05}}, "reference": {"rtol": 1e-5, "atol": 1e-5}})
    frame = run_grid(grid, results, progress=False).frame.set_index("solver")
    return results / "paired", frame


def test_per_sample_values_are_kept_in_sample_order_and_average_to_the_row(run):
    grid_dir, frame = run
    for solver, row in frame.iterrows():
        kept = read_paired_arrays(grid_dir, row["cell_id"])
        for column in ("trajectory_error", "log_likelihood"):
            values = kept[f"per_sample/{column}"]
            assert values.shape == (96,) and values.dtype == np.float64
            assert values.mean() == pytest.approx(row[column], rel=1e-12)


def test_bootstrap_replicates_give_the_interval_and_share_their_draws(run):
    grid_dir, frame = run
    replicates = {solver: read_paired_arrays(grid_dir, row["cell_id"])["bootstrap/sliced_wasserstein"]
                  for solver, row in frame.iterrows()}
    for solver, row in frame.iterrows():
        se = float(torch.from_numpy(replicates[solver]).std(correction=1))
        assert row["sliced_wasserstein_ci_high"] == pytest.approx(row["sliced_wasserstein"] + Z * se, rel=1e-12)
    # the same indices for both solvers: their replicates move together (a paired difference spreads less)
    difference = replicates["euler"] - replicates["heun"]
    assert difference.std() < max(replicates["euler"].std(), replicates["heun"].std())


def test_a_cell_without_arrays_reads_as_empty(tmp_path):
    assert read_paired_arrays(tmp_path, "0123456789abcdef") == {}


def test_per_sample_metrics_record_their_quantiles(run):
    grid_dir, frame = run
    row = frame.loc["euler"]
    values = read_paired_arrays(grid_dir, row["cell_id"])["per_sample/trajectory_error"]
    assert row["trajectory_error_median"] == np.quantile(values, 0.5)
    assert row["trajectory_error_q99_ci_low"] <= row["trajectory_error_q99"] <= row["trajectory_error_q99_ci_high"]
    assert row["trajectory_error_above"] == (values > 0.05).mean()  # the grid's threshold
    assert "log_likelihood_above" not in frame  # no threshold set for it
    assert np.isfinite(row["log_likelihood_q90"])


def test_a_cell_with_labels_keeps_them_for_stratified_draws(tmp_path):
    grid = parse_grid({"name": "labelled", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": ["euler"], "nfe": [2], "num_samples": 16, "batch_size": 16,
                       "metrics": ["trajectory_error"], "reference": {"rtol": 1e-4, "atol": 1e-4}})
    row = run_grid(grid, tmp_path, progress=False).frame.iloc[0]
    kept = read_paired_arrays(tmp_path / "labelled", row["cell_id"])
    assert kept["labels"].shape == (16,) and len(np.unique(kept["labels"])) > 1
