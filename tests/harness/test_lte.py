"""The local-truncation-error study (grids of kind lte): orders, exact history, refusals, validation.

Orders are measured on the analytic gmm preset ``gmm-smooth`` in float64: its wide
components make every solver reach its asymptotic regime for H <= 0.1, and a reference
tolerance of 1e-12 resolves errors down to the 1e-9 fit floor.
"""
from typing import Optional

import pytest
import torch

from solverbench import register_solver
from solverbench.grid import GridError, parse_grid
from solverbench.report.order_fit import lte_curves
from solverbench.results import ResultsTable
from solverbench.engine import SweepFailed, run_grid
from solverbench.solver import Solver
from solvers.runge_kutta import EULER

ORDER_TOLERANCE = 0.3




def lte_grid(solvers, **overrides) -> dict:
    raw = {
        "name": "lte-test", "kind": "lte",
        "backbones": [{"name": "gmm", "params": {"preset": "gmm-smooth"}}],
        "solvers": solvers,
        "lte": {"step_sizes": {"largest": 0.1, "smallest": 0.00625, "count": 9}, "start_times": [0.7, 0.55, 0.4]},
        "num_samples": 16, "dtype": "float64", "reference": {"rtol": 1e-12, "atol": 1e-12},
    }
    raw.update(overrides)
    return raw


def fitted_slopes(frame) -> dict[str, Optional[float]]:
    return {curve.label: curve.slope for curve in lte_curves(frame)}


@register_solver("test-adams-bashforth2")
class AdamsBashforth2(Solver):
    """Two-step Adams-Bashforth on uniform steps: x(t - H) = x(t) - H (3/2 v(t) - 1/2 v(t + H)); LTE O(H^3)."""

    order = 2
    history_length = 2

    def local_step(self, field, history_times, history_states, t_next):
        (t_old, t), (x_old, x) = history_times, history_states
        assert t_old - t == pytest.approx(t - t_next), "the study gives history at the step's own spacing"
        return x - (t - t_next) * (1.5 * field(x, t) - 0.5 * field(x_old, t_old))

    def solve(self, field, x, plan):  # Euler start-up, then AB2 (not used by the study)
        v_old = None
        grid = plan.times
        for k in range(len(grid) - 1):
            t, h = float(grid[k]), float(grid[k] - grid[k + 1])
            v = field(x, t)
            x = x - h * (v if v_old is None else 1.5 * v - 0.5 * v_old)
            v_old = v
        return x


@register_solver("test-two-step-without-local-step")
class TwoStepWithoutLocalStep(AdamsBashforth2):
    """Declares its history but offers no exact-history step."""

    local_step = Solver.local_step


@register_solver("test-undeclared-multistep")
class UndeclaredMultistep(AdamsBashforth2):
    """Carries velocities between intervals but declares nothing: the study must notice."""

    history_length = 1
    local_step = Solver.local_step


@register_solver("test-euler-no-order")
class EulerWithoutOrder(Solver):
    """Euler's method claiming no order."""

    def solve(self, field, x, plan):
        for t, t_next, _ in plan.steps():
            x = EULER.step(field, x, t, t_next - t)
        return x


@pytest.fixture(scope="module")
def one_step_study(tmp_path_factory):
    grid = parse_grid(lte_grid(["euler", "heun", "midpoint", "rk4", "test-adams-bashforth2", "test-euler-no-order"]))
    return run_grid(grid, tmp_path_factory.mktemp("results"), progress=False).frame


@pytest.mark.parametrize("label, theory", [("euler", 2), ("heun", 3), ("midpoint", 3), ("rk4", 5)])
def test_lte_slope_matches_theory(one_step_study, label, theory):
    slope = fitted_slopes(one_step_study)[label]
    assert slope == pytest.approx(theory, abs=ORDER_TOLERANCE)


def test_multistep_solver_gets_exact_history(one_step_study):
    """A two-step method stepping from exact history has the LTE O(H^3) of its own formula."""
    assert fitted_slopes(one_step_study)["test-adams-bashforth2"] == pytest.approx(3, abs=ORDER_TOLERANCE)
    rows = one_step_study[one_step_study["solver"] == "test-adams-bashforth2"]
    assert (rows["history_length"] == 2).all() and rows["own_local_step"].all()
    assert (rows["nfe_measured"] == 2).all()


def test_flow_dpm_order2_lte_slope_matches_theory(tmp_path):
    """Flow-DPM(2M) from exact history: LTE O(H^3).  Needs flow-dpm's Solver.local_step."""
    grid = parse_grid(lte_grid([{"name": "flow-dpm", "params": {"order": 2}}]))
    frame = run_grid(grid, tmp_path, progress=False).frame
    assert fitted_slopes(frame)["flow-dpm(order=2)"] == pytest.approx(3, abs=ORDER_TOLERANCE)


def test_rows_hold_the_study_columns(one_step_study):
    rows = one_step_study
    assert (rows["status"] == "ok").all()
    assert {"H", "t_start", "t_end", "lte", "lte_max", "lte_order_theory", "reference_rtol"} <= set(rows.columns)
    assert sorted(rows["t_start"].unique()) == [0.4, 0.55, 0.7]
    assert rows["H"].nunique() == 9
    assert rows.loc[rows["solver"] == "euler", "lte_order_theory"].eq(2).all()
    assert rows.loc[rows["solver"] == "test-euler-no-order", "lte_order_theory"].isna().all()
    assert (rows["t_end"] - (rows["t_start"] - rows["H"])).abs().max() < 1e-15


