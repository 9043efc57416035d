"""Confidence intervals: the formulas, parity of the bootstrap statistics with the metrics, their
honesty (coverage on repeated draws), reproducibility, and their combination across seeds."""
import numpy as np
import pytest
import torch

from solverbench.metrics.distribution import (
    energy_distance,
    energy_distance_resampled,
    sliced_wasserstein2,
    sliced_wasserstein_resampled,
)
from solverbench.metrics.image.frechet import frechet_distance, frechet_distance_resampled, frechet_statistics
from solverbench.uncertainty import (
    Z,
    bootstrap_count_replicates,
    combine_seeds,
    interval_from_replicates,
    mean_interval,
)


def sw_interval(x, y, value, *, seed, resamples, nonnegative=False):
    """The sliced Wasserstein interval as the metric computes it (directions of seed 0)."""
    replicates = bootstrap_count_replicates(sliced_wasserstein_resampled(x, y, 0), len(x), seed=seed, name="sw",
                                            resamples=resamples)
    return interval_from_replicates(value, replicates, nonnegative)


def test_mean_interval_is_the_bootstrap_interval_of_the_mean():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(2000, generator=g, dtype=torch.float64) + 3.0
    mean, (low, high) = mean_interval(values, seed=1, name="x")
    se = values.std().item() / len(values) ** 0.5
    assert mean == pytest.approx(values.mean().item())
    assert (low, high) == pytest.approx((mean - Z * se, mean + Z * se), abs=0.15 * se)  # normal data: the usual
    assert mean_interval(values, seed=1, name="x") == (mean, (low, high))  # reproducible


def test_mean_interval_of_skewed_errors_stays_positive():
    """Errors tiny for most samples and large for a few: a normal interval would go below zero."""
    errors = torch.cat([torch.full((1022,), 1e-4, dtype=torch.float64), torch.full((2,), 1.0, dtype=torch.float64)])
    mean, (low, high) = mean_interval(errors, seed=0, name="trajectory_error")
    assert 0 < low < mean < high
    assert mean - Z * errors.std().item() / len(errors) ** 0.5 < 0


@pytest.mark.parametrize("metric, resampled", [
    (lambda x, y: sliced_wasserstein2(x, y, seed=3), lambda x, y: sliced_wasserstein_resampled(x, y, 3)),
    (energy_distance, energy_distance_resampled),
])
def test_the_bootstrap_statistic_of_the_identity_draw_is_the_metric(metric, resampled):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g) + 0.3
    assert resampled(x, y)(np.ones(200, dtype=np.int64)) == pytest.approx(metric(x, y), rel=1e-5)


def test_frechet_bootstrap_statistic_equals_torch_fidelity_fid():
    g = torch.Generator().manual_seed(0)
    features, reference = torch.randn(300, 12, generator=g), torch.randn(500, 12, generator=g) * 1.3 + 0.2
    stats = frechet_statistics(reference)
    expected = frechet_distance(features, stats, "torch-fidelity")
    # torch-fidelity keeps float32 means; ours are float64
    assert frechet_distance_resampled(features, stats)(torch.arange(300)) == pytest.approx(expected, rel=1e-6)


def test_frechet_bootstrap_statistic_with_fewer_samples_than_features_is_the_same_distance():
    """Below n = D the statistic works on the n x n Gram matrix; the distance is unchanged."""
    g = torch.Generator().manual_seed(1)
    features, reference = torch.randn(9, 40, generator=g), torch.randn(300, 40, generator=g) * 1.3 + 0.2
    stats = frechet_statistics(reference)
    idx = torch.tensor([0, 3, 3, 5, 8, 1, 1, 2, 7])
    expected = frechet_distance(features[idx].double(), {k: v.double() for k, v in stats.items()}, "clean-fid")
    assert frechet_distance_resampled(features, stats)(idx) == pytest.approx(expected, rel=1e-6)


def test_bootstrap_interval_is_reproducible_and_centred_on_the_estimate():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 8, generator=g), torch.randn(256, 8, generator=g)
    value = sliced_wasserstein2(x, y)
    first = sw_interval(x, y, value, seed=5, resamples=50)
    again = sw_interval(x, y, value, seed=5, resamples=50)
    other = sw_interval(x, y, value, seed=6, resamples=50)
    assert first == again and first != other
    assert first[0] < value < first[1] and (first[0] + first[1]) / 2 == pytest.approx(value)


def test_sliced_wasserstein_intervals_cover_the_expected_value_on_repeated_draws():
    """On 40 independent sample sets against one data set, at least 90% of the intervals hold the
    mean of the 40 values (the expected value, up to its own small error); 95% nominal."""
    g = torch.Generator().manual_seed(1)
    data = torch.randn(256, 4, generator=g)
    values, intervals = [], []
    for i in range(40):
        x = torch.randn(256, 4, generator=g) * 1.2 + 0.1
        value = sliced_wasserstein2(x, data)
        values.append(value)
        intervals.append(sw_interval(x, data, value, seed=i, resamples=100))
    centre = float(np.mean(values))
    covered = sum(low <= centre <= high for low, high in intervals)
    assert covered >= 36
    widths = [high - low for low, high in intervals]
    assert np.mean(widths) < 8 * Z * np.std(values)  # honest, not uselessly wide


