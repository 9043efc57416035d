"""The report's figures read well: distinct solver styles, NFE ticks, one guide per theoretical
slope, error bars from the results' 95% intervals, a 1 x 1 sample grid; the index shows
one caption per table and the slope table prints NFE as integers.

Everything is drawn from small frames built here; nothing is run.
"""
import json

import matplotlib
import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.container import ErrorbarContainer

from solverbench.report.figures import convergence
from solverbench.report.figures.convergence import draw_convergence, plot_convergence
from solverbench.report.figures.order_curves import GUIDE_COLOR, draw_order_curves
from solverbench.report.figures.samples import plot_samples
from solverbench.report.figures.style import SolverStyles
from solverbench.report.index import index_html, index_markdown
from solverbench.report.items import Item, Section
from solverbench.metric_columns import KNOWN_BY_NAME
from solverbench.report.order_fit import OrderCurve, global_error_curves
from solverbench.report.tables.model import Cell, Row, Table
from solverbench.report.tables.slopes import slope_table

TRAJECTORY_ERROR = KNOWN_BY_NAME["trajectory_error"]
# The solver labels of configs/quick.yaml as the report shows them (13 fixed-step lines, then
# the adaptive reference; Euler's 50-200 NFE runs share Euler's label).
QUICK_LABELS = [
    "euler", "heun", "midpoint", "rk4", "flow-dpm(order=2)", "flow-dpm(order=3)",
    "flow-unipc(variant=bh1, order=2)", "flow-unipc(variant=bh1, order=3)", "flow-unipc(variant=bh2, order=2)",
    "flow-unipc(variant=bh2, order=3)", "ba(rule=lobatto, nodes=2, checkpoint=gmm64.pt)",
    "ba-single(nodes=3, checkpoint=gmm64.pt)", "ba(rule=lobatto, nodes=2, sidenet=off)",
    "reference(rtol=1e-05, atol=1e-05)",
]


def row(label, nfe, error, *, order=1, seed=0, status="ok", interval=None, cell_id=None):
    """One sweep result row; ``interval`` (low, high) adds the metric's 95% interval columns."""
    record = {
        "cell_id": cell_id or f"{label}-{nfe}-{seed}", "solver": label.split("(")[0],
        "solver_params": json.dumps({}), "solver_label": label, "solver_order": order, "analysis_only": False,
        "nfe": nfe, "nfe_measured": 90 if nfe is None else nfe, "seed": seed, "dtype": "float32",
        "trajectory_error": error, "status": status, "error": None,
    }
    if interval is not None:
        record["trajectory_error_ci_low"], record["trajectory_error_ci_high"] = interval
    return record


def sweep(intervals: bool) -> pd.DataFrame:
    """Two solvers at NFE 5, 7, 10, 15 (errors ~ NFE^-order), Euler also at 100, an adaptive reference."""
    rows = []
    for label, order in (("euler", 1), ("heun", 2)):
        for nfe in (5, 7, 10, 15):
            error = 0.5 * nfe ** -order
            rows.append(row(label, nfe, error, order=order,
                            interval=(0.8 * error, 1.25 * error) if intervals else None))
    rows.append(row("euler", 100, 0.005, interval=(0.004, 0.006) if intervals else None))
    rows.append(row("reference(rtol=1e-05)", None, 1e-3, order=5, interval=(8e-4, 1.2e-3) if intervals else None))
    return pd.DataFrame(rows)


@pytest.fixture
def axes():
    fig, ax = plt.subplots(figsize=(9, 5))
    yield fig, ax
    plt.close(fig)


def tick_texts(fig, axis):
    fig.canvas.draw()
    return ([t.get_text() for t in axis.get_majorticklabels() if t.get_text()],
            [t.get_text() for t in axis.get_minorticklabels() if t.get_text()])


# -- 1. a grid of one solver at one NFE ----------------------------------------------------------------

@pytest.mark.parametrize("samples", [torch.randn(12, 2), torch.rand(6, 3, 8, 8) * 2 - 1], ids=["points", "images"])
def test_a_sample_grid_of_one_solver_at_one_nfe_is_drawn(tmp_path, samples):
    frame = pd.DataFrame([row("heun", 10, 0.1, cell_id="tiny-00")])
    torch.save({"samples": samples, "labels": torch.arange(len(samples)) % 3}, tmp_path / "tiny-00.pt")
    path = plot_samples(frame, tmp_path, "tiny: one solver, one NFE", tmp_path / "samples.png")
    assert path == tmp_path / "samples.png"
    assert matplotlib.image.imread(path).ndim == 3


# -- 3. distinct styles -----------------------------------------------------------------------------------

