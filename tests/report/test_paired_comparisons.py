"""Paired comparisons: bold means "not shown worse than the best at 95%, paired, Holm".

The statistics on synthetic numpy data (a constant offset under large common noise, the rejection
rate of equal solvers, Holm by hand, the replicate difference of a distribution metric, seeds, the
planned sample size), the marks on records whose cells' arrays are written here, and the report of a
small real grid with and without the arrays."""
import json
import shutil
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.paired_arrays import arrays_path, write_paired_arrays
from solverbench.metric_columns import KNOWN_BY_NAME, metric_columns
from solverbench.paired import (ALPHA, Difference, bootstrap_means, combine_seeds, holm,
                                       per_sample_difference, replicate_difference, sample_draws,
                                       samples_to_separate)
from solverbench.report.pairing import NOT_KEPT, CellArrays, PairedComparison
from solverbench.report.tables.aggregate import aggregate, best_flags
from solverbench.report.tables.best import PAIRED, UNPAIRED, Tie, best_marks
from solverbench.report.tables.table1 import table1
from solverbench.uncertainty import intervals_overlap

ERROR = KNOWN_BY_NAME["trajectory_error"]
SW = KNOWN_BY_NAME["sliced_wasserstein"]
Z_95, Z_80 = NormalDist().inv_cdf(0.95), NormalDist().inv_cdf(0.8)


def percentile_interval(values, draws):
    return tuple(np.percentile(bootstrap_means(values, draws), [2.5, 97.5]))


def offset_pair(n=256, offset=0.05, seed=0):
    """Two solvers' per-sample errors: large noise common to both (sd 1), b = a + offset + small noise."""
    rng = np.random.default_rng(seed)
    common = rng.gamma(2.0, 0.5, n)
    return common, common + offset + rng.normal(0, 0.01, n)


# -- the statistics ------------------------------------------------------------------------------------

def test_a_constant_offset_under_common_noise_is_separated_where_unpaired_intervals_overlap():
    a, b = offset_pair()
    draws = sample_draws(len(a), seed=0)
    assert intervals_overlap(percentile_interval(a, draws), percentile_interval(b, draws))
    d = per_sample_difference(b, a, draws, lower_is_better=True)  # b minus a: b is worse
    assert d.value == pytest.approx(np.mean(b - a))
    assert d.low > 0.04 and d.high < 0.06
    assert d.p_worse == pytest.approx(1 / (1 + len(draws)))  # no replicate on the not-worse side
    assert per_sample_difference(a, b, draws, lower_is_better=True).p_worse == 1.0


def test_equal_solvers_on_the_same_samples_are_called_worse_about_5_percent_of_the_time():
    rejected = 0
    for repetition in range(200):
        rng = np.random.default_rng(1000 + repetition)
        common = rng.gamma(2.0, 0.5, 80)  # correlated: the same noise through both solvers
        a, b = common + rng.normal(0, 0.3, 80), common + rng.normal(0, 0.3, 80)
        rejected += per_sample_difference(a, b, sample_draws(80, repetition), True).p_worse <= ALPHA
    assert 0.01 <= rejected / 200 <= 0.10


def test_draws_are_seeded_and_stratified_by_label():
    assert np.array_equal(sample_draws(10, 3), sample_draws(10, 3))
    assert not np.array_equal(sample_draws(10, 3), sample_draws(10, 4))
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    draws = sample_draws(10, 3, strata=labels, resamples=50)
    assert all(np.array_equal(np.bincount(labels[row], minlength=3), [3, 2, 5]) for row in draws)


def test_holm_steps_down_and_stops_at_the_first_p_value_above_its_level():
    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2 stops: 0.04 is not rejected though below 0.05
    rejected, levels = holm([0.01, 0.04, 0.03, 0.005])
    assert rejected == [True, False, False, True]
    assert levels == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])
    assert holm([]) == ([], [])


def test_a_distribution_metric_is_compared_through_the_difference_of_its_replicates():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.01, 200)  # the resampling noise both cells share (same indices)
    a_rep, b_rep = 0.080 + shared + rng.normal(0, 0.001, 200), 0.075 + shared + rng.normal(0, 0.001, 200)
    d = replicate_difference(0.080, 0.075, a_rep, b_rep, lower_is_better=True, samples=512)
    se = np.std(a_rep - b_rep, ddof=1)
    assert d.se == pytest.approx(se) and se < 0.002 < np.std(a_rep, ddof=1) / 4
    assert (d.value, d.low, d.high) == pytest.approx((0.005, 0.005 - 1.96 * se, 0.005 + 1.96 * se), rel=1e-3)
    assert d.p_worse == pytest.approx(1 - NormalDist().cdf(0.005 / se))
    higher_is_better = replicate_difference(0.080, 0.075, a_rep, b_rep, lower_is_better=False, samples=512)
    assert higher_is_better.p_worse == pytest.approx(NormalDist().cdf(0.005 / se))


