"""What a reader of a report relies on: every log axis has labels however narrow its range, a
distance's interval never reads as going below 0, a block's only solver is still marked best, a
missing sample figure says why, costs read in one unit per column, a metric that does not rank is
not a Table 1 column, and a learned grid that came back uniform says so.  Drawn from small frames
built here; nothing is run."""
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from solverbench.report.figures.convergence import draw_convergence
from solverbench.report.figures.samples import why_no_figure
from solverbench.report.figures.style import SolverStyles, report_figure
from solverbench.report.learned_grids import is_uniform
from solverbench.metric_columns import KNOWN_BY_NAME, cost_columns, metric_columns
from solverbench.report.tables.model import format_with_interval
from solverbench.report.tables.table1 import FLOOR_LABEL, table1
from solverbench.report.tables.training_cost import training_cost_table


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


# -- costs in one unit per column, the log-likelihood, learned grids that came back uniform ---------------

def cost_rows(wall, flops, memory) -> pd.DataFrame:
    """Two solvers at NFE 4 with the given costs per sample (seconds, FLOPs, bytes; one value per solver)."""
    frame = rows({("euler", 4): [0.3], ("heun", 4): [0.2]})
    return frame.assign(wall_time_per_sample=wall, flops_per_sample=flops, peak_memory_per_sample=memory)


def cost_cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    ranked, _ = table1(frame, metric_columns(frame) + cost_columns(frame), "t")
    return {header: [row.cells[i].text for row in ranked.rows] for i, header in enumerate(ranked.columns)}


def test_cost_columns_name_their_unit_and_print_every_value_with_the_same_decimals():
    frame = cost_rows(wall=[9.4e-6, 2.37e-4], flops=[1.589e7, 0.0], memory=[22600.0, 47410.0])
    cells = cost_cells(frame)
    assert cells["wall time per sample (ms)"] == ["0.00940", "0.23700"]
    assert cells["FLOPs per sample (MFLOPs)"] == ["15.9", "0"]
    assert cells["peak memory per sample (KB)"] == ["22.6", "47.4"]
    ranked, _ = table1(frame, metric_columns(frame) + cost_columns(frame), "t")
    assert any("wall time per sample in ms (10^-3 s)" in note and "CSV holds them in seconds, FLOPs and bytes"
               in note for note in ranked.notes)
    assert ranked.rows[0].record["wall_time_per_sample"] == 9.4e-6  # the CSV keeps the stored unit


def test_large_costs_move_to_a_larger_unit_for_the_whole_column_never_to_scientific_notation():
    cells = cost_cells(cost_rows(wall=[0.85, 12.5], flops=[2.36e11, 1.18e12], memory=[3.1e8, 2.05e7]))
    assert cells["wall time per sample (ms)"] == ["850", "12500"]
    assert cells["FLOPs per sample (GFLOPs)"] == ["236", "1180"]
    assert cells["peak memory per sample (MB)"] == ["310.0", "20.5"]
    assert not any("e" in text for column in cells.values() for text in column if text[:1].isdigit())


def test_the_log_likelihood_is_left_out_of_table1_and_the_notes_say_why():
    frame = rows({("euler", 4): [0.3], ("heun", 4): [0.2]}).assign(log_likelihood=[-1.0, -2.0])
    assert "log_likelihood" in [m.name for m in metric_columns(frame)]  # its convergence figure still has it
    ranked, _ = table1(frame, metric_columns(frame), "t")
    assert not any("log-likelihood" in column for column in ranked.columns)
    assert "log_likelihood" not in ranked.rows[0].record
    assert any(note.startswith("data log-likelihood is left out of this table") and "higher is not better" in note
               for note in ranked.notes)


UNIFORM_5 = json.dumps([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
LEARNED_5 = json.dumps([1.0, 0.7, 0.45, 0.25, 0.1, 0.0])
LEARNED_10 = json.dumps([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.35, 0.2, 0.1, 0.05, 0.0])


def learned_rows(times_at_5: str) -> pd.DataFrame:
    """``ba`` on the uniform grid and ``ba @ ld3`` on a learned one (``times_at_5`` at NFE 5, learned at 10)."""
    frame = rows({("ba", 5): [0.10], ("ba @ ld3", 5): [0.10], ("ba", 10): [0.05], ("ba @ ld3", 10): [0.03]})
    learned = frame["solver_label"] == "ba @ ld3"
    frame["schedule_times"] = None
    frame.loc[learned & (frame["nfe"] == 5), "schedule_times"] = times_at_5
    frame.loc[learned & (frame["nfe"] == 10), "schedule_times"] = LEARNED_10
    frame["schedule_train_seconds"] = np.where(learned, 12.0, np.nan)
    return frame


def test_a_learned_grid_that_came_back_uniform_is_marked_in_the_tables():
    frame = learned_rows(UNIFORM_5)
    ranked, _ = table1(frame, metric_columns(frame), "t")
    solvers = [(row.record["nfe"], row.cells[1].text) for row in ranked.rows]
    assert solvers == [(5, "ba"), (5, "ba @ ld3 (= uniform)"), (10, "ba"), (10, "ba @ ld3")]
    assert any(note.startswith("(= uniform): the learned time grid came back the uniform grid")
               for note in ranked.notes)
    assert [row.record["learned_grid_uniform"] for row in ranked.rows] == [False, True, False, False]
    costs = training_cost_table(frame, KNOWN_BY_NAME["trajectory_error"], "t")
    assert [row.cells[1].text for row in costs.rows] == ["ba", "ba @ ld3 (= uniform)", "ba", "ba @ ld3"]


def test_a_learned_grid_that_moved_is_not_marked_however_close_its_numbers():
    frame = learned_rows(LEARNED_5)
    ranked, _ = table1(frame, metric_columns(frame), "t")
    assert not any("(= uniform)" in row.cells[1].text for row in ranked.rows)
    assert not any("(= uniform)" in note for note in ranked.notes)


@pytest.mark.parametrize("times, uniform", [
    ([1.0, 0.75, 0.5, 0.25, 0.0], True), ([1.0, 0.75000001, 0.49999999, 0.25, 0.0], True),
    ([1.0, 0.7501, 0.5, 0.25, 0.0], False), ([1.0, 0.0], True), ([1.0, 0.5, 0.0, 0.0], False)])
def test_a_stored_grid_is_uniform_within_the_stored_precision(times, uniform):
    assert is_uniform(json.dumps(times)) is uniform
