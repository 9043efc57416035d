"""The quantiles behind a per-sample mean: distribution-free order-statistic intervals that cover, the
Wilson interval of a fraction above a threshold, and the exceedance option's one-line errors."""
import math

import numpy as np
import pytest
from scipy import stats

from solverbench.metrics.shape import (check_exceedance, order_statistic_ranks, quantile_interval, shape_columns,
                                       wilson_interval)


@pytest.mark.parametrize("n, q", [(64, 0.5), (1024, 0.9), (1024, 0.99), (200, 0.9)])
def test_ranks_are_the_binomial_quantiles(n, q):
    low, high = order_statistic_ranks(n, q)
    b = stats.binom(n, q)
    assert b.cdf(low - 1) <= 0.025 < b.cdf(low)  # P(B < l) <= 2.5%, and l is the largest such rank
    assert b.sf(high - 1) <= 0.025 < b.sf(high - 2)  # P(B >= u) <= 2.5%, and u the smallest
    assert b.cdf(high - 1) - b.cdf(low - 1) >= 0.95  # P(l <= B < u): the coverage


def test_the_interval_covers_the_true_quantile_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    truth = stats.expon.ppf(0.9)
    covered = [low <= truth <= high for low, high in
               (quantile_interval(rng.exponential(size=200), 0.9)[1] for _ in range(400))]
    assert np.mean(covered) >= 0.93  # >= 95% by construction, less Monte-Carlo noise over 400 repetitions


def test_a_side_too_few_samples_cannot_bound_is_infinite():
    value, (low, high) = quantile_interval(np.arange(64.0), 0.99)
    assert math.isfinite(low) and high == math.inf and low <= value


def test_wilson_interval_matches_its_formula_and_stays_in_0_1():
    assert wilson_interval(0, 100) == pytest.approx((0.0, 0.03699), abs=1e-5)
    low, high = wilson_interval(30, 100)
    assert (low, high) == pytest.approx((0.2189, 0.3958), abs=1e-4)


def test_shape_columns_name_each_quantile_and_the_fraction_above():
    values = np.linspace(0, 1, 101)
    out = shape_columns("trajectory_error", values, threshold=0.9)
    assert out["trajectory_error_median"] == pytest.approx(0.5)
    assert out["trajectory_error_q90"] == pytest.approx(0.9)
    assert out["trajectory_error_above"] == pytest.approx(10 / 101)
    assert out["trajectory_error_q99_ci_low"] <= out["trajectory_error_q99"] <= out["trajectory_error_q99_ci_high"]
    assert "trajectory_error_above" not in shape_columns("trajectory_error", values)


@pytest.mark.parametrize("value, message", [
    ([0.1], "allowed: a mapping from a per-sample metric"),
    ({"fid": 3}, "'fid' is not a per-sample metric of this grid; allowed: trajectory_error"),
    ({"trajectory_error": "high"}, "threshold of trajectory_error: bad value 'high'"),
])
def test_bad_exceedance_is_one_line(value, message):
    with pytest.raises(ValueError, match=message) as err:
        check_exceedance(value, {"trajectory_error"})
    assert "\n" not in str(err.value)


def test_a_grid_names_the_bad_exceedance_entry_in_one_line():
    from solverbench.errors import GridError
    from solverbench.grid import parse_grid

    grid = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "solvers": ["euler"],
            "nfe": [4], "num_samples": 8, "batch_size": 8, "metrics": ["trajectory_error", "sliced_wasserstein"],
            "metric_options": {"exceedance": {"sliced_wasserstein": 0.1}}}
    with pytest.raises(GridError, match=r"metric_options.exceedance.*'sliced_wasserstein' is not a per-sample "
                                        r"metric of this grid; allowed: trajectory_error") as err:
        parse_grid(grid)
    assert "\n" not in str(err.value)