def test_seeds_combine_as_the_intervals_do():
    one = Difference(0.02, 0.0, 0.04, 0.01, 0.03, 100)
    assert combine_seeds([one], True) is one
    both = combine_seeds([one, Difference(0.04, 0.02, 0.06, 0.01, 0.0, 100)], True)
    # pooled 0.01^2 * 2 / 4 = 5e-5 < spread var(0.02, 0.04) / 2 = 1e-4
    assert (both.value, both.se, both.samples) == pytest.approx((0.03, 0.01, 200))
    assert both.p_worse == pytest.approx(1 - NormalDist().cdf(3.0))


def test_the_planned_sample_size_gives_80_percent_power_at_the_level_it_was_planned_for():
    assert samples_to_separate(1024, 0.0021, 0.0012, 0.05) == pytest.approx(1024 * ((Z_95 + Z_80) * 0.0012 / 0.0021)
                                                                               ** 2)
    assert samples_to_separate(1024, 0.0, 0.0012, 0.05) is None
    # per-sample differences of mean 0.1 and sd 1: se 0.1 at 100 samples
    needed = round(samples_to_separate(100, 0.1, 0.1, 0.05))
    assert needed == 618
    rng = np.random.default_rng(0)
    differences = rng.normal(0.1, 1.0, (2000, needed))
    z = differences.mean(axis=1) / (differences.std(axis=1, ddof=1) / np.sqrt(needed))
    assert np.mean(z > Z_95) == pytest.approx(0.8, abs=0.03)


def test_a_tie_says_how_many_samples_would_separate_it():
    tie = Tie("ba-single", "ba", Difference(0.0021, -0.0003, 0.0045, 0.0012, 0.04, 1024), 0.05, True)
    assert tie.sentence(" at NFE 10") == ("ba-single vs ba at NFE 10: about 2,100 samples would separate them "
                                          "(observed difference 0.0021, paired se 0.0012 at 1,024)")
    same = Tie("b", "a", Difference(0.0, 0.0, 0.0, 0.0, 1.0, 64), 0.05, True)
    assert same.sentence(" at NFE 5") == "b vs a at NFE 5: no difference observed"


# -- bold marks on records whose cells kept their arrays ------------------------------------------------

def records_with_arrays(root, per_sample: dict, keep=None) -> pd.DataFrame:
    """One NFE block of solvers with per-sample trajectory errors; the cells of ``keep`` (all by default)
    write their arrays under ``root``."""
    rows = []
    for label, values in per_sample.items():
        cell_id = f"cell-{label}"
        rows.append({"grid": "g", "cell_id": cell_id, "backbone": "gmm", "backbone_params": "{}", "seed": 0,
                     "num_samples": len(values), "label_rule": "uniform", "solver": label, "solver_params": "{}",
                     "solver_label": label, "analysis_only": False, "nfe": 5, "nfe_measured": 5, "status": "ok",
                     "error": None, "trajectory_error": float(np.mean(values)),
                     "trajectory_error_ci_low": float(np.mean(values) - 0.2),
                     "trajectory_error_ci_high": float(np.mean(values) + 0.2)})
        if keep is None or label in keep:
            write_paired_arrays(root / "g", cell_id, {"per_sample/trajectory_error": values})
    return aggregate(pd.DataFrame(rows), [ERROR])


def test_bold_follows_the_paired_test_where_the_cells_kept_arrays(tmp_path):
    a, b = offset_pair()
    records = records_with_arrays(tmp_path, {"a": a, "b": b})
    ranked = pd.Series(True, index=records.index)
    assert best_flags(records, ranked, ERROR).tolist() == [True, True]  # unpaired: the intervals overlap
    marks = best_marks(records, ranked, ERROR, PairedComparison(CellArrays(tmp_path), ERROR))
    assert marks.bold.tolist() == [True, False] and marks.rule == PAIRED and not marks.ties


