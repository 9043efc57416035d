"""The report of an inversion grid: the error table and figure, and the edit table and image grids."""
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