def test_combine_seeds_keeps_one_seed_and_pools_several():
    assert combine_seeds([1.0], [0.5], [2.0]) == (1.0, 0.5, 2.0)
    mean, low, high = combine_seeds([1.0, 1.0], [0.8, 0.8], [1.2, 1.2])
    se_each = 0.2 / Z
    assert mean == 1.0 and high - mean == pytest.approx(Z * (2 * se_each ** 2) ** 0.5 / 2)
    # seeds far apart: the spread between them wins over their own tight intervals
    mean, low, high = combine_seeds([0.0, 10.0], [-0.1, 9.9], [0.1, 10.1])
    assert (high - low) / 2 == pytest.approx(Z * np.std([0.0, 10.0], ddof=1) / 2 ** 0.5)
    assert np.isnan(combine_seeds([1.0, 2.0], [0.5, float("nan")], [1.5, 2.5])[1])


def test_a_distance_interval_never_goes_below_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    low, high = sw_interval(x, x, 0.0, seed=0, resamples=50, nonnegative=True)
    assert low == 0.0 and high > 0
    assert sw_interval(x, x, 0.0, seed=0, resamples=50)[0] < 0


def test_stratified_draws_keep_every_class_count():
    from solverbench.uncertainty import bootstrap_generator, resample_indices

    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    for chunk in resample_indices(10, 30, bootstrap_generator(0, "x"), strata=labels):
        for idx in chunk:
            assert torch.equal(torch.bincount(labels[idx], minlength=3), torch.tensor([3, 2, 5]))


def test_stratified_intervals_leave_out_the_spread_of_the_class_mix():
    """Values that differ only between classes: with the labels held fixed, the mean cannot move."""
    labels = torch.arange(400) % 4
    values = labels.double() * 10.0
    _, (low, high) = mean_interval(values, seed=0, name="x", strata=labels)
    assert high - low == pytest.approx(0.0, abs=1e-9)
    _, (low, high) = mean_interval(values, seed=0, name="x")
    assert high - low > 1.0


@pytest.fixture
def draws_made(monkeypatch):
    """Counts the times bootstrap indices are drawn."""
    import solverbench.uncertainty as uncertainty

    made, draw = [0], uncertainty.group_draws

    def counted(*args, **kwargs):
        made[0] += 1
        return draw(*args, **kwargs)

    monkeypatch.setattr(uncertainty, "group_draws", counted)
    return made


def test_the_cells_of_a_run_draw_their_bootstrap_once_and_get_the_same_intervals(draws_made):
    """The run's memo keeps each metric's draws (seed, name, n, labels): a second cell draws nothing, and
    every interval is the one drawn afresh, bit for bit."""
    from solverbench.uncertainty import bootstrap_replicates

    g = torch.Generator().manual_seed(3)
    labels = torch.randint(4, (300,), generator=g)
    cells = [torch.rand(300, generator=g, dtype=torch.float64) for _ in range(3)]
    fresh = [mean_interval(v, seed=2, name="trajectory_error", strata=labels) for v in cells]
    x, y = torch.randn(300, 5, generator=g), torch.randn(300, 5, generator=g)
    fresh_sw = bootstrap_count_replicates(sliced_wasserstein_resampled(x, y, 0), 300, seed=2, name="sw", strata=labels)
    fresh_idx = bootstrap_replicates(lambda idx: float(x[idx].sum()), 300, seed=2, name="sw", strata=labels)
    draws_made[0] = 0
    memo: dict = {}
    for _ in range(2):
        assert [mean_interval(v, seed=2, name="trajectory_error", strata=labels.clone(), memo=memo)
                for v in cells] == fresh
        assert np.array_equal(bootstrap_count_replicates(sliced_wasserstein_resampled(x, y, 0), 300, seed=2,
                                                         name="sw", strata=labels, memo=memo), fresh_sw)
        assert np.array_equal(bootstrap_replicates(lambda idx: float(x[idx].sum()), 300, seed=2, name="sw",
                                                   strata=labels, memo=memo), fresh_idx)
    assert draws_made[0] == 3  # the means' indices, the distance's counts, the indices of 200 draws
    # another seed, name, size or labels draws its own
    mean_interval(cells[0], seed=3, name="trajectory_error", strata=labels, memo=memo)
    mean_interval(cells[0], seed=2, name="log_likelihood", strata=labels, memo=memo)
    mean_interval(cells[0][:299], seed=2, name="trajectory_error", strata=labels[:299], memo=memo)
    mean_interval(cells[0], seed=2, name="trajectory_error", strata=labels.flip(0), memo=memo)
    mean_interval(cells[0], seed=2, name="trajectory_error", memo=memo)
    assert draws_made[0] == 8


def test_draws_too_large_to_keep_are_drawn_again(draws_made, monkeypatch):
    import solverbench.uncertainty as uncertainty

    monkeypatch.setattr(uncertainty, "MEMO_BYTES", 300 * 2000 - 1)  # the counts of 2000 draws of 300: one byte more
    values, memo = torch.rand(300, dtype=torch.float64), {}
    first = mean_interval(values, seed=0, name="x", memo=memo)
    assert mean_interval(values, seed=0, name="x", memo=memo) == first and draws_made[0] == 2 and not memo


def test_bootstrap_counts_are_those_of_the_draws_in_draw_order():
    from solverbench.uncertainty import bootstrap_counts, bootstrap_generator, resample_indices

    labels = torch.randint(3, (50,), generator=torch.Generator().manual_seed(0))
    for strata in (None, labels):  # the classes' draws counted into their own samples' columns
        counts = bootstrap_counts(50, seed=1, name="x", resamples=30, strata=strata)
        draws = [idx for chunk in resample_indices(50, 30, bootstrap_generator(1, "x"), strata) for idx in chunk]
        assert counts.shape == (30, 50) and counts.dtype == np.uint8
        assert all(np.array_equal(row, np.bincount(idx.numpy(), minlength=50)) for row, idx in zip(counts, draws))