def test_a_cell_without_arrays_falls_back_to_overlapping_intervals_and_says_so(tmp_path):
    a, b = offset_pair()
    noise = np.random.default_rng(1).normal(0, 0.05, len(a))
    c = a + noise - noise.mean() + 0.0005  # a little worse than a on average, far from shown worse
    records = records_with_arrays(tmp_path, {"a": a, "b": b, "c": c}, keep={"a", "c"})
    marks = best_marks(records, pd.Series(True, index=records.index), ERROR,
                       PairedComparison(CellArrays(tmp_path), ERROR))
    assert marks.bold.tolist() == [True, True, True]  # c: paired, not shown worse; b: unpaired, overlapping
    assert marks.paired == ["c"] and list(marks.unpaired) == ["b"]
    assert marks.rule == f"{PAIRED}, {UNPAIRED} for b ({NOT_KEPT})"
    assert [tie.solver for tie in marks.ties] == ["c"]


# -- Table 1 of a small real grid ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    """gmm2d, three solvers at NFE 4, 64 samples, trajectory error and sliced Wasserstein: its results folder."""
    results = tmp_path_factory.mktemp("paired") / "results"
    grid = parse_grid({"name": "pairs", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": ["euler", "heun", "midpoint"], "nfe": [4], "num_samples": 64,
                       "batch_size": 64, "metrics": ["trajectory_error", "sliced_wasserstein"],
                       "reference": {"rtol": 1e-4, "atol": 1e-4}})
    run_grid(grid, results, progress=False)
    return results


def real_table1(results):
    rows = pd.read_parquet(results / "pairs" / "results.parquet")
    ranked, _ = table1(rows, metric_columns(rows), "pairs", CellArrays(results))
    return rows, ranked


def test_table1_of_a_real_grid_names_the_paired_rule(small_grid):
    _, ranked = real_table1(small_grid)
    assert ranked.notes[0].startswith("Bold: the best value in each NFE block and every value not shown worse than "
                                      "it at 95%: paired, Holm")
    assert "trajectory error: paired, Holm at NFE 4." in ranked.notes
    assert "sliced Wasserstein-2: paired, Holm at NFE 4." in ranked.notes


def test_a_real_cell_without_arrays_falls_back_to_intervals_and_the_note_says_so(small_grid, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(small_grid, results)
    rows = pd.read_parquet(results / "pairs" / "results.parquet")
    best = {rows.loc[rows[column].idxmin(), "solver_label"] for column in ("trajectory_error", "sliced_wasserstein")}
    other = next(label for label in rows["solver_label"] if label not in best)  # best in neither metric
    arrays_path(results / "pairs", rows.loc[rows["solver_label"] == other, "cell_id"].iloc[0]).unlink()
    _, ranked = real_table1(results)
    for metric in ("trajectory error", "sliced Wasserstein-2"):
        assert f"{metric}: paired, Holm, unpaired intervals for {other} ({NOT_KEPT}) at NFE 4." in ranked.notes


def test_table1_without_a_results_store_compares_by_intervals_and_says_so():
    rows = pd.DataFrame([{"grid": "g", "cell_id": f"c{i}", "solver": s, "solver_params": json.dumps({}),
                          "solver_label": s, "analysis_only": False, "nfe": 5, "nfe_measured": 5, "seed": 0,
                          "num_samples": 8, "status": "ok", "error": None, "trajectory_error": v,
                          "trajectory_error_ci_low": v - 0.01, "trajectory_error_ci_high": v + 0.01}
                         for i, (s, v) in enumerate([("a", 0.1), ("b", 0.105)])])
    ranked, _ = table1(rows, [ERROR], "t")
    assert [row.cells[2].bold for row in ranked.rows] == [True, True]
    assert "trajectory error: unpaired intervals (no results store to read) at NFE 5." in ranked.notes


def test_draws_drawn_again_block_by_block_are_those_kept_whole():
    from solverbench.paired import draw_chunks

    labels = np.repeat([0, 1, 2], 2000)  # 6000 samples: 699 draws a block, three blocks
    blocks = list(draw_chunks(6000, 7, strata=labels))
    assert len(blocks) == 3 and blocks[0].dtype == np.int32
    whole = sample_draws(6000, 7, strata=labels)
    assert np.array_equal(np.concatenate(blocks), whole)
    values = np.random.default_rng(0).normal(size=6000)
    assert np.array_equal(bootstrap_means(values, whole), bootstrap_means(values, iter(blocks)))
