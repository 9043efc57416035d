"""The report's shape table: the quantiles behind a per-sample mean, an unbounded end printed as inf, and
the quantile convergence figures drawn without an infinite bar."""
import warnings

import pytest

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report import write_report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("shape")
    grid = parse_grid({"name": "shape", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": ["euler"], "nfe": [2, 4], "num_samples": 64, "batch_size": 64,
                       "metrics": ["trajectory_error"], "metric_options": {"exceedance": {"trajectory_error": 0.1}},
                       "reference": {"rtol": 1e-5, "atol": 1e-5}})
    frame = run_grid(grid, root / "results", progress=False).frame
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an infinite interval end must not reach matplotlib
        write_report(root / "results", root / "reports")
    return frame, root / "reports" / "shape"


def test_the_shape_table_gives_each_quantile_with_its_interval(report):
    frame, out = report
    text = (out / "shape_trajectory_error.md").read_text()
    assert "| NFE | solver | mean ↓ | median | 90% quantile | 99% quantile | fraction above the threshold |" in text
    euler = frame[(frame["solver"] == "euler") & (frame["nfe"] == 2)].iloc[0]
    assert f"{euler['trajectory_error_median']:#.3g}" in text
    assert ", inf]" in text  # 64 samples cannot bound the 99% quantile from above


def test_quantiles_are_drawn_against_nfe_but_kept_out_of_table_1(report):
    _, out = report
    assert (out / "convergence_trajectory_error_q99.png").is_file()
    table1 = (out / "table1.md").read_text()
    assert "quantile |" not in table1 and "are in the shape tables beside this one" in table1
    assert not (out / "pareto_trajectory_error_q90.png").exists()
