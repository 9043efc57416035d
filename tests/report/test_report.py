"""``solverbench report`` renders from a small results store built here, without running anything.

The fixture holds three grids: a 2-D sweep (two NFE blocks, BA variants, an oracle, a
failed cell, a high-NFE Euler run, an adaptive reference), an image sweep, and an LTE
study whose errors follow known powers of H.
"""
import json

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from solverbench.cli import main
from solverbench.report import NoResultsError, write_report
from solverbench.report.figures.order_curves import GUIDE_COLOR, draw_order_curves
from solverbench.report.figures.style import SolverStyles
from solverbench.report.order_fit import lte_curves
from solverbench.results import ResultsTable

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (solver, params, label, order, analysis_only, nfe, trajectory_error, log_likelihood, status)
SWEEP = [
    ("euler", {}, "euler", 1, False, 5, 0.30, -1.0, "ok"),
    ("heun", {}, "heun", 2, False, 5, 0.20, -2.0, "ok"),
    ("ba", {"rule": "lobatto", "nodes": 2}, "ba(rule=lobatto, nodes=2)", None, False, 5, 0.10, -3.0, "ok"),
    ("ba", {"rule": "simpson", "nodes": 2}, "ba(rule=simpson, nodes=2)", None, False, 5, 0.15, -1.5, "ok"),
    ("ba-oracle", {"rule": "lobatto", "nodes": 2}, "ba-oracle(rule=lobatto, nodes=2)", 6, True, 5, 0.001, 5.0, "ok"),
    ("euler", {}, "euler", 1, False, 10, 0.16, -1.2, "ok"),
    ("heun", {}, "heun", 2, False, 10, None, None, "failed"),
    ("ba", {"rule": "lobatto", "nodes": 2}, "ba(rule=lobatto, nodes=2)", None, False, 10, 0.04, -0.9, "ok"),
    ("ba", {"rule": "simpson", "nodes": 2}, "ba(rule=simpson, nodes=2)", None, False, 10, 0.02, -0.7, "ok"),
    ("ba-oracle", {"rule": "lobatto", "nodes": 2}, "ba-oracle(rule=lobatto, nodes=2)", 6, True, 10, 1e-5, 9.0, "ok"),
    ("euler", {}, "euler", 1, False, 100, 0.02, -0.5, "ok"),
    ("reference", {"rtol": 1e-5}, "reference(rtol=1e-05)", 5, False, None, 1e-5, -0.4, "ok"),
]
FAILURE = "3 of 8 samples are not finite (NaN or inf)"


def sweep_row(grid, i, solver, params, label, order, analysis_only, nfe, error, log_likelihood, status):
    return {
        "grid": grid, "cell_id": f"{grid}-{i:02d}", "backbone": "gmm", "backbone_params": json.dumps({"preset": "x"}),
        "solver": solver, "solver_params": json.dumps(params), "nfe": nfe, "schedule": json.dumps("uniform"),
        "cfg_scale": 1.0, "cfg_lo": 0.0, "cfg_hi": 1.0, "seed": 0, "num_samples": 8, "dtype": "float32",
        "solver_label": label, "solver_order": order, "analysis_only": analysis_only,
        "nfe_measured": 92 if nfe is None else nfe, "wall_time": 0.1, "trajectory_error": error,
        "trajectory_error_max": None if error is None else 2 * error, "log_likelihood": log_likelihood,
        "metrics_not_applicable": None, "status": status, "error": FAILURE if status == "failed" else None,
    }


def save_samples(results, row, samples):
    path = results / row["grid"] / "samples" / f"{row['cell_id']}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"samples": samples, "labels": torch.arange(len(samples)) % 3}, path)


