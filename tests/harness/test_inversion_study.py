"""``kind: inversion``: round trips and class edits per solver and NFE (docs/inversion.md).

Small grids: gmm-smooth (8-D, exact velocities) for the round trips, 8 digits for the edits.
"""
import pandas as pd
import pytest
import torch

from solverbench.engine import run_grid
from solverbench.grid import GridError, parse_grid


SMOOTH = {"name": "gmm", "params": {"preset": "gmm-smooth"}}


def inversion_grid(**overrides) -> dict:
    raw = {"name": "inversion-test", "kind": "inversion", "backbones": [SMOOTH],
           "solvers": ["euler", "heun", {"name": "ba", "params": {"sidenet": "off"}}],
           "nfe": [4, 16], "num_samples": 12, "batch_size": 12, "reference": {"rtol": 1e-8, "atol": 1e-8}}
    raw.update(overrides)
    return raw


def test_round_trip_and_inversion_errors_shrink_with_nfe_and_carry_intervals(tmp_path):
    grid = inversion_grid(solvers=["euler", "heun", {"name": "ba", "params": {"sidenet": "off"}},
                                   {"name": "reference", "params": {"rtol": 1e-6, "atol": 1e-6}}])
    rows = run_grid(parse_grid(grid), tmp_path, progress=False).frame
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert (rows["kind"] == "inversion").all() and not rows["edits"].any()
    fixed = rows[rows["nfe"].notna()]
    assert (fixed["nfe_measured"] == fixed["nfe"]).all() and (fixed["regeneration_nfe_measured"] == fixed["nfe"]).all()
    for name in ("inversion_error", "roundtrip_error"):
        assert (rows[f"{name}_ci_low"] <= rows[name]).all() and (rows[name] <= rows[f"{name}_ci_high"]).all()
        by_nfe = fixed.pivot(index="solver_label", columns="nfe", values=name)
        assert (by_nfe[16] < 0.5 * by_nfe[4]).all(), by_nfe
    reference = rows[rows["solver"] == "reference"].iloc[0]
    assert reference["inversion_error"] < 1e-5 and reference["roundtrip_error"] < 1e-4  # the tolerance's floor


def test_rows_do_not_depend_on_the_batch_size(tmp_path):
    measured = ["inversion_error", "roundtrip_error", "inversion_error_ci_low", "roundtrip_error_ci_high"]
    frames = [run_grid(parse_grid(inversion_grid(batch_size=b, nfe=[4], guidance={"scale": 1.5})), tmp_path / str(b),
                       progress=False).frame.sort_values("cell_id")[["cell_id", *measured]] for b in (12, 5)]
    pd.testing.assert_frame_equal(frames[0].reset_index(drop=True), frames[1].reset_index(drop=True))


def test_class_edits_on_digits_score_the_edits_and_keep_them_for_the_report(tmp_path):
    grid = inversion_grid(backbones=["digits"], solvers=["euler"], nfe=[4], guidance={"scale": 2.0},
                          num_samples=8, batch_size=8, save_samples=4, inversion={"edits": ["digits"]},
                          reference={"rtol": 1e-3, "atol": 1e-3})
    rows = run_grid(parse_grid(grid), tmp_path, progress=False).frame
    row = rows.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["edits"] and row["edit_inversion_cfg_scale"] == 1.0 and row["edit_nfe_measured"] == 4
    for name in ("edit_accuracy", "source_accuracy"):
        assert 0 <= row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"] <= 1
    assert row["source_accuracy"] > 0.8 and row["edit_distance"] > 0
    kept = torch.load(tmp_path / "inversion-test" / "edits" / f"{row['cell_id']}.pt", weights_only=True)
    assert kept["source"].shape == kept["edited"].shape == (4, 1, 8, 8)
    assert (kept["target_labels"] != kept["source_labels"]).all()


@pytest.mark.parametrize("overrides, message", [
    ({"solvers": [{"name": "diffusers", "params": {"scheduler": "FlowMatchEulerDiscreteScheduler"}}]},
     r"diffusers.* cannot invert: a diffusers scheduler samples from noise to data"),
    ({"solvers": [{"name": "euler", "schedule": {"name": "gits"}}]}, "a time grid learned for sampling"),
    ({"inversion": {"edits": ["gmm"]}}, "GaussianMixture names no default_feature_extractor"),
    ({"inversion": {"edits": ["digits"]}}, r"'digits' is not a backbone of the grid"),
    ({"inversion": {"edit": ["gmm"]}}, "inversion"),
    ({"metrics": ["trajectory_error"]}, "metrics"),
], ids=["diffusers", "learned-grid", "no-classifier", "unknown-backbone", "bad-key", "metrics"])
def test_what_an_inversion_grid_cannot_run_is_refused_when_it_is_read(overrides, message):
    with pytest.raises(GridError, match=message):
        parse_grid(inversion_grid(**overrides))


def test_the_inversion_grid_reads_with_both_backbones_and_edits_on_digits():
    from pathlib import Path

    from solverbench.grid import load_grid

    grid = load_grid(Path(__file__).parents[2] / "configs" / "inversion.yaml")
    assert grid.kind == "inversion" and grid.study.edits == ("digits",)
    assert [b.name for b in grid.backbones] == ["gmm", "digits"] and grid.backbones[0].params == {"preset": "gmm64"}
    assert {spec.name for spec in grid.solvers} >= {"euler", "heun", "flow-dpm", "flow-unipc", "ba"}