def test_solver_without_exact_history_step_is_refused_clearly(tmp_path):
    grid = parse_grid(lte_grid(["euler", "test-two-step-without-local-step", "test-undeclared-multistep"]))
    with pytest.raises(SweepFailed, match="no exact-history step") as failure:
        run_grid(grid, tmp_path, progress=False)
    assert "test-two-step-without-local-step" in str(failure.value)
    frame = ResultsTable(tmp_path / "lte-test").frame
    by_solver = frame.groupby("solver")
    assert (by_solver.get_group("euler")["status"] == "ok").all()
    for name in ("test-two-step-without-local-step", "test-undeclared-multistep"):
        rows = by_solver.get_group(name)
        assert (rows["status"] == "error").all()
        assert rows["error"].str.startswith("no exact-history step").all()
        assert rows["lte"].isna().all()
    assert "carries state from one interval to the next" in by_solver.get_group("test-undeclared-multistep")["error"].iloc[0]


def test_sidenet_solvers_are_prepared_for_the_backbone(tmp_path):
    """A trained BA-solver steps from exact states too (its SideNet trained once, cached, logged)."""
    tiny = {"iterations": 2, "width": 16, "depth": 1, "embed_dim": 8, "batch_size": 16, "chain_length": 2}
    grid = parse_grid(lte_grid(["ba", "ba-single", {"name": "ba", "params": {"sidenet": "off"}}], solver_settings={"ba": tiny},
                               lte={"step_sizes": [0.1, 0.05], "start_times": [0.5]}))
    rows = run_grid(grid, tmp_path, progress=False).frame
    assert (rows["status"] == "ok").all(), rows["error"].dropna().tolist()
    assert rows["lte"].notna().all() and len(rows) == 6
    trained = rows[~rows["solver_params"].str.contains("off")]
    assert (trained["sidenet_params"] > 0).all() and (trained["sidenet_iterations"] == 2).all()
    assert len(list((tmp_path / ".cache" / "sidenet").iterdir())) == 1  # one SideNet for both solvers


def test_rerun_skips_steps_already_done(tmp_path, capsys):
    grid = parse_grid(lte_grid(["euler"], lte={"step_sizes": [0.1, 0.05], "start_times": [0.5]}))
    first = run_grid(grid, tmp_path, progress=False).frame
    second = run_grid(grid, tmp_path, progress=False).frame
    assert len(first) == len(second) == 2
    assert list(second["timestamp"]) == list(first["timestamp"])
    assert "2 of 2 steps already done" in capsys.readouterr().err


@pytest.mark.parametrize("change, key", [
    ({"lte": None}, "'lte'"),
    ({"nfe": [5]}, "'nfe'"),
    ({"lte": {"step_sizes": [0.5], "start_times": [0.4]}}, "'lte.step_sizes'"),
    ({"lte": {"step_sizes": [0.5, 0.2], "start_times": [0.4]}}, "would reach t <= 0"),
    ({"lte": {"step_sizes": {"largest": 0.1, "smallest": 0.2, "count": 3}, "start_times": [0.5]}}, "smallest"),
    ({"lte": {"step_sizes": [0.1, 0.05], "start_times": [1.5]}}, "'lte.start_times'"),
    ({"kind": "sweeep"}, "'kind'"),
    ({"solvers": [{"name": "euler", "schedule": {"name": "gits"}}]}, "has a schedule of its own"),
])
def test_bad_lte_grids_are_refused_before_any_work(change, key):
    raw = lte_grid(["euler"])
    raw.update(change)
    if raw["lte"] is None:
        del raw["lte"]
    with pytest.raises(GridError, match=key):
        parse_grid(raw)


def test_lte_settings_only_in_an_lte_grid():
    raw = lte_grid(["euler"], nfe=[5])
    del raw["kind"]
    with pytest.raises(GridError, match="only a grid of kind lte"):
        parse_grid(raw)


def test_history_beyond_t1_is_refused_before_any_work(tmp_path):
    with pytest.raises(GridError, match=r"t = 1.1, outside \[0, 1\]"):
        parse_grid(lte_grid(["test-adams-bashforth2"], lte={"step_sizes": [0.2, 0.1], "start_times": [0.9]}))


def test_one_step_default_local_step_is_one_solve():
    """The default local step of a one-step method is its solve over [t, t_next]."""
    from solverbench import VelocityField, make_plan, resolve_backbone
    from solverbench.solver import get_solver

    backbone = resolve_backbone("gmm", preset="gmm-smooth")
    x = torch.randn(4, 8, dtype=torch.float64)
    heun = get_solver("heun")
    step = heun.local_step(VelocityField(backbone), [0.6], [x], 0.5)
    solve = heun.solve(VelocityField(backbone), x, make_plan(heun, times=[0.6, 0.5], partial=True))
    assert torch.equal(step, solve)
