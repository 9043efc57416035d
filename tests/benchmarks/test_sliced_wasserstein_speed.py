"""The sliced Wasserstein metric's fast implementation gives the numbers of the plain one: the point estimate
bit for bit (numpy sorts of contiguous rows), and every bootstrap draw (from the counts of each sample, each
direction's projections sorted once, a compiled pass per direction and draw) to float64 rounding, so the
intervals built from them too."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from solverbench.metrics.distribution import _directions, sliced_wasserstein2, sliced_wasserstein_resampled
from solverbench.uncertainty import (
    bootstrap_count_replicates,
    bootstrap_counts,
    bootstrap_generator,
    bootstrap_interval,
    interval_from_replicates,
    resample_indices,
)


# --- the implementation before it was made fast (slow reference) -----------------------------------------
def reference_sliced_wasserstein2(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256, seed: int = 0) -> float:
    x, y = x.double().flatten(1), y.double().flatten(1)
    if x.shape != y.shape:
        raise ValueError("equal-size sets")
    theta = _directions(x.shape[1], seed, n_projections)
    px, _ = torch.sort(x.cpu() @ theta, dim=0)
    py, _ = torch.sort(y.cpu() @ theta, dim=0)
    return (px - py).pow(2).mean().sqrt().item()


def reference_sliced_wasserstein_resampled(x: torch.Tensor, y: torch.Tensor, seed: int, dtype=np.float64
                                           ) -> Callable[[torch.Tensor], float]:
    """The draw gathered, its projections sorted, the mean squared difference (float64; float32 was the
    arithmetic of an earlier version)."""
    theta = _directions(x[0].numel(), seed)
    px = (x.double().flatten(1).cpu() @ theta).T.numpy().astype(dtype)  # (projections, n)
    py = np.sort((y.double().flatten(1).cpu() @ theta).T.numpy().astype(dtype), axis=1)
    return lambda idx: float(np.sqrt(np.mean((np.sort(np.take(px, idx.numpy(), axis=1), axis=1) - py) ** 2)))


RTOL = 1e-11  # a draw from the counts against the plain float64 computation (different summation orders)
# -----------------------------------------------------------------------------------------------------------


def counts_of(indices: torch.Tensor, n: int) -> np.ndarray:
    """How many times each of the ``n`` samples is in a draw of ``indices``."""
    return np.bincount(indices.numpy(), minlength=n)


def clouds(kind: str, n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, dim, generator=g) * 1.3 + 0.2, torch.randn(n, dim, generator=g)
    if kind == "ties":  # few distinct values: many equal projections, equal in x, in y and between them
        x, y = torch.round(x), torch.round(y)
    elif kind == "repeated rows":  # whole samples repeated, and zero rows (projections 0.0 and -0.0)
        x = x[torch.randint(max(1, n // 4), (n,), generator=g)]
        x[: n // 5] = 0.0
        y[-(n // 7):] = -0.0
    elif kind == "float64":
        x, y = x.double() * 1e3, y.double() * 1e-3
    elif kind == "images":  # flattened like the metric flattens samples
        x, y = x.reshape(n, 1, dim // 4, 4), y.reshape(n, 1, dim // 4, 4)
    return x, y


CASES = [("normal", 1, 3), ("normal", 2, 5), ("normal", 7, 2), ("normal", 257, 8), ("normal", 1000, 64),
         ("normal", 3001, 16), ("ties", 500, 3), ("ties", 2048, 2), ("repeated rows", 999, 8),
         ("float64", 640, 12), ("images", 300, 16)]


@pytest.mark.parametrize("kind, n, dim", CASES)
def test_point_estimate_is_bitwise_the_reference(kind, n, dim):
    x, y = clouds(kind, n, dim, seed=n)
    for seed, n_projections in ((0, 256), (3, 256), (1, 17)):
        assert sliced_wasserstein2(x, y, n_projections, seed) == reference_sliced_wasserstein2(x, y, n_projections, seed)
    assert sliced_wasserstein2(x, x) == reference_sliced_wasserstein2(x, x) == 0.0


@pytest.mark.parametrize("kind, n, dim", CASES)
def test_every_bootstrap_draw_is_the_reference(kind, n, dim):
    x, y = clouds(kind, n, dim, seed=n + 1)
    fast, slow = sliced_wasserstein_resampled(x, y, 2), reference_sliced_wasserstein_resampled(x, y, 2)
    g = torch.Generator().manual_seed(n)
    draws = [torch.arange(n), torch.zeros(n, dtype=torch.long), torch.full((n,), n - 1)]
    draws += list(torch.randint(n, (7, n), generator=g))  # 10 draws: the compiled loop's 4 at a time, and 2 more
    counts = np.stack([counts_of(idx, n) for idx in draws])
    together = fast(counts)
    for row, idx, value in zip(counts, draws, together):
        assert fast(row) == value  # one draw alone is the same as among others
        assert value == pytest.approx(slow(idx), rel=RTOL, abs=1e-13)


def test_the_draws_are_those_of_float32_arithmetic_to_its_rounding():
    """An earlier version computed each draw in float32: the intervals moved by its rounding alone."""
    x, y = clouds("normal", 1000, 64, seed=3)
    fast, single = sliced_wasserstein_resampled(x, y, 0), reference_sliced_wasserstein_resampled(x, y, 0, np.float32)
    counts = bootstrap_counts(1000, seed=0, name="sw", resamples=20)
    draws = [idx for chunk in resample_indices(1000, 20, bootstrap_generator(0, "sw")) for idx in chunk]
    assert fast(counts) == pytest.approx([single(idx) for idx in draws], rel=1e-5)


def test_bootstrap_intervals_and_floor_are_the_reference_with_and_without_strata():
    """As the metric computes them: samples against data draw 0, and data draw 1 against it (the floor)."""
    g = torch.Generator().manual_seed(4)
    n = 1500
    labels = torch.randint(5, (n,), generator=g)
    data, data1 = torch.randn(n, 8, generator=g) + labels[:, None], torch.randn(n, 8, generator=g) + labels[:, None]
    samples = torch.round(4 * (torch.randn(n, 8, generator=g) * 1.1 + labels[:, None])) / 4  # with ties
    for x, name in ((samples, "sliced_wasserstein"), (data1, "sliced_wasserstein_floor")):
        value = sliced_wasserstein2(x, data, seed=7)
        assert value == reference_sliced_wasserstein2(x, data, seed=7)
        for strata in (None, labels):
            kwargs = dict(seed=7, name=name, resamples=40, strata=strata)
            fast = bootstrap_count_replicates(sliced_wasserstein_resampled(x, data, 7), n, **kwargs, memo={})
            assert (interval_from_replicates(value, fast, nonnegative=True)
                    == pytest.approx(bootstrap_interval(reference_sliced_wasserstein_resampled(x, data, 7), value, n,
                                                        **kwargs, nonnegative=True), rel=RTOL))


def test_stratified_draws_are_the_reference():
    g = torch.Generator().manual_seed(9)
    labels = torch.randint(3, (700,), generator=g)
    x, y = torch.randn(700, 6, generator=g), torch.randn(700, 6, generator=g)
    fast, slow = sliced_wasserstein_resampled(x, y, 0), reference_sliced_wasserstein_resampled(x, y, 0)
    counts = bootstrap_counts(700, seed=0, name="sw", resamples=10, strata=labels)
    draws = [idx for chunk in resample_indices(700, 10, bootstrap_generator(0, "sw"), strata=labels) for idx in chunk]
    assert len(counts) == len(draws) == 10
    for row, idx in zip(counts, draws):  # the counts are those of the draws, in draw order
        assert np.array_equal(row, counts_of(idx, 700)) and fast(row) == pytest.approx(slow(idx), rel=RTOL)


def test_a_draw_must_hold_as_many_samples_as_the_cell():
    x, y = torch.randn(50, 3), torch.randn(50, 3)
    statistic = sliced_wasserstein_resampled(x, y, 0)
    assert statistic(np.ones(50, dtype=np.uint8)) == pytest.approx(sliced_wasserstein2(x, y), rel=1e-5)
    with pytest.raises(ValueError, match="50 counts summing to 50"):
        statistic(np.full(50, 2))


def test_unequal_sizes_are_refused():
    """The metric compares as many data samples as samples; both forms say so."""
    x, y = torch.randn(10, 3), torch.randn(12, 3)
    with pytest.raises(ValueError, match="equal-size"):
        sliced_wasserstein2(x, y)
    with pytest.raises(ValueError, match="equal-size"):
        sliced_wasserstein_resampled(x, y, 0)


def test_the_metric_of_cells_sharing_a_run_is_the_plain_computation():
    """The registered metric, for two cells of one run (the data draw, its projections, the floor and the
    bootstrap counts made once and shared): every column, and the replicates kept, as the plain code gives
    (the estimate bit for bit, the intervals to rounding)."""
    from solverbench.backbone import resolve_backbone
    from solverbench.guidance import Guidance
    from solverbench.metrics.context import MetricContext
    from solverbench.noise import data_generator
    from solverbench.registry import METRICS

    backbone = resolve_backbone("gmm", preset="gmm2d")
    g = torch.Generator().manual_seed(5)
    n, seed = 400, 3
    labels = torch.randint(backbone.num_classes, (n,), generator=g)

    def data(size, draw=0):
        return backbone.sample_data(size, data_generator(seed, draw), labels=labels[:size])

    memo: dict = {}
    for cell in range(2):
        samples = data(n, 10 + cell)[0] * 1.1  # stand-ins for two solvers' samples
        ctx = MetricContext(samples=samples, labels=labels, backbone=backbone, guidance=Guidance(), seed=seed,
                            reference_fn=lambda: samples, data_fn=data, memo=memo,
                            extras={"metric_options": {"bootstrap_resamples": 30}})
        row = METRICS.get("sliced_wasserstein")(ctx)
        expected = {}
        for x, column in ((samples, "sliced_wasserstein"), (data(n, 1)[0], "sliced_wasserstein_floor")):
            value = reference_sliced_wasserstein2(x, data(n)[0], seed=seed)
            plain = reference_sliced_wasserstein_resampled(x, data(n)[0], seed)
            replicates = [plain(idx) for chunk in resample_indices(n, 30, bootstrap_generator(seed, column), labels)
                          for idx in chunk]
            interval = interval_from_replicates(value, np.array(replicates), nonnegative=True)
            expected.update({column: value, f"{column}_ci_low": interval[0], f"{column}_ci_high": interval[1]})
            if column == "sliced_wasserstein":
                assert ctx.kept["bootstrap/sliced_wasserstein"] == pytest.approx(replicates, rel=RTOL)
        assert row == pytest.approx(expected, rel=RTOL)
        assert [row[c] for c in ("sliced_wasserstein", "sliced_wasserstein_floor")] == \
            [expected[c] for c in ("sliced_wasserstein", "sliced_wasserstein_floor")]


@pytest.mark.parametrize("n", [1, 2, 7, 300, 5000])
def test_the_radix_sort_of_columns_is_numpys_sort_and_an_order_that_gives_it(n):
    from solverbench.bootstrap_kernels import sorted_columns_with_order

    rng = np.random.default_rng(n)
    rows = np.stack([rng.normal(size=n) * 1e3, rng.normal(size=n) * 1e-9 - 1.0,  # mixed signs, tiny spreads
                     rng.integers(-3, 3, size=n).astype(np.float64),  # ties, zeros
                     np.full(n, 2.5),  # one value: every pass skipped
                     np.concatenate([[np.inf, -np.inf], rng.normal(size=n)])[:n]]
                    + [rng.normal(size=n) for _ in range(6)])  # 11 columns: a block of eight and a partial one
    values, order = sorted_columns_with_order(np.ascontiguousarray(rows.T))
    assert order.dtype == np.int32 and np.array_equal(values, np.sort(rows, axis=1))
    assert np.array_equal(np.take_along_axis(rows, order.astype(np.int64), axis=1), values)
    assert all(sorted(row) == list(range(n)) for row in order.tolist())


@pytest.mark.parametrize("n", [3, 1000, 8192 + 37])
def test_packed_counts_give_the_draws_of_the_plain_pass_bit_for_bit(n):
    """Counts below 256 go four draws to a word (and, past ``STAGED_ABOVE`` samples, gathered into sorted order
    first): the same sums, in the same order, as the one-draw-at-a-time pass over wider counts."""
    from solverbench.bootstrap_kernels import STAGED_ABOVE

    assert (n > STAGED_ABOVE) == (n == 8192 + 37)
    x, y = clouds("normal", n, 3, seed=n)
    fast = sliced_wasserstein_resampled(x, y, 1)
    rng = np.random.default_rng(n)
    counts = np.stack([np.bincount(rng.integers(n, size=n), minlength=n) for _ in range(7)])  # a partial group
    assert np.array_equal(fast(counts.astype(np.uint8)), fast(counts.astype(np.int64)))
    assert np.array_equal(fast(counts[:1].astype(np.uint8)), fast(counts[:1].astype(np.int32)))


def test_the_tiled_copies_are_numpys():
    from solverbench.bootstrap_kernels import squared_differences_transposed, transposed

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(70, 45)), rng.normal(size=(70, 45))
    assert np.array_equal(transposed(a), np.ascontiguousarray(a.T))
    expected = np.ascontiguousarray(np.square(a - b).T)
    assert np.array_equal(squared_differences_transposed(a, b), expected)
    spent = np.empty((45, 70))
    assert squared_differences_transposed(a, b, spent) is spent and np.array_equal(spent, expected)
    with pytest.raises(ValueError, match=r"contiguous float64 \(45, 70\) array"):
        squared_differences_transposed(a, b, np.empty((70, 45)))


def test_the_compiled_passes_refuse_what_would_read_outside_their_arrays():
    from solverbench.bootstrap_kernels import count_draws, sorted_cross_terms

    values, order = np.zeros((2, 0)), np.zeros((2, 0), dtype=np.int32)
    with pytest.raises(ValueError, match="sorted cross terms of 0 samples"):
        sorted_cross_terms(np.zeros((3, 0), dtype=np.uint8), order, values, np.zeros(2), np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"\(directions, 5\) values and order"):
        sorted_cross_terms(np.ones((3, 5), dtype=np.uint8), np.zeros((2, 4), dtype=np.int32), np.zeros((2, 5)),
                           np.zeros(2), np.zeros((2, 6)))
    counts = np.zeros((2, 9), dtype=np.int32)  # draws of 3 positions among a class of 4 columns
    count_draws(np.array([[3, 3, 0], [1, 2, 3]]), np.array([2, 4, 6, 8]), counts)
    assert counts.tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 2], [0, 0, 0, 0, 1, 0, 1, 0, 1]]
