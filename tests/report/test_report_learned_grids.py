"""A learned time grid that comes back uniform is named so in the report, end to end: the cell records the
grid it sampled on (``schedule_times``), and the report marks the row ``@ ld3 (= uniform)``.  LD3 keeps its
starting (uniform) grid when no epoch beats it on held-out trajectories; a learning rate of 1e-12 makes
sure none moves it measurably."""
import json

import numpy as np
import pandas as pd

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report import write_report


LD3 = {"name": "ld3", "epochs": 1, "lr": 1.0e-12, "samples": 4, "validation": 4, "batch_size": 4}


def test_a_learned_grid_that_stayed_uniform_is_marked_in_table1(tmp_path):
    grid = parse_grid({"name": "stays", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": [{"name": "euler", "schedule": ["uniform", LD3]}], "nfe": [4],
                       "num_samples": 16, "batch_size": 16, "metrics": ["trajectory_error"],
                       "reference": {"rtol": 1e-5, "atol": 1e-5}})
    results = tmp_path / "results"
    run_grid(grid, results, progress=False)
    rows = pd.read_parquet(results / "stays" / "results.parquet")
    learned = rows[rows["schedule_times"].notna()]
    assert len(learned) == 1  # the cell records the grid it sampled on
    assert np.allclose(json.loads(learned["schedule_times"].iloc[0]), np.linspace(1, 0, 5), atol=1e-6)
    write_report(results, tmp_path / "reports")
    table = (tmp_path / "reports" / "stays" / "table1.md").read_text()
    solvers = [line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert solvers == ["euler", "euler @ ld3(batch_size=4, epochs=1, lr=1e-12, samples=4, validation=4) (= uniform)"]
    assert "(= uniform): the learned time grid came back the uniform grid" in table
    csv = pd.read_csv(tmp_path / "reports" / "stays" / "table1.csv")
    assert csv["learned_grid_uniform"].tolist() == [False, True]
