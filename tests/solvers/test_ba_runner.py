"""BA solvers in a sweep (trained once, cached, logged) and `solverbench train-sidenet`."""
import pandas as pd
import pytest
import yaml

from backbones.gmm import GaussianMixture
from solverbench.cli import main
from solverbench.grid import load_grid, parse_grid
from solverbench.results import read_results
from solverbench.engine import run_grid
from solvers.ba.checkpoint import load_checkpoint

TINY = {"iterations": 2, "width": 16, "depth": 1, "embed_dim": 8, "batch_size": 16, "chain_length": 2}
GRID = {
    "name": "ba-small",
    "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
    "solvers": [{"name": "ba", "params": {"nodes": [0, 2]}}, "ba-single", {"name": "ba", "params": {"sidenet": "off"}},
                {"name": "ba-oracle", "params": {"rtol": 1e-6, "atol": 1e-6}}],
    "nfe": [3],
    "num_samples": 8,
    "metrics": ["trajectory_error"],
    "reference": {"rtol": 1e-6, "atol": 1e-6},
    "solver_settings": {"ba": TINY},
}


def test_a_sweep_trains_once_and_logs_the_sidenet(tmp_path):
    rows = run_grid(parse_grid(GRID), tmp_path, progress=False).frame.set_index("solver_label")
    assert (rows["status"] == "ok").all() and (rows["nfe_measured"] == 3).all()
    assert len(list((tmp_path / ".cache" / "sidenet").iterdir())) == 1  # one SideNet for three solvers
    trained = rows.loc[["ba(rule=lobatto, nodes=0)", "ba(rule=lobatto, nodes=2)", "ba-single(nodes=3)"]]
    assert (trained["sidenet_params"] > 0).all() and trained["sidenet_param_ratio"].isna().all()
    assert (trained["sidenet_iterations"] == 2).all() and (trained["sidenet_batch_size"] == 16).all()
    assert rows.loc["ba(rule=lobatto, nodes=2, sidenet=off)", "sidenet_params"] == 0
    # the training-cost columns every trained sampler reports (the report's error-against-training-cost view)
    assert (trained["train_seconds"] == trained["sidenet_train_seconds"]).all() and (trained["train_seconds"] > 0).all()
    assert (trained["trainable_params"] == trained["sidenet_params"]).all()
    oracle = rows[rows.index.str.startswith("ba-oracle")]
    assert oracle["analysis_only"].all() and not trained["analysis_only"].any()


def test_a_grid_checkpoint_is_read_next_to_the_grid_file(tmp_path):
    out = tmp_path / "grids" / "tiny.pt"
    assert main(["train-sidenet", "gmm", "--backbone-params", "{preset: gmm2d}", "--out", str(out),
                 "--no-progress", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]) == 0
    loaded = load_checkpoint(out, GaussianMixture("gmm2d"))
    assert loaded.stats["iterations"] == 2 and loaded.config.width == 16
    grid_file = tmp_path / "grids" / "g.yaml"
    grid_file.write_text(yaml.safe_dump({**GRID, "solvers": [{"name": "ba", "params": {"checkpoint": "tiny.pt"}}],
                                         "solver_settings": {}}))
    rows = run_grid(load_grid(grid_file), tmp_path / "results", progress=False).frame
    assert rows["status"].tolist() == ["ok"] and rows["sidenet_checkpoint"].tolist() == [str(out)]


def test_replacing_a_checkpoint_file_reruns_its_cells(tmp_path):
    """Cells are identified by the checkpoint's bytes, not only its name: a new file is not 'already done'."""
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({**GRID, "solvers": [{"name": "ba", "params": {"checkpoint": "sn.pt"}}],
                                         "solver_settings": {}}))
    options = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]

    def train(seed):
        assert main(["train-sidenet", "gmm", "--backbone-params", "{preset: gmm2d}", "--out", str(tmp_path / "sn.pt"),
                     "--no-progress", f"--seed={seed}", *options]) == 0

    def run():
        return run_grid(load_grid(grid_file), tmp_path / "results", progress=False).current()

    train(0)
    first = run()
    assert run()["timestamp"].tolist() == first["timestamp"].tolist()  # same file: skipped
    train(1)
    second = run()
    assert len(second) == 1 and second["cell_id"].tolist() != first["cell_id"].tolist()
    assert second["sidenet_final_loss"].tolist() != first["sidenet_final_loss"].tolist()
    # the first file's row stays in the store (a cache) but is no longer reported
    assert len(read_results(tmp_path / "results", superseded=True)) == 2
    assert read_results(tmp_path / "results")["cell_id"].tolist() == second["cell_id"].tolist()


def test_train_sidenet_refuses_unknown_or_bad_settings(capsys):
    with pytest.raises(SystemExit):
        main(["train-sidenet", "gmm", "--chain", "3"])  # no abbreviations: --chain-length is meant
    assert "unrecognized arguments: --chain" in capsys.readouterr().err
    assert main(["train-sidenet", "gmm", "--iterations", "0"]) == 2
    assert "'iterations' must be a positive integer" in capsys.readouterr().err


def test_a_solver_that_cannot_be_prepared_is_an_error_row_with_its_parameters(tmp_path, monkeypatch):
    """The shipped gmm64 SideNet does not fit gmm2d: refused while the grid is read; where the read-time check
    is left out, the cell's row says so, under the solver's full label."""
    from pathlib import Path

    from solverbench.engine import SweepFailed
    from solverbench.errors import GridError
    from solvers.ba.samplers import SideNetSolver

    checkpoint = str(Path(__file__).parents[2] / "solvers" / "ba" / "checkpoints" / "gmm64.pt")
    raw = {**GRID, "solvers": [{"name": "ba", "params": {"checkpoint": checkpoint}}], "solver_settings": {}}
    with pytest.raises(GridError, match=r"'solvers\[0\]\.params\.checkpoint'.*trained for another backbone"):
        parse_grid(raw)
    monkeypatch.setattr(SideNetSolver, "check_backbone", lambda self, backbone, context: None)
    grid = parse_grid(raw)
    with pytest.raises(SweepFailed, match="trained for another backbone"):
        run_grid(grid, tmp_path, progress=False)
    rows = pd.read_parquet(tmp_path / "ba-small" / "results.parquet")
    assert rows["status"].tolist() == ["error"]
    assert rows["solver_label"].tolist() == [f"ba(rule=lobatto, nodes=2, checkpoint={checkpoint})"]
