"""``kind: inversion`` with ``inversion: {t0: [...]}``: cells that invert to t0 and regenerate from it, and
class edits that keep their source (docs/inversion.md).

What users rely on: a grid without t0 keeps its cell ids, and its cells are the t0 = 1 cells of a grid
with t0; an edit from a small t0 keeps the source digit (small distance, the class mostly unchanged) and
one from t0 = 1 does not; each direction spends exactly the budget; the inversion error at t0 is measured
against the exact state at t0; a bad t0 is refused when the grid is read.
"""
import pytest
import torch

from solverbench.engine import run_grid
from solverbench.engine.workspace import Workspace
from solverbench.grid import GridError, parse_grid
from solverbench.registry import STUDIES
from solverbench.studies.partial_reference import exact_partial_inversions
from solverbench.studies.sweep import cells
from solverbench.reference import Tolerance

SMOOTH = {"name": "gmm", "params": {"preset": "gmm-smooth"}}


def grid(**overrides) -> dict:
    raw = {"name": "inv-t0", "kind": "inversion", "backbones": [SMOOTH], "solvers": ["euler", "heun"],
           "nfe": [4, 8], "num_samples": 8, "batch_size": 8, "reference": {"rtol": 1e-8, "atol": 1e-8}}
    raw.update(overrides)
    return raw


def cell_ids(raw: dict, tmp_path) -> list[str]:
    parsed = parse_grid(raw)
    study = STUDIES.get("inversion")(parsed, Workspace(parsed, tmp_path, progress=False))
    return [cell_id for unit in study.units() for cell_id in unit.ids]


def test_without_t0_cell_ids_do_not_change_and_are_the_t0_of_one_cells(tmp_path):
    plain = parse_grid(grid())
    study = STUDIES.get("inversion")(plain, Workspace(plain, tmp_path, progress=False))
    assert all("t0" not in study.identity(cell) for cell in cells(plain))
    without = cell_ids(grid(), tmp_path)
    with_t0 = cell_ids(grid(inversion={"t0": [0.5, 1.0]}), tmp_path)
    assert len(with_t0) == 2 * len(without) == 8
    assert with_t0[1::2] == without  # t0 = 1: the same cells
    assert not set(with_t0[0::2]) & set(without)  # t0 = 0.5: cells of their own
    assert cell_ids(grid(inversion={"t0": 1.0}), tmp_path) == without


def test_cells_at_t0_spend_the_budget_both_ways_and_are_measured_against_the_exact_state_at_t0(tmp_path):
    raw = grid(solvers=["euler", "heun", {"name": "reference", "params": {"rtol": 1e-8, "atol": 1e-8}}],
               inversion={"t0": [0.3, 1.0]})
    parsed = parse_grid(raw)
    rows = run_grid(parsed, tmp_path, progress=False).frame
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert sorted(rows["t0"].unique()) == [0.3, 1.0]
    study = STUDIES.get("inversion")(parsed, Workspace(parsed, tmp_path, progress=False))
    assert [study.describe(row).endswith("t0=0.3") for _, row in rows.iterrows()] == (rows["t0"] == 0.3).tolist()
    fixed = rows[rows["nfe"].notna()]
    assert (fixed["nfe_measured"] == fixed["nfe"]).all() and (fixed["regeneration_nfe_measured"] == fixed["nfe"]).all()
    reference = rows[rows["solver"] == "reference"].set_index("t0")
    assert (reference["inversion_error"] < 1e-6).all() and (reference["roundtrip_error"] < 1e-6).all()
    euler = fixed[fixed["solver"] == "euler"].set_index(["t0", "nfe"])
    assert euler.loc[(0.3, 8), "inversion_error"] < euler.loc[(1.0, 8), "inversion_error"]
    assert euler.loc[(0.3, 8), "inversion_error"] < euler.loc[(0.3, 4), "inversion_error"]  # it converges at t0
    # t0 = 1 is the cell of the grid without t0, numbers and all
    plain = run_grid(parse_grid(grid(solvers=["euler"])), tmp_path / "plain", progress=False).frame
    whole = fixed[(fixed["solver"] == "euler") & (fixed["t0"] == 1.0)].sort_values("nfe")
    assert whole["cell_id"].tolist() == plain.sort_values("nfe")["cell_id"].tolist()
    for name in ("inversion_error", "roundtrip_error", "roundtrip_error_ci_high"):
        assert whole[name].tolist() == plain.sort_values("nfe")[name].tolist(), name


def test_edits_from_a_small_t0_keep_their_source_and_from_t0_of_one_do_not(tmp_path):
    raw = grid(backbones=["digits"], solvers=["euler"], nfe=[4], guidance={"scale": 2.0}, num_samples=8,
               batch_size=8, save_samples=2, inversion={"edits": ["digits"], "t0": [0.2, 1.0]},
               reference={"rtol": 1e-3, "atol": 1e-3})
    rows = run_grid(parse_grid(raw), tmp_path, progress=False).frame.set_index("t0")
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert (rows["edit_nfe_measured"] == 4).all()
    kept, changed = rows["edit_distance"], rows["edit_accuracy"]
    assert kept[0.2] < 0.3 * kept[1.0]  # kept: close to the source
    assert changed[0.2] <= 0.25 and changed[1.0] >= 0.75  # changed: the target class only from far enough
    for name in ("edit_distance", "edit_accuracy"):
        assert (rows[f"{name}_ci_low"] <= rows[name]).all() and (rows[name] <= rows[f"{name}_ci_high"]).all()
    for cell_id in rows["cell_id"]:
        assert (tmp_path / "inv-t0" / "edits" / f"{cell_id}.pt").is_file()


def test_the_exact_states_do_not_depend_on_which_other_times_are_asked_for():
    from backbones.gmm import GaussianMixture
    from solverbench.guidance import Guidance

    backbone, x0 = GaussianMixture("gmm-smooth"), torch.randn(4, 8, dtype=torch.float64)
    tolerance = Tolerance(1e-6, 1e-6)
    alone = exact_partial_inversions(backbone, x0, None, Guidance(), [0.4], tolerance, 4)
    together = exact_partial_inversions(backbone, x0, None, Guidance(), [0.7, 0.4, 0.2], tolerance, 4)
    assert set(together) == {0.2, 0.4, 0.7} and torch.equal(alone[0.4], together[0.4])


@pytest.mark.parametrize("t0, message", [
    ([0.0, 0.5], r"inversion.t0.*a time in \(0, 1\]"),
    ([1.5], r"inversion.t0"),
    ([], r"inversion.t0"),
    (["0.5"], r"inversion.t0"),
    (True, r"inversion.t0"),
    ([0.5, 0.5], r"inversion.t0.*distinct times"),
], ids=["zero", "above-one", "empty", "string", "bool", "repeated"])
def test_a_bad_t0_is_refused_when_the_grid_is_read(t0, message):
    with pytest.raises(GridError, match=message):
        parse_grid(grid(inversion={"t0": t0}))
