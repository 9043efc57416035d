"""`run`: rows, provenance, resumability, batch-size independence, failed cells, grid errors."""
import pandas as pd
import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.cli import main
from solverbench.grid import GridError, parse_grid
from solverbench.hashing import spec_hash
from solverbench.studies.sweep import Sweep, cells as expand_cells
from solverbench.engine import run_grid

SMALL = {
    "name": "small",
    "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
    "solvers": ["euler", {"name": "heun", "nfe": [4]}, {"name": "rk4", "params": {}}],
    "nfe": [2, 5],
    "guidance": {"scale": [1.0, 2.0], "interval": [0.0, 1.0]},
    "num_samples": 24,
    "batch_size": 24,
    "metrics": ["trajectory_error", "sliced_wasserstein", "log_likelihood"],
    "reference": {"rtol": 1e-7, "atol": 1e-7},
}
METRIC_COLUMNS = ["trajectory_error", "trajectory_error_max", "sliced_wasserstein", "log_likelihood"]


def run_small(tmp_path, **overrides):
    grid = parse_grid({**SMALL, **overrides})
    return run_grid(grid, tmp_path, progress=False).frame


def test_one_row_per_cell_with_parameters_metrics_and_provenance(tmp_path):
    rows = run_small(tmp_path)
    assert len(rows) == (2 + 1 + 2) * 2
    assert rows["cell_id"].is_unique
    assert (rows["status"] == "ok").all()
    assert (rows["nfe_measured"] == rows["nfe"]).all()
    for column in ["backbone_params", "solver_params", "solver_label", "schedule", "cfg_scale", "seed",
                   "wall_time", "config_hash", "versions", "git_commit", "device", "timestamp", *METRIC_COLUMNS]:
        assert column in rows
    assert not any(c.startswith("sidenet") for c in rows)  # these solvers count nothing besides NFE
    # the exact likelihood is only defined without guidance
    guided = rows[rows["cfg_scale"] == 2.0]
    assert guided["log_likelihood"].isna().all()
    assert guided["metrics_not_applicable"].str.contains("log_likelihood").all()
    assert rows.loc[rows["cfg_scale"] == 1.0, "log_likelihood"].notna().all()
    assert (tmp_path / "small" / "samples").is_dir()


def test_more_steps_less_error(tmp_path):
    rows = run_small(tmp_path).query("solver == 'euler' and cfg_scale == 1.0").set_index("nfe")
    assert rows.loc[5, "trajectory_error"] < rows.loc[2, "trajectory_error"]


