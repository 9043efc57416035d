"""`solverbench compare BEFORE AFTER`: two results folders, cell by cell, every metric, bit for bit."""
import re
import shutil
import textwrap

import pandas as pd
import pytest

from solverbench.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A results folder of a two-cell grid."""
    folder = tmp_path_factory.mktemp("compare")
    (folder / "grid.yaml").write_text(textwrap.dedent("""
        name: pair
        backbones: [{name: gmm, params: {preset: gmm64}}]
        solvers: [euler]
        nfe: [2, 4]
        num_samples: 16
        metrics: [trajectory_error, sliced_wasserstein]
    """))
    assert main(["run", str(folder / "grid.yaml"), "--results", str(folder / "results"), "--no-progress"]) == 0
    return folder / "results"


def test_equal_stores(store, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert main(["compare", str(store), str(copy)]) == 0
    out = capsys.readouterr().out
    assert "pair: 2 cells before, 2 after" in out
    assert "identical: every cell on both sides, every compared value equal bit for bit" in out


def test_one_metric_differing_in_one_cell(store, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    table = copy / "pair" / "results.parquet"
    frame = pd.read_parquet(table)
    at = frame.index[frame["nfe"] == 4][0]
    frame.loc[at, "sliced_wasserstein"] = frame.loc[at, "sliced_wasserstein"] * (1 + 2 ** -50)  # the last bits only
    frame.to_parquet(table)
    assert main(["compare", str(store), str(copy)]) == 1
    out = capsys.readouterr().out
    assert "1 differences:" in out
    line = next(line for line in out.splitlines() if "differs in" in line)
    assert line.strip().startswith("sliced_wasserstein differs in pair | gmm | ")
    assert " | euler | " in line and re.search(r" \| 4(\.0)? \| ", line)  # the cell: grid, backbone, solver, NFE, ...
    assert "trajectory_error" not in out.split("differences:")[1]


def test_only_the_named_grids(store, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert main(["compare", str(store), str(copy), "--grid", "pair"]) == 0
    assert main(["compare", str(store), str(copy), "--grid", "other"]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("solverbench compare: error: no results for grid 'other'") and err.count("\n") == 1


def test_a_missing_folder_is_one_line(store, tmp_path, capsys):
    assert main(["compare", str(store), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err == f"solverbench compare: error: results folder {tmp_path / 'nowhere'} does not exist\n"