def build_results(results):
    points = ResultsTable(results / "points")
    for i, spec in enumerate(SWEEP):
        row = sweep_row("points", i, *spec)
        points.put(row)
        if row["status"] == "ok":
            save_samples(results, row, torch.randn(12, 2))
    images = ResultsTable(results / "images")
    for i, (solver, nfe, error) in enumerate([("euler", 5, 0.3), ("heun", 5, 0.2), ("euler", 10, 0.1),
                                              ("heun", 10, 0.05)]):
        row = sweep_row("images", i, solver, {}, solver, 1, False, nfe, error, None, "ok")
        images.put(row)
        save_samples(results, row, torch.rand(6, 3, 8, 8) * 2 - 1)
    lte = ResultsTable(results / "lte")
    for solver, order, power, status in [("euler", 1, 2.0, "ok"), ("mystery", None, 2.5, "ok"),
                                         ("broken", 2, None, "error")]:
        for h in (0.1, 0.05, 0.025, 0.0125):
            for t in (0.7, 0.5):
                lte.put({
                    "grid": "lte", "kind": "lte", "cell_id": f"{solver}-{h}-{t}", "backbone": "gmm",
                    "backbone_params": "{}", "solver": solver, "solver_params": "{}", "solver_label": solver,
                    "solver_order": order, "analysis_only": False,
                    "lte_order_theory": None if order is None else order + 1,
                    "cfg_scale": 1.0, "cfg_lo": 0.0, "cfg_hi": 1.0, "seed": 0, "num_samples": 8, "dtype": "float64",
                    "reference_rtol": 1e-12, "reference_atol": 1e-12, "t_start": t, "H": h, "t_end": t - h,
                    "lte": None if power is None else 0.5 * h**power, "status": status,
                    "error": "no exact-history step: broken declares history_length = 2" if power is None else None,
                })


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    build_results(root / "results")
    index = write_report(root / "results", root / "reports")
    return index.parent