def cielab(color) -> np.ndarray:
    """sRGB -> CIELAB (D65): Euclidean distance there is roughly how different two colors look."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.cbrt(np.maximum(xyz / [0.95047, 1.0, 1.08883], (6 / 29) ** 3))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_twenty_labels_get_twenty_colors_and_every_label_a_style_of_its_own():
    labels = [f"solver-{i}" for i in range(20)]
    styles = SolverStyles(labels)
    colors = [matplotlib.colors.to_hex(styles.color(label)) for label in labels]
    assert len(set(colors)) == 20
    many = SolverStyles(f"solver-{i}" for i in range(250))
    combos = {(matplotlib.colors.to_hex(many.color(f"solver-{i}")), many.marker(f"solver-{i}"),
               str(many.linestyle(f"solver-{i}"))) for i in range(250)}
    assert len(combos) == 250
    assert all(many.linestyle(f"solver-{i}") != "--" for i in range(250))  # '--' marks analysis-only solvers


def test_the_quick_grid_labels_get_colors_a_reader_tells_apart():
    styles = SolverStyles(QUICK_LABELS)
    colors = [styles.color(label) for label in QUICK_LABELS]
    assert len({matplotlib.colors.to_hex(c) for c in colors}) == len(QUICK_LABELS)
    lab = [cielab(c) for c in colors]
    closest = min(np.linalg.norm(lab[i] - lab[j]) for i in range(len(lab)) for j in range(i))
    assert closest > 25  # tab10 + Dark2 gave ba-single Dark2's orange next to heun's (about 14 apart)
    greys = [c for c in lab if np.hypot(c[1], c[2]) < 5 and 20 < c[0] < 90]
    assert not greys  # grey is for reference lines


# -- 4. NFE ticks -----------------------------------------------------------------------------------------

def test_convergence_plot_ticks_are_the_nfe_values_run_on_a_log_axis(axes):
    fig, ax = axes
    assert draw_convergence(ax, sweep(intervals=False), TRAJECTORY_ERROR, SolverStyles(["euler", "heun"]))
    assert ax.get_xscale() == "log"
    major, minor = tick_texts(fig, ax.xaxis)
    assert major == ["5", "7", "10", "15"] and minor == []


def test_global_order_ticks_are_the_nfe_values_run(axes):
    fig, ax = axes
    curves = global_error_curves(sweep(intervals=False))
    draw_order_curves(ax, curves, SolverStyles(c.label for c in curves))
    major, minor = tick_texts(fig, ax.xaxis)
    assert major == ["5", "7", "10", "15", "100"] and minor == []


# -- 5. one guide per theoretical slope ----------------------------------------------------------------

def test_order_curves_draw_one_grey_guide_per_theoretical_slope(axes):
    fig, ax = axes
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    curves = [OrderCurve(name, h, c * h ** (order + 1), order + 1, 1e-9)
              for name, order, c in [("euler", 1, 1.0), ("heun", 2, 2.0), ("midpoint", 2, 3.0), ("rk4", 4, 1.0),
                                     ("flow-dpm", 2, 0.5)]]
    curves.append(OrderCurve("mystery", h, h ** 2.5, None, 1e-9))
    styles = SolverStyles(c.label for c in curves)
    fan = draw_order_curves(ax, curves, styles)
    assert sorted(fan.y) == [2.0, 3.0, 5.0]  # one per distinct order + 1; none for the undeclared
    guides = [line for line in ax.lines if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert len(guides) == 3
    assert {matplotlib.colors.to_hex(g.get_color()) for g in guides} == {matplotlib.colors.to_hex(GUIDE_COLOR)}
    for guide, slope in zip(guides, sorted(fan.y)):
        x, y = guide.get_xdata(), guide.get_ydata()
        assert np.log(y[1] / y[0]) / np.log(x[1] / x[0]) == pytest.approx(slope)
    assert sorted(t.get_text() for t in ax.texts) == ["slope 2", "slope 3", "slope 5"]
    low, high = ax.get_ylim()
    assert all(low < v < high for g in guides for v in g.get_ydata())  # inside the axes, not stretching them


# -- 6. the slope table's fitted range ----------------------------------------------------------------

def test_slope_table_prints_the_fitted_nfe_range_as_integers_and_h_in_few_digits():
    nfe = np.array([5.0, 7.0, 10.0, 15.0])
    by_nfe = slope_table([OrderCurve("heun", nfe, 0.5 * nfe ** -2.0, -2.0, 1e-6)], "global", "NFE")
    assert by_nfe.rows[0].cells[5].text == "5 – 15"
    h = 0.1 / 2 ** (np.arange(13) / 2)
    by_h = slope_table([OrderCurve("heun", h[::-1], 0.5 * h[::-1] ** 3, 3.0, 1e-12)], "lte", "H")
    assert by_h.rows[0].cells[5].text == "0.00156 – 0.1"


# -- 7. one caption per table in the index ------------------------------------------------------------

def test_index_shows_one_caption_per_table():
    table = Table("Table 1 layout. grid: setting: each metric by NFE budget and solver.", ["NFE", "solver", "error"],
                  text_columns=(0, 1), rows=[Row([Cell("5"), Cell("euler"), Cell("0.1")], {})])
    description = "Table 1 layout: every metric by NFE budget (blocks) and solver; bold marks the best."
    sections = [Section("grid: setting", [Item(description, table=table, files=[])])]
    html = index_html(sections, "header")
    assert html.count("<caption>") == 1 and html.count(description) == 1
    assert table.caption not in html
    markdown = index_markdown(sections, "header")
    assert markdown.count(description) == 1 and table.caption not in markdown
    assert "| 5 | euler | 0.1 |" in markdown


# -- 8. error bars -----------------------------------------------------------------------------------------

def test_convergence_draws_error_bars_and_bands_from_the_interval_columns(axes):
    fig, ax = axes
    assert draw_convergence(ax, sweep(intervals=True), TRAJECTORY_ERROR, SolverStyles(["euler", "heun"]))
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # one per solver line
    heun = next(b for b in bars if matplotlib.colors.to_hex(b.lines[2][0].get_color()[0])
                == matplotlib.colors.to_hex(SolverStyles(["euler", "heun"]).color("heun")))
    segments = heun.lines[2][0].get_segments()
    ends = sorted((float(s[0][1]), float(s[1][1])) for s in segments)
    expected = sorted((0.8 * 0.5 * n ** -2, 1.25 * 0.5 * n ** -2) for n in (5, 7, 10, 15))
    assert np.allclose(ends, expected)
    assert len(ax.patches) == 2  # light bands about Euler at 100 NFE and the adaptive reference
    assert "bars (and grey bands): 95% confidence intervals" in ax.get_legend_handles_labels()[1]


def test_convergence_without_intervals_draws_no_bars(axes):
    fig, ax = axes
    draw_convergence(ax, sweep(intervals=False), TRAJECTORY_ERROR, SolverStyles(["euler", "heun"]))
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)] and not ax.patches


def test_convergence_falls_back_to_the_rows_own_intervals(axes, monkeypatch):
    """Where the aggregated table carries no interval columns, a single seed's row interval is drawn."""
    def means_only(rows, metrics):
        return (rows.assign(nfe_block=rows["nfe"].map(convergence.nfe_block))
                .groupby(["nfe_block", "solver_label"], as_index=False)[[m.name for m in metrics]].mean())

    monkeypatch.setattr(convergence, "aggregate", means_only)
    fig, ax = axes
    draw_convergence(ax, sweep(intervals=True), TRAJECTORY_ERROR, SolverStyles(["euler", "heun"]))
    assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == 2


