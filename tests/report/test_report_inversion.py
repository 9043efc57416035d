"""The report of an inversion grid: the error table and figure, the edit table and image grids, and, for a grid
of several t0, the figure of what edits keep and change against t0."""
import pytest

from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report import write_report



@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """8 digits, Euler and Heun at NFE 5 and 10, edited; the adaptive reference beside them."""
    path = tmp_path_factory.mktemp("results")
    grid = parse_grid({"name": "inv", "kind": "inversion", "backbones": ["digits"],
                       "solvers": ["euler", "heun", {"name": "reference", "params": {"rtol": 1e-3, "atol": 1e-3}}],
                       "nfe": [5, 10], "num_samples": 8, "batch_size": 8, "save_samples": 4,
                       "inversion": {"edits": ["digits"]}, "reference": {"rtol": 1e-3, "atol": 1e-3}})
    run_grid(grid, path, progress=False)
    return path


def test_the_report_tabulates_and_draws_both_errors_and_the_edits(results, tmp_path):
    write_report(results, tmp_path)
    (setting,) = [p for p in (tmp_path / "inv").iterdir() if p.is_dir()] or [tmp_path / "inv"]
    table = (setting / "inversion.md").read_text()
    assert "round-trip error ↓" in table and "inversion error ↓" in table and "**" in table
    assert "| 5 | euler |" in table and "reference" in table
    for name in ("inversion_errors.png", "edits.md", "edits_nfe5.png", "edits_nfe10.png"):
        assert (setting / name).stat().st_size > 1000, name
    edits = (setting / "edits.md").read_text()
    assert "edit accuracy ↑" in edits and "edit distance ↓" in edits and "classifier on the sources" in edits
    assert "edits_nfe5.png" in (tmp_path / "index.md").read_text()


def test_a_missing_edit_file_is_named_not_drawn(results, tmp_path):
    for path in (results / "inv" / "edits").glob("*.pt"):
        path.rename(path.with_suffix(".moved"))
    try:
        write_report(results, tmp_path)
    finally:
        for path in (results / "inv" / "edits").glob("*.moved"):
            path.rename(path.with_suffix(".pt"))
    index = (tmp_path / "index.md").read_text()
    assert "No edit figure at NFE 5" in index and "No saved edits for euler, heun" in index


@pytest.fixture(scope="module")
def partial_results(tmp_path_factory):
    """8 digits, Euler and Heun at NFE 5, edited from t0 = 0.3 and from t0 = 1."""
    path = tmp_path_factory.mktemp("partial")
    grid = parse_grid({"name": "inv-t0", "kind": "inversion", "backbones": ["digits"], "solvers": ["euler", "heun"],
                       "nfe": [5], "num_samples": 8, "batch_size": 8, "save_samples": 4, "guidance": {"scale": 2.0},
                       "inversion": {"edits": ["digits"], "t0": [0.3, 1.0]}, "reference": {"rtol": 1e-3, "atol": 1e-3}})
    run_grid(grid, path, progress=False)
    return path


def test_a_grid_of_several_t0_draws_what_edits_keep_and_change_and_tabulates_each_t0(partial_results, tmp_path):
    write_report(partial_results, tmp_path)
    setting = tmp_path / "inv-t0"
    assert (setting / "edit_tradeoff.png").stat().st_size > 1000
    for tag in ("t0-0p3", "t0-1"):
        for name in (f"inversion_{tag}.md", f"edits_{tag}.md", f"inversion_errors_{tag}.png", f"edits_{tag}_nfe5.png"):
            assert (setting / name).stat().st_size > 500, name
    assert "t0 = 0.3" in (setting / "edits_t0-0p3.md").read_text()
    index = (tmp_path / "index.md").read_text()
    assert "edit_tradeoff.png" in index and "What the edits keep and change against the time t0" in index


def test_rows_that_record_no_t0_went_all_the_way():
    import pandas as pd

    from solverbench.report.inversion_section import with_t0

    rows = with_t0(pd.DataFrame({"t0": [0.5, None], "x": [1, 2]}))
    assert rows["t0"].tolist() == [0.5, 1.0]
    assert with_t0(pd.DataFrame({"x": [1]}))["t0"].tolist() == [1.0]