def test_interrupted_sweep_resumes_without_duplicates(tmp_path, monkeypatch):
    clean = run_small(tmp_path / "clean")

    original = Sweep.run_cell
    calls = {"n": 0}

    def dying(self, cell, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C mid-sweep
        return original(self, cell, *args)

    monkeypatch.setattr(Sweep, "run_cell", dying)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        run_small(tmp_path / "resumed")
    # one line for the console: how many finished cells were kept, and where
    assert str(interrupted.value).startswith("interrupted: the 3 cell(s) finished in this run are kept in ")
    partial = pd.read_parquet(tmp_path / "resumed" / "small" / "results.parquet")
    assert len(partial) == 3  # every finished cell is on disk and readable

    monkeypatch.setattr(Sweep, "run_cell", original)
    ran = []
    monkeypatch.setattr(Sweep, "run_cell", lambda self, cell, *args: ran.append(cell) or original(self, cell, *args))
    resumed = run_small(tmp_path / "resumed")
    assert len(ran) == len(clean) - 3  # only the missing cells ran
    assert resumed["cell_id"].is_unique and len(resumed) == len(clean)
    a = clean.set_index("cell_id").sort_index()[METRIC_COLUMNS]
    b = resumed.set_index("cell_id").sort_index()[METRIC_COLUMNS]
    pd.testing.assert_frame_equal(a, b)


def test_force_redoes_cells(tmp_path, monkeypatch):
    run_small(tmp_path)
    ran = []
    original = Sweep.run_cell
    monkeypatch.setattr(Sweep, "run_cell", lambda self, cell, *args: ran.append(cell) or original(self, cell, *args))
    run_small(tmp_path)
    assert ran == []
    rows = run_grid(parse_grid(SMALL), tmp_path, force=True, progress=False).frame
    assert len(ran) == len(rows) == 10


def test_samples_do_not_depend_on_batch_size(tmp_path):
    one = run_small(tmp_path / "a", batch_size=24).set_index("cell_id").sort_index()
    many = run_small(tmp_path / "b", batch_size=5).set_index("cell_id").sort_index()
    for column in METRIC_COLUMNS:
        pd.testing.assert_series_equal(one[column], many[column], rtol=1e-5)
    a = torch.load(tmp_path / "a" / "small" / "samples" / f"{one.index[0]}.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "small" / "samples" / f"{one.index[0]}.pt", weights_only=True)
    torch.testing.assert_close(a["samples"], b["samples"], rtol=1e-5, atol=1e-6)


def test_balanced_labels_give_sample_i_class_i_mod_k_and_their_own_cells_and_references(tmp_path):
    """``labels: balanced`` (the BA authors' and DiT's generate.py) gives sample i class i mod K; it is part
    of the cell's id and of the reference solve's key, while the default keeps the ids it always had."""
    grid = {**SMALL, "solvers": ["euler"], "nfe": [2], "guidance": {"scale": 2.0}, "metrics": ["trajectory_error"]}
    uniform = run_small(tmp_path, **grid)
    both = run_small(tmp_path, **grid, labels="balanced")  # the table keeps the earlier cell
    balanced = both[~both["cell_id"].isin(uniform["cell_id"])].reset_index(drop=True)
    assert list(uniform["label_rule"]) == ["uniform"] and list(balanced["label_rule"]) == ["balanced"]
    assert set(uniform["cell_id"]).isdisjoint(balanced["cell_id"])
    assert len(list((tmp_path / ".cache" / "references").glob("*.pt"))) == 2
    stored = torch.load(tmp_path / "small" / "samples" / f"{balanced['cell_id'][0]}.pt", weights_only=True)
    k = GaussianMixture(preset="gmm2d").num_classes
    assert stored["labels"].tolist() == [i % k for i in range(len(stored["labels"]))]
    explicit = parse_grid({**SMALL, **grid, "labels": "uniform"})
    default = parse_grid({**SMALL, **grid})
    assert ([spec_hash(c.identity(explicit)) for c in expand_cells(explicit)]
            == [spec_hash(c.identity(default)) for c in expand_cells(default)])


@sb.register_solver("test-nan-after-3")
class NanSolver(sb.Solver):
    """Euler that blows up to NaN when given more than 3 steps."""

    order = 1

    def solve(self, field, x, plan):
        for t, t_next, _ in plan.steps():
            x = x + (t_next - t) * field(x, t)
        return x * float("nan") if plan.intervals > 3 else x


@sb.register_solver("test-raises")
class RaisingSolver(sb.Solver):
    """Always raises."""

    def solve(self, field, x, plan):
        raise RuntimeError("boom")


def test_nan_cell_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    rows = run_small(tmp_path, solvers=["test-nan-after-3", "euler"], guidance={"scale": 1.0})
    by = rows.set_index(["solver", "nfe"])
    assert by.loc[("test-nan-after-3", 5), "status"] == "failed"
    assert "not finite" in by.loc[("test-nan-after-3", 5), "error"]
    assert by.loc[("test-nan-after-3", 2), "status"] == "ok"
    assert (rows[rows["solver"] == "euler"]["status"] == "ok").all()


def test_raising_cell_is_recorded_reported_and_retried(tmp_path, capsys):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("name: r\nbackbones: [gmm]\nsolvers: [test-raises, euler]\nnfe: [2]\nnum_samples: 4\n"
                         "reference: {rtol: 1.0e-6, atol: 1.0e-6}\n")
    assert main(["run", str(grid_file), "--results", str(tmp_path), "--no-progress"]) == 1
    assert "boom" in capsys.readouterr().err
    rows = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert set(rows["status"]) == {"error", "ok"}
    assert main(["run", str(grid_file), "--results", str(tmp_path), "--no-progress"]) == 1  # retried, fails again


@pytest.mark.parametrize("change, key, fragment", [
    ({"solvers": ["eulr"]}, "solvers[0].name", "known solvers:"),
    ({"solvers": [{"name": "euler", "params": {"order": 3}}]}, "solvers[0].params", "accepts the parameters"),
    ({"nfe": [0, 5]}, "nfe", "positive integer"),
    ({"nfe": "ten"}, "nfe", "positive integer"),
    ({"backbones": [{"name": "gmm", "params": {"preset": "huge"}}]}, "backbones[0].params", "known presets"),
    ({"schedule": "cosine"}, "schedule[0]", "known schedules"),
    ({"guidance": {"scale": 2.0, "interval": [0.9, 0.1]}}, "guidance.interval", "t_lo < t_hi"),
    ({"dtype": "float8"}, "dtype", "float32, float64, bfloat16, float16"),
    ({"metrics": ["fdi"]}, "metrics[0]", "known metrics:"),
    ({"device": "cuda"}, "device", "not available"),
    ({"sedes": [1]}, "sedes", "allowed keys"),
    ({"labels": "stratified"}, "labels", "balanced (sample i gets class i mod num_classes"),
    ({"plugins": ["missing.py"]}, "plugins[0]", "no such file"),
])
def test_bad_grid_fails_before_any_work(tmp_path, change, key, fragment):
    if change.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GridError) as err:
        parse_grid({**SMALL, **change}, path=tmp_path / "g.yaml")
    message = str(err.value)
    assert repr(key) in message and fragment in message


def test_bad_grid_on_the_command_line(tmp_path, capsys):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("backbones: [gmm]\nsolvers: [euler]\nnfe: [-1]\n")
    assert main(["run", str(grid_file), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'nfe'" in err and "-1" in err
    assert not (tmp_path / "g").exists()


def test_list_valued_solver_params_expand_to_the_product():
    grid = parse_grid({**SMALL, "solvers": [{"name": "reference", "params": {"rtol": [1e-3, 1e-4], "atol": [1e-3, 1e-4]}}]})
    cells = expand_cells(grid)
    assert len(cells) == 4 * 2  # 4 parameter combinations x 2 guidance scales, adaptive: one NFE-less cell
    assert all(c.nfe is None for c in cells)


@sb.register_backbone("test-counted-gmm")
class CountedGaussianMixture(GaussianMixture):
    """gmm2d that counts how often it is built."""

    builds = 0

    def __init__(self, **params):
        type(self).builds += 1
        super().__init__("gmm2d", **params)

    def identity(self):
        return {**super().identity(), "class": "test-counted-gmm"}


def test_each_backbone_is_built_once_per_grid(tmp_path):
    """Parsing builds a backbone to check its parameters; the run and its guidance check reuse it."""
    CountedGaussianMixture.builds = 0
    grid = parse_grid({**SMALL, "backbones": ["test-counted-gmm", {"name": "test-counted-gmm", "params": {"seed": 3}}],
                       "solvers": ["euler"], "nfe": [2], "metrics": ["trajectory_error"]})
    rows = run_grid(grid, tmp_path, progress=False).frame
    assert (rows["status"] == "ok").all() and len(rows) == 2 * 2
    assert CountedGaussianMixture.builds == 2


def test_results_put_many_replaces_rows_of_the_same_cells_and_persists(tmp_path):
    from solverbench.results import ResultsTable

    table = ResultsTable(tmp_path)
    table.put({"cell_id": "a", "status": "error", "value": None})
    table.put_many([{"cell_id": "a", "status": "ok", "value": 1.0}, {"cell_id": "b", "status": "ok", "value": 2.0}])
    again = ResultsTable(tmp_path)
    assert sorted(again.frame["cell_id"]) == ["a", "b"] and again.done() == {"a", "b"}
    assert again.frame.set_index("cell_id")["value"].to_dict() == {"a": 1.0, "b": 2.0}


def test_results_report_the_grid_as_last_run_and_keep_older_cells_as_a_cache(tmp_path):
    from solverbench.report import write_report
    from solverbench.results import read_results

    run_small(tmp_path, nfe=[2, 5])
    table = run_grid(parse_grid({**SMALL, "nfe": [5]}), tmp_path, progress=False)  # the NFE-5 cells are reused
    assert set(read_results(tmp_path)["nfe"]) == {4, 5}  # heun's own NFE list is [4]
    assert set(read_results(tmp_path, superseded=True)["nfe"]) == {2, 4, 5}
    assert len(table.current()) == len(read_results(tmp_path)) < len(table.frame)
    index = write_report(tmp_path, tmp_path / "report").read_text()
    assert "stored rows of cells that the grids no longer have" in index
    run_small(tmp_path, nfe=[2, 5])  # back to the first grid: nothing to compute, all reported again
    assert set(read_results(tmp_path)["nfe"]) == {2, 4, 5}