def test_convergence_png_puts_the_legend_below_the_axes(tmp_path):
    labels = [f"solver-{i}(option=a long value, another=1)" for i in range(13)]
    rows = pd.DataFrame([row(label, nfe, (1 + i) * 0.05 / nfe, interval=(0.01, 0.02))
                         for i, label in enumerate(labels) for nfe in (5, 7, 10, 15)])
    path = plot_convergence(rows, TRAJECTORY_ERROR, "many solvers", tmp_path / "c.png", SolverStyles(labels))
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width < 1.25 * 9.0 * 150  # nothing to the right of the 9-inch figure
    assert height > width * 0.6  # the legend's rows are under the axes


def test_convergence_draws_the_noise_floor_where_the_metric_has_one(axes):
    fig, ax = axes
    rows = sweep(intervals=True).assign(trajectory_error_floor=0.02, trajectory_error_floor_ci_low=0.018,
                                        trajectory_error_floor_ci_high=0.022)
    draw_convergence(ax, rows, TRAJECTORY_ERROR, SolverStyles(["euler", "heun"]))
    labels = ax.get_legend_handles_labels()[1]
    assert "data vs. data (noise floor): 0.0200 ± 0.0020" in labels
    floor = next(line for line in ax.lines if line.get_label().startswith("data vs. data"))
    assert list(floor.get_ydata()) == [0.02, 0.02]
    plain = plt.figure().add_subplot()
    draw_convergence(plain, sweep(intervals=True), TRAJECTORY_ERROR, SolverStyles(["euler", "heun"]))
    assert not any(label.startswith("data vs. data") for label in plain.get_legend_handles_labels()[1])


def test_a_log_value_axis_spanning_less_than_two_decades_reads_in_plain_numbers(axes):
    from solverbench.report.figures.style import plain_log_ticks

    fig, ax = axes
    ax.plot([5, 15], [9.0, 23.0])
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels() if t.get_text()]
    assert labels == ["10", "20"]
    assert not [t.get_text() for t in ax.yaxis.get_ticklabels(minor=True) if t.get_text()]
