"""Sequential sample sizes, ``num_samples: {start, max, until: separated}``: a column of cells sampled look by
look (only the new indices each time) until every solver but the best is shown worse than it, or at max; the
numbers of a stopped cell are those of a plain run of as many samples."""
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import solverbench.reference as reference_module
import solverbench.studies.sweep as sweep_module
from solverbench.engine import run_grid
from solverbench.grid import GridError, load_grid, parse_grid
from solverbench.grid.values import SequentialSamples
from solverbench.hashing import spec_hash
from solverbench.paired import Difference
from solverbench.paired_arrays import read_paired_arrays
from solverbench.metric_columns import KNOWN_BY_NAME
from solverbench.report.pairing import CellArrays
from solverbench.report.tables.aggregate import aggregate
from solverbench.report.tables.table1 import block_marks, samples_text
from solverbench.studies.sequential import Measured, judge_look
from solverbench.studies.sweep import Sweep, cells

SIZES = {"start": 32, "max": 128, "until": "separated"}
GRID = {"name": "seq", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "nfe": [2],
        "num_samples": SIZES, "batch_size": 16, "metrics": ["trajectory_error"],
        "reference": {"rtol": 1e-5, "atol": 1e-5}}
# at NFE 2 Euler beats Heun (one step) by far; DPM-Solver++ 2M and 3M take the same two first- and second-order
# steps there: equal samples under two labels
APART = ["euler", "heun"]
TIED = [{"name": "flow-dpm", "params": {"order": [2, 3]}}]


def grid(**overrides):
    """``GRID`` with ``overrides`` (a key given None left out)."""
    return parse_grid({key: value for key, value in {**GRID, **overrides}.items() if value is not None})


def test_looks_double_from_start_and_end_at_max():
    def looks(start, most):
        return SequentialSamples(start, most, "separated", ("trajectory_error",)).looks()

    assert looks(256, 1000) == (256, 512, 1000)
    assert looks(256, 1024) == (256, 512, 1024)
    assert looks(8, 8) == (8,)


def test_the_grid_decides_on_its_ranked_metrics_that_keep_paired_arrays():
    parsed = grid(solvers=["euler"], metrics=["trajectory_error", "sliced_wasserstein", "log_likelihood"],
                  batch_size=None)
    assert parsed.sequential.on == ("trajectory_error", "sliced_wasserstein")  # log-likelihood is not ranked
    assert (parsed.num_samples, parsed.batch_size) == (128, 32)  # the most a cell takes; batches of start
    named = grid(solvers=["euler"], metrics=["trajectory_error", "sliced_wasserstein"],
                 num_samples={**SIZES, "on": ["sliced_wasserstein"]})
    assert named.sequential.on == ("sliced_wasserstein",)


def test_a_plain_integer_keeps_its_cell_ids():
    plain = grid(solvers=APART, num_samples=32)
    assert plain.sequential is None
    # the ids of this grid before sequential sample sizes existed: existing results stay valid
    assert [spec_hash(cell.identity(plain)) for cell in cells(plain)] == ["c1b7394d898b7d19", "10ede8fde2699b2e"]
    sequential = grid(solvers=APART)
    assert cells(sequential)[0].identity(sequential)["num_samples"] == SIZES


