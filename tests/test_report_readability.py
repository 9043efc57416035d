"""What a reader of a report relies on: every log axis has labels however narrow its range, a
distance's interval never reads as going below 0, a block's only solver is still marked best, and a
missing sample figure says why.  Drawn from small frames built here; nothing is run."""
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from solverbench.report.figures.convergence import draw_convergence
from solverbench.report.figures.samples import why_no_figure
from solverbench.report.figures.style import SolverStyles, report_figure
from solverbench.report.metric_columns import KNOWN_BY_NAME, metric_columns
from solverbench.report.tables.model import format_with_interval
from solverbench.report.tables.table1 import FLOOR_LABEL, table1


def visible_labels(fig, axis) -> list[str]:
    """The non-empty tick labels (major and minor) of ``axis`` that lie within its view, as drawn."""
    fig.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    index = 1 if axis.axis_name == "y" else 0
    return [t.get_text() for t in axis.get_ticklabels(which="both")
            if t.get_text() and low <= t.get_position()[index] <= high]


def rows(values, *, seeds=(0,), low=None, floors=None, metric="trajectory_error") -> pd.DataFrame:
    """Sweep rows: per (solver, NFE) ``values[(solver, nfe)]`` (one per seed), its interval from
    ``low`` (a function of the value) to 1.5 x value, and per seed a noise floor ``floors[seed]``
    (value, low, high)."""
    records = []
    for (solver, nfe), per_seed in values.items():
        for seed, value in zip(seeds, per_seed):
            record = {"cell_id": f"{solver}-{nfe}-{seed}", "solver": solver, "solver_params": "{}",
                      "solver_label": solver, "solver_order": 1, "analysis_only": False, "nfe": nfe,
                      "nfe_measured": nfe, "seed": seed, "num_samples": 16, "status": "ok", "error": None,
                      metric: value}
            if low is not None:
                record.update({f"{metric}_ci_low": low(value), f"{metric}_ci_high": 1.5 * value})
            if floors is not None:
                record.update(zip((f"{metric}_floor", f"{metric}_floor_ci_low", f"{metric}_floor_ci_high"),
                                  floors[seed]))
            records.append(record)
    return pd.DataFrame(records)


@pytest.mark.parametrize("span", [(0.48, 0.78), (0.07, 0.19), (0.51, 0.58), (9.0, 23.0)])
def test_every_log_axis_of_a_report_figure_is_labelled_however_narrow(tmp_path, span):
    with report_figure(tmp_path / "f.png") as (fig, ax):  # ticks nobody chose: the figure's own rule
        ax.plot([1, 2, 3], [span[0], (span[0] + span[1]) / 2, span[1]])
        ax.set_yscale("log")
        ax.set_xscale("log")
    assert len(visible_labels(fig, ax.yaxis)) >= 2, span
    assert len(visible_labels(fig, ax.xaxis)) >= 2


def test_the_convergence_plot_of_values_within_a_decade_has_value_labels():
    """The inversion figure's right panel: inversion errors 0.48-0.78."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    try:
        values = {("euler", 2): [0.78], ("euler", 4): [0.52], ("heun", 2): [0.63], ("heun", 4): [0.48]}
        draw_convergence(ax, rows(values, metric="inversion_error"), KNOWN_BY_NAME["inversion_error"],
                         SolverStyles(["euler", "heun"]))
        labels = visible_labels(fig, ax.yaxis)
        assert len(labels) >= 2 and all(0.4 < float(text) < 0.9 for text in labels), labels
    finally:
        plt.close(fig)


def test_an_interval_cut_at_0_does_not_stretch_a_log_axis_down_to_rounding_noise():
    fig, ax = plt.subplots(figsize=(9, 4.6))  # at this size a band from 0 used to reach 1e-17
    try:
        values = {("euler", 4): [0.15], ("heun", 4): [0.17], ("euler", 8): [0.12], ("heun", 8): [0.13]}
        draw_convergence(ax, rows(values, low=lambda v: 0.0, floors={0: (0.14, 0.0, 0.29)}),
                         KNOWN_BY_NAME["trajectory_error"], SolverStyles(["euler", "heun"]))
        assert 0.05 < ax.get_ylim()[0] < 0.12
        assert len(visible_labels(fig, ax.yaxis)) >= 2
    finally:
        plt.close(fig)


def test_an_interval_cut_at_0_is_printed_as_its_two_ends():
    assert format_with_interval(0.045, 0.0, 0.122) == "0.045 [0, 0.122]"  # ± 0.061 would reach -0.016
    assert format_with_interval(4.7e-4, 0.0, 1.2e-3) == "4.70e-04 [0, 1.2e-03]"
    assert format_with_interval(0.0532, 0.0389, 0.0675) == "0.053 ± 0.014"  # symmetric enough: as before
    assert format_with_interval(-0.5, -0.9, 0.3) == "-0.50 ± 0.60"  # a value that may be negative


def test_a_distance_noise_floor_combined_over_seeds_is_never_below_0():
    """Two seeds' floors far apart: the combined interval, symmetric, would reach below 0."""
    values = {("euler", 4): [0.30, 0.32], ("heun", 4): [0.20, 0.22]}
    frame = rows(values, seeds=(0, 1), low=lambda v: 0.5 * v, metric="sliced_wasserstein",
                 floors={0: (0.01, 0.0, 0.03), 1: (0.20, 0.1, 0.3)})
    ranked, _ = table1(frame, metric_columns(frame), "t")
    floor = ranked.rows[-1]
    assert floor.cells[1].text == FLOOR_LABEL
    assert floor.cells[2].text.startswith("0.1") and "[0, " in floor.cells[2].text and "±" not in floor.cells[2].text
    assert floor.record["sliced_wasserstein_ci_low"] == 0.0


def test_a_block_with_a_single_solver_still_marks_it_best():
    frame = rows({("euler", 4): [0.5], ("heun", 4): [0.2], ("euler", 16): [0.05]}, low=lambda v: 0.9 * v)
    ranked, _ = table1(frame, metric_columns(frame), "t")
    bold = {(row.record["nfe"], row.record["solver"]): row.cells[2].bold for row in ranked.rows}
    assert bold == {(4, "euler"): False, (4, "heun"): True, (16, "euler"): True}


def test_a_missing_sample_figure_says_why(tmp_path):
    frame = rows({("euler", 4): [0.3]})
    assert "saved no samples" in why_no_figure(frame, tmp_path / "samples")
    (tmp_path / "samples").mkdir()
    torch.save({"samples": torch.zeros(8, 64), "labels": None}, tmp_path / "samples" / "euler-4-0.pt")
    why = why_no_figure(frame, tmp_path / "samples")
    assert "are 64-D vectors, not images" in why and "saved no samples" not in why
