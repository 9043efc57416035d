"""A convergence figure with more solvers than one legend holds draws one panel per solver family, each
with the same reference lines and value axis; up to ten solvers stay on one axes.  The solver labels
are those of configs/peers.yaml (training-free, diffusers, learned grids, Bespoke, BA); the frame is
built here."""
import json
from contextlib import contextmanager

import pandas as pd
import pytest

from solverbench.report.figures import convergence
from solverbench.report.figures.convergence import MAX_LINES, SOLVER_LINE, plot_convergence
from solverbench.report.figures.families import LEARNED, family_panels
from solverbench.report.figures.style import SolverStyles
from solverbench.metric_columns import KNOWN_BY_NAME

TRAJECTORY_ERROR = KNOWN_BY_NAME["trajectory_error"]
UNIFORM_5 = json.dumps([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
LEARNED_GRID = json.dumps([1.0, 0.6, 0.3, 0.1, 0.0])  # any grid that is not uniform

# (solver, label, learned): the labels configs/peers.yaml's digits setting gets, in its order
PEERS = [
    ("euler", "euler", False), ("flow-dpm", "flow-dpm(order=2)", False),
    ("flow-unipc", "flow-unipc(variant=bh2, order=2)", False), ("ba", "ba(sidenet=off)", False),
    ("diffusers", "diffusers(scheduler=FlowMatchEulerDiscreteScheduler, shift=1.0)", False),
    ("diffusers", "diffusers(scheduler=FlowMatchEulerDiscreteScheduler, shift=3.0)", False),
    ("diffusers", "diffusers(scheduler=FlowMatchHeunDiscreteScheduler)", False),
    ("diffusers", "diffusers(scheduler=DPMSolverMultistepScheduler, solver_order=2)", False),
    ("diffusers", "diffusers(scheduler=UniPCMultistepScheduler, solver_type=bh2)", False),
    ("flow-unipc", "flow-unipc(variant=bh2, order=2) @ ld3", True),
    ("flow-unipc", "flow-unipc(variant=bh2, order=2) @ gits", True),
    ("bespoke", "bespoke(base=rk2)", False), ("ba", "ba(checkpoint=digits.pt)", False),
    ("ba", "ba(checkpoint=digits.pt) @ gits", True), ("ba", "ba(checkpoint=digits.pt) @ ld3", True),
]


def peers_rows(solvers=PEERS) -> pd.DataFrame:
    """Every solver at NFE 5, 7, 10, Euler also at 100, and an adaptive reference; ``ba @ ld3`` came back
    uniform at NFE 5."""
    records = []
    for i, (solver, label, learned) in enumerate(solvers):
        for nfe in (5, 7, 10):
            times = (UNIFORM_5 if label.startswith("ba(") and label.endswith("@ ld3") and nfe == 5 else LEARNED_GRID
                     ) if learned else None
            records.append({"solver": solver, "solver_label": label, "solver_params": "{}", "analysis_only": False,
                            "nfe": nfe, "nfe_measured": nfe, "seed": 0, "status": "ok", "schedule_times": times,
                            "trajectory_error": (0.2 + 0.01 * i) * 5 / nfe,
                            "trajectory_error_ci_low": (0.18 + 0.01 * i) * 5 / nfe,
                            "trajectory_error_ci_high": (0.22 + 0.01 * i) * 5 / nfe})
    for solver, label, nfe, error in (("euler", "euler", 100, 0.02), ("reference", "reference", None, 0.01)):
        records.append({"solver": solver, "solver_label": label, "solver_params": "{}", "analysis_only": False,
                        "nfe": nfe, "nfe_measured": nfe or 90, "seed": 0, "status": "ok", "schedule_times": None,
                        "trajectory_error": error})
    return pd.DataFrame(records)


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_convergence makes, kept for inspection after they are written."""
    figures = []
    real = convergence.report_figure

    @contextmanager
    def keep(*args, **kwargs):
        with real(*args, **kwargs) as (fig, axes):
            figures.append(fig)
            yield fig, axes

    monkeypatch.setattr(convergence, "report_figure", keep)
    return figures


def solver_lines(ax) -> list[str]:
    return [line.get_label() for line in ax.lines if line.get_gid() == SOLVER_LINE]


def test_the_peers_solvers_fall_into_families_of_at_most_ten():
    frame = peers_rows()
    labels = [label for _, label, _ in PEERS]
    panels = family_panels(frame, labels)
    assert [p.title for p in panels] == [
        "euler, bespoke", "flow-dpm, flow-unipc", "ba", "diffusers", f"{LEARNED} (ld3, gits): flow-unipc, ba"]
    assert sorted(label for p in panels for label in p.labels) == sorted(labels)
    assert all(len(p.labels) <= MAX_LINES for p in panels)


def test_more_than_ten_solvers_are_drawn_one_panel_per_family(tmp_path, drawn):
    frame = peers_rows()
    styles = SolverStyles(frame["solver_label"])
    assert plot_convergence(frame, TRAJECTORY_ERROR, "peers", tmp_path / "c.png", styles) == tmp_path / "c.png"
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 5
    drawn_labels = [label.split(" (")[0] for ax in panels for label in solver_lines(ax)]
    assert sorted(drawn_labels) == sorted(label for _, label, _ in PEERS)  # every solver once
    for ax in panels:
        assert 1 <= len(solver_lines(ax)) <= MAX_LINES
        assert len(ax.get_legend().get_texts()) == len(solver_lines(ax))  # its own solvers named below it
        references = [line for line in ax.lines if list(line.get_xdata()) == [0, 1]]  # axhline: across the axes
        assert len(references) == 2  # Euler at 100 NFE and the adaptive reference, in every panel
    assert len({ax.get_ylim() for ax in panels}) == 1  # one value axis
    shared = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(text.startswith("euler at 100 NFE") for text in shared)
    assert len(shared) == len(set(shared))  # the reference lines named once, below all panels
    learned = next(ax for ax in panels if ax.get_title().startswith(LEARNED))
    assert "ba(checkpoint=digits.pt) @ ld3 (learned grid = uniform at NFE 5)" in solver_lines(learned)
    assert "ba(checkpoint=digits.pt) @ gits" in solver_lines(learned)


def test_ten_solvers_stay_on_one_axes(tmp_path, drawn):
    frame = peers_rows(PEERS[:10])
    plot_convergence(frame, TRAJECTORY_ERROR, "ten", tmp_path / "c.png", SolverStyles(frame["solver_label"]))
    (fig,) = drawn
    (ax,) = fig.axes
    assert len(solver_lines(ax)) == 10


def test_one_family_of_many_solvers_stays_on_one_axes(tmp_path, drawn):
    many = [("diffusers", f"diffusers(shift={i})", False) for i in range(12)]
    frame = peers_rows(many)
    plot_convergence(frame, TRAJECTORY_ERROR, "one family", tmp_path / "c.png", SolverStyles(frame["solver_label"]))
    (fig,) = drawn
    assert len(fig.axes) == 1 and len(solver_lines(fig.axes[0])) == 12