def markdown_rows(path):
    """The body rows of the (first) Markdown table in ``path``, as lists of cell texts."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_report_writes_index_and_everything_it_links(report):
    index = (report / "index.md").read_text()
    html = (report / "index.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "<img" in html
    links = [part.split(")")[0] for part in index.split("](")[1:]]
    assert links
    for link in links:
        assert (report / link).is_file(), link
        assert link in html


def test_table1_puts_values_in_place_and_bolds_the_best_per_nfe_block(report):
    rows = markdown_rows(report / "points" / "table1.md")
    header = (report / "points" / "table1.md").read_text().splitlines()[2]
    assert "trajectory error ↓" in header
    # the log-likelihood does not rank (collapsed samples score higher): left out, and the notes say why
    assert "log-likelihood" not in header
    assert "data log-likelihood is left out of this table" in (report / "points" / "table1.md").read_text()
    table = {(nfe, solver): cells for nfe, solver, *cells in _fill_down(rows)}
    # columns: trajectory error, max trajectory error
    assert table["5", "euler"] == ["0.3000", "0.6000"]
    assert table["5", "heun"] == ["0.2000", "0.4000"]
    # max trajectory error: a maximum has no interval, so it is shown and never ranked
    assert table["5", "ba(rule=lobatto, nodes=2)"] == ["**0.1000**", "0.2000"]
    assert table["10", "ba(rule=simpson, nodes=2)"] == ["**0.02000**", "0.04000"]
    assert table["10", "heun"] == ["failed", "failed"]
    # alone in its block: the block's best all the same
    assert table["100", "euler"] == ["**0.02000**", "0.04000"]
    assert table["92 (adaptive)", "reference(rtol=1e-05)"] == ["**1.000e-05**", "2.000e-05"]
    assert [key[0] for key in table] == ["5"] * 4 + ["10"] * 4 + ["100", "92 (adaptive)"]
    assert not any("oracle" in solver for _, solver in table)
    assert FAILURE in (report / "points" / "table1.md").read_text()


def _fill_down(rows):
    nfe = None
    for row in rows:
        nfe = row[0] or nfe
        yield [nfe] + row[1:]


def test_oracles_get_their_own_table_and_are_never_bold(report):
    text = (report / "points" / "table1_analysis_only.md").read_text()
    assert "ba-oracle(rule=lobatto, nodes=2)" in text and "1.000e-05" in text
    assert "**" not in text.split("\n", 1)[1]


def test_table1_csv_and_latex_hold_the_same_numbers(report):
    csv = pd.read_csv(report / "points" / "table1.csv")
    best = csv[(csv["nfe"] == 5) & (csv["solver"] == "ba(rule=lobatto, nodes=2)")].iloc[0]
    assert best["trajectory_error"] == pytest.approx(0.1)
    assert best["best"] == "trajectory_error"
    assert csv["nfe"].isna().sum() == 1  # the adaptive reference
    latex = (report / "points" / "table1.tex").read_text()
    for piece in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{0.1000}",
                  r"$1.000\times10^{-5}$", r"trajectory error $\downarrow$", r"ba(rule=lobatto, nodes=2)"):
        assert piece in latex, piece


def test_ablation_table_varies_what_distinguishes_the_ba_variants(report):
    path = report / "points" / "ablation_ba.md"
    header = path.read_text().splitlines()[2]
    assert header.startswith("| solver | rule | NFE 5 | NFE 10 |")
    rows = markdown_rows(path)
    assert rows[0] == ["ba", "lobatto", "**0.1000**", "0.04000"]
    assert rows[1] == ["ba", "simpson", "0.1500", "**0.02000**"]
    assert rows[2] == ["ba-oracle (analysis only)", "lobatto", "0.001000", "1.000e-05"]
    assert "nodes=2" in path.read_text()  # the fixed parameter is named once, below


def test_every_plot_is_a_valid_png(report):
    pngs = sorted(report.rglob("*.png"))
    names = {p.relative_to(report).as_posix() for p in pngs}
    for expected in ("points/convergence_trajectory_error.png", "points/convergence_log_likelihood.png",
                     "points/global_order.png", "points/samples.png", "images/samples.png", "lte/lte_order.png"):
        assert expected in names
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png
        pixels = matplotlib.image.imread(png)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, png


def test_lte_slope_table_fits_the_slopes_and_explains_the_missing(report):
    rows = {row[0]: row for row in markdown_rows(report / "lte" / "lte_slopes.md")}
    assert rows["euler"][1:5] == ["2", "2.00", "+0.00", "4 of 4"]
    assert rows["mystery"][1:4] == ["–", "2.50", "–"]
    assert "no declared order" in rows["mystery"][6]
    assert rows["broken"][2] == "–" and rows["broken"][6] == "error: no exact-history step"


def test_a_solver_without_declared_order_is_drawn_without_theory_line(report):
    frame = ResultsTable(report.parent / "results" / "lte").frame
    curves = lte_curves(frame)
    styles = SolverStyles(c.label for c in curves)
    fig, ax = plt.subplots()
    try:
        fan = draw_order_curves(ax, curves, styles)
        assert sorted(fan.y) == [2.0]  # euler's order + 1 only: mystery declares none, broken has no points
        dashed = [line for line in ax.lines if line.get_linestyle() == "--" and len(line.get_xdata())]
        colors = [matplotlib.colors.to_hex(line.get_color()) for line in dashed]
        assert colors == [matplotlib.colors.to_hex(GUIDE_COLOR)]
        legend = [line.get_label() for line in ax.lines]
        assert "mystery: slope 2.50 (no declared order)" in legend
        assert "broken: not drawn (error: no exact-history step)" in legend
    finally:
        plt.close(fig)


def test_empty_results_say_what_to_run(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(NoResultsError, match="python -m solverbench run configs/quick.yaml"):
        write_report(tmp_path / "results", tmp_path / "reports")
    with pytest.raises(NoResultsError, match="does not exist"):
        write_report(tmp_path / "nowhere", tmp_path / "reports")


def test_cli_report_renders_only_the_named_grid(report, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["report", "--results", str(report.parent / "results"), "--out", str(out), "--grid", "images"]) == 0
    assert (out / "images" / "table1.md").is_file() and not (out / "points").exists()
    assert str(out / "index.md") in capsys.readouterr().out
    assert main(["report", "--results", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("labels, shown", [
    (["ba(nodes=2, checkpoint=../solvers/ba/checkpoints/digits.pt)", "ba-single(checkpoint=/abs/x/digits.pt)",
      "euler"], None),  # two folders hold a digits.pt: every label stays whole
    (["ba(nodes=2, checkpoint=../ck/digits.pt)", "ba-single(checkpoint=../ck/digits.pt)", "euler"],
     ["ba(nodes=2, checkpoint=digits.pt)", "ba-single(checkpoint=digits.pt)", "euler"]),
])
def test_report_labels_show_checkpoints_by_file_name_where_unambiguous(labels, shown):
    from solverbench.report.labels import shorter_labels

    assert shorter_labels(pd.Series(labels)).tolist() == (shown or labels)


# -- intervals: value ± CI, ties by overlapping intervals, the noise floor --------------------------

def interval_rows(values):
    """Sweep rows at NFE 5 with trajectory errors and sliced-Wasserstein values ``(value, half width)``."""
    rows = []
    for i, (label, error, sw) in enumerate(values):
        row = sweep_row("ci", i, label, {}, label, 1, False, 5, error[0], None, "ok")
        row.update(trajectory_error_ci_low=error[0] - error[1], trajectory_error_ci_high=error[0] + error[1],
                   sliced_wasserstein=sw[0], sliced_wasserstein_ci_low=sw[0] - sw[1],
                   sliced_wasserstein_ci_high=sw[0] + sw[1], sliced_wasserstein_floor=0.09,
                   sliced_wasserstein_floor_ci_low=0.08, sliced_wasserstein_floor_ci_high=0.10)
        rows.append(row)
    return pd.DataFrame(rows)


def test_solvers_closer_than_their_intervals_are_all_marked_best_and_clearly_worse_ones_are_not():
    from solverbench.metric_columns import metric_columns
    from solverbench.report.tables.table1 import table1

    rows = interval_rows([("a", (0.100, 0.010), (0.071, 0.01)), ("b", (0.105, 0.010), (0.074, 0.01)),
                          ("c", (0.300, 0.010), (0.078, 0.01))])
    ranked, _ = table1(rows, metric_columns(rows), "t")
    cells = {row.record["solver"]: row.cells for row in ranked.rows}
    # trajectory error: a and b overlap (a tie), c is clearly worse; SW: all three overlap
    assert [cells[s][2].bold for s in "abc"] == [True, True, False]
    assert [cells[s][4].bold for s in "abc"] == [True, True, True]
    assert cells["a"][2].text == "0.100 ± 0.010" and cells["c"][4].text == "0.078 ± 0.010"
    assert ranked.rows[0].record["trajectory_error_ci_high"] == pytest.approx(0.11)


def test_one_clearly_best_solver_is_marked_alone():
    from solverbench.metric_columns import metric_columns
    from solverbench.report.tables.table1 import table1

    rows = interval_rows([("a", (0.05, 0.01), (0.07, 0.001)), ("b", (0.10, 0.01), (0.08, 0.001))])
    ranked, _ = table1(rows, metric_columns(rows), "t")
    assert [row.cells[2].bold for row in ranked.rows[:2]] == [True, False]
    assert [row.cells[4].bold for row in ranked.rows[:2]] == [True, False]


def test_table1_ends_with_the_noise_floor_of_the_distribution_metrics():
    from solverbench.metric_columns import metric_columns
    from solverbench.report.tables.table1 import FLOOR_LABEL, table1

    rows = interval_rows([("a", (0.1, 0.01), (0.07, 0.01)), ("b", (0.2, 0.01), (0.08, 0.01))])
    ranked, _ = table1(rows, metric_columns(rows), "t")
    floor = ranked.rows[-1]
    assert floor.cells[1].text == FLOOR_LABEL and floor.rule_above
    assert floor.cells[4].text == "0.090 ± 0.010" and floor.cells[2].text == ""
    assert not any(cell.bold for cell in floor.cells)
    assert any(FLOOR_LABEL in note for note in ranked.notes)
    assert "sliced_wasserstein_floor" not in [m.name for m in metric_columns(rows)]


def test_notes_name_only_cells_that_did_not_finish():
    from solverbench.metric_columns import metric_columns
    from solverbench.report.tables.table1 import table1

    rows = pd.DataFrame([sweep_row("n", 0, "euler", {}, "euler", 1, False, 5, 0.3, None, "ok"),
                         {**sweep_row("n", 1, "euler", {}, "euler", 1, False, 5, 0.2, None, "ok"), "seed": 1},
                         sweep_row("n", 2, "heun", {}, "heun", 2, False, 5, 0.1, None, "ok"),
                         {**sweep_row("n", 3, "heun", {}, "heun", 2, False, 5, None, None, "failed"), "seed": 1}])
    ranked, _ = table1(rows, metric_columns(rows[rows["status"] == "ok"]), "t")
    cell_notes = [note for note in ranked.notes if "did not finish" in note]
    assert cell_notes == [f"heun at NFE 5: 1 of 2 seed(s) did not finish (failed: {FAILURE})."]
    assert not any("declare it in" in note for note in ranked.notes)  # no developer notes for readers