@pytest.mark.parametrize("overrides, expected", [
    ({"num_samples": {**SIZES, "start": 0}}, "grid key 'num_samples.start': bad value 0"),
    ({"num_samples": {**SIZES, "start": True}}, "grid key 'num_samples.start': bad value True"),
    ({"num_samples": {**SIZES, "max": 16}}, "grid key 'num_samples.max': bad value 16; allowed: an integer >= start"),
    ({"num_samples": {**SIZES, "until": "converged"}}, "grid key 'num_samples.until': bad value 'converged'"),
    ({"num_samples": {"start": 32, "max": 128}}, "sequential sample sizes need until"),
    ({"num_samples": {**SIZES, "step": 2}}, "allowed: a positive integer, or sequential sample sizes with the keys"),
    ({"num_samples": {**SIZES, "on": ["fid"]}}, "grid key 'num_samples.on[0]': bad value 'fid'; the grid's metrics"),
    ({"num_samples": {**SIZES, "on": ["trajectory_error_max"]}}, "a ranked metric column that keeps paired arrays"),
    ({"num_samples": {**SIZES, "on": ["log_likelihood"]}, "metrics": ["trajectory_error", "log_likelihood"]},
     "grid key 'num_samples.on[0]': bad value 'log_likelihood'"),
    ({"num_samples": {**SIZES, "on": []}}, "grid key 'num_samples.on': bad value []"),
    ({"num_samples": {**SIZES, "on": ["trajectory_error", "trajectory_error"]}}, "a column named twice"),
    ({"metrics": ["log_likelihood"]}, "no metric of the grid can show one solver worse than another"),
    ({"batch_size": 24}, "grid key 'batch_size': bad value 24; with sequential sample sizes it must divide"),
])
def test_bad_sequential_sizes_are_refused_in_one_line(overrides, expected):
    with pytest.raises(GridError) as err:
        grid(solvers=APART, **overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_only_a_sweep_takes_sequential_sizes():
    raw = {"name": "inv", "kind": "inversion", "backbones": [{"name": "gmm", "params": {"preset": "gmm-smooth"}}],
           "solvers": ["euler"], "nfe": [4], "num_samples": SIZES}
    with pytest.raises(GridError, match="sequential sample sizes are for kind: sweep"):
        parse_grid(raw)


def measured(label, values, ranked=True):
    return Measured(label, ranked, {"trajectory_error": float(np.mean(values))},
                    {"per_sample/trajectory_error": np.asarray(values, dtype=np.float64)})


def test_a_look_separates_only_where_every_other_solver_is_shown_worse():
    rng = np.random.default_rng(0)
    common = rng.gamma(2.0, 0.5, 64)
    good, bad = measured("good", common), measured("bad", common + 0.1 + rng.normal(0, 0.01, 64))
    look = judge_look([bad, good], ["trajectory_error"], samples=64, seed=0, labels=None, level=0.05 / 3)
    assert look.separated and [(c.solver, c.best, c.rejected) for c in look.comparisons] == [("bad", "good", True)]
    twin = measured("twin", common)
    tied = judge_look([good, bad, twin], ["trajectory_error"], samples=64, seed=0, labels=None, level=0.05 / 3)
    assert not tied.separated and {c.solver: c.rejected for c in tied.comparisons} == {"bad": True, "twin": False}
    alone = judge_look([good, measured("oracle", common - 1, ranked=False)], ["trajectory_error"], samples=64, seed=0,
                      labels=None, level=0.05)
    assert alone.separated and alone.comparisons == ()  # one ranked solver: nothing to separate
    unmeasured = judge_look([good, bad], ["sliced_wasserstein"], samples=64, seed=0, labels=None, level=0.05)
    assert not unmeasured.separated  # no deciding metric measured here: never separated, it runs to max
    assert isinstance(look.comparisons[0].difference, Difference)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two columns (clearly apart; tied) and the plain run of the stopped column at its samples, each cell's solved
    samples and reference endpoints counted."""
    solved = {"samples": 0, "reference": 0}
    sample, solve_reference = sweep_module.sample, reference_module.solve_reference

    def counted_sample(backbone, solver, noise, *args, **kwargs):
        solved["samples"] += len(noise)
        return sample(backbone, solver, noise, *args, **kwargs)

    def counted_reference(backbone, noise, *args, **kwargs):
        solved["reference"] += len(noise)
        return solve_reference(backbone, noise, *args, **kwargs)

    results = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_module, "sample", counted_sample)
        patch.setattr(reference_module, "solve_reference", counted_reference)
        apart = run_grid(grid(solvers=APART), results, progress=False).frame
        apart_solved = dict(solved)
        tied = run_grid(grid(name="tied", solvers=TIED), results, progress=False).frame
    # a results folder of its own: its reference solved apart, not read from the sequential run's cache
    plain = run_grid(grid(name="plain", solvers=APART, num_samples=32), tmp_path_factory.mktemp("plain"),
                     progress=False)
    return results, apart.set_index("solver_label"), tied.set_index("solver_label"), plain, apart_solved, solved


def test_a_clearly_worse_solver_stops_the_column_at_its_first_look(runs):
    _, apart, _, _, solved, _ = runs
    assert (apart["status"] == "ok").all()
    assert (apart["stop_reason"] == "separated").all() and (apart["looks"] == 1).all()
    assert (apart["num_samples"] == 32).all() and (apart["num_samples_max"] == 128).all()
    assert apart.loc["heun", "trajectory_error"] > apart.loc["euler", "trajectory_error"]
    assert solved == {"samples": 2 * 32, "reference": 32}


def test_equal_solvers_run_to_max_sampling_only_the_new_indices_at_each_look(runs):
    _, apart, tied, _, apart_solved, solved = runs
    assert (tied["stop_reason"] == "max reached").all() and (tied["looks"] == 3).all()
    assert (tied["num_samples"] == 128).all()
    assert tied["trajectory_error"].nunique() == 1
    # looks at 32, 64, 128: each cell solved 128 samples (not 32 + 64 + 128), the reference 128 - 32 more
    assert solved["samples"] - apart_solved["samples"] == 2 * 128
    assert solved["reference"] - apart_solved["reference"] == 128 - 32
    # the costs are those of every batch of every look
    assert (tied["nfe_measured"] == 2).all() and (tied["wall_time"] > 0).all()
    assert np.allclose(tied["wall_time_per_sample"] * 128, tied["wall_time"])


def test_a_stopped_cell_has_the_numbers_of_a_plain_run_of_its_samples(runs):
    results, apart, _, plain_table, _, _ = runs
    plain = plain_table.frame.set_index("solver_label")
    metrics = [c for c in plain if c.startswith("trajectory_error")]
    for label in APART:
        ours, theirs = apart.loc[label], plain.loc[label]
        assert [ours[c] for c in metrics] == [theirs[c] for c in metrics]  # bit for bit
        folders = (results / "seq", plain_table.directory)
        saved = [torch.load(folder / "samples" / f"{row['cell_id']}.pt")
                 for folder, row in zip(folders, (ours, theirs))]
        assert torch.equal(saved[0]["samples"], saved[1]["samples"])
        assert torch.equal(saved[0]["labels"], saved[1]["labels"])
        kept = [read_paired_arrays(folder, row["cell_id"]) for folder, row in zip(folders, (ours, theirs))]
        assert kept[0].keys() == kept[1].keys() and all(np.array_equal(kept[0][k], kept[1][k]) for k in kept[0])


def test_a_rerun_skips_the_done_columns_and_force_redoes_them(runs, monkeypatch):
    results, apart, _, _, _, _ = runs
    monkeypatch.setattr(Sweep, "run_column", lambda *args: pytest.fail("a column ran"))
    again = run_grid(grid(solvers=APART), results, progress=False).frame.set_index("solver_label")
    assert again["timestamp"].equals(apart["timestamp"])
    monkeypatch.undo()
    forced = run_grid(grid(solvers=APART), results, progress=False, force=True).frame.set_index("solver_label")
    assert forced["trajectory_error"].equals(apart["trajectory_error"]) and (forced["looks"] == 1).all()


def test_the_report_shows_a_separated_column_as_the_sweep_decided(runs):
    """The sweep's test is the report's comparison, stricter: with one seed, only the best of a stopped column is
    bold."""
    results, apart, _, _, _, _ = runs
    metric = [KNOWN_BY_NAME["trajectory_error"]]
    records = aggregate(apart.reset_index(), metric)
    (_, _, marks), = block_marks(records, metric, CellArrays(results))
    assert marks.rule == "paired, Holm"
    assert dict(zip(records["solver_label"], marks.bold)) == {"euler": True, "heun": False}


def test_a_grid_file_may_write_on_unquoted(tmp_path):
    text = ("name: seq\nbackbones: [{name: gmm, params: {preset: gmm2d}}]\nsolvers: [euler, heun]\nnfe: [2]\n"
            "metrics: [trajectory_error, sliced_wasserstein]\n"
            "num_samples: {start: 32, max: 128, until: separated, on: [sliced_wasserstein]}\n")
    path = tmp_path / "seq.yaml"
    path.write_text(text)
    assert load_grid(path).sequential.on == ("sliced_wasserstein",)
    with pytest.raises(GridError, match="YAML 1.1 reads an unquoted on as true; quote it"):
        parse_grid(yaml.safe_load(text))  # YAML's own loader reads the key as True


def test_a_column_that_can_never_be_separated_is_named_before_any_work(capsys):
    """21 looks (1 to 2^20 samples) at level 0.05 / 21, shared by 5 comparisons: the first faces 0.00048, below the
    smallest p-value of the paired bootstrap (1/2001)."""
    many = grid(solvers=["euler", "heun", "midpoint", "rk4", *TIED], nfe=[4], batch_size=1,
                num_samples={"start": 1, "max": 2 ** 20, "until": "separated"})
    Sweep(many, workspace=None).units()
    assert "1 column(s) of up to 6 ranked solvers can never be separated" in capsys.readouterr().err
    Sweep(grid(solvers=APART), workspace=None).units()
    assert "never" not in capsys.readouterr().err


def test_the_table_says_how_many_samples_its_cells_took():
    rows = pd.DataFrame({"num_samples": [32, 128, 128, 0], "status": ["ok", "ok", "ok", "error"]})
    assert samples_text(rows) == "32 to 128"
    assert samples_text(rows.iloc[1:3]) == "128"
