"""The LTE study run backwards (``lte: {direction: inversion}``): one step [t, t + H] toward noise on the
mirrored field, from exact states.  Each solver keeps its local order backwards; the mirrored BA scheme
with exact node velocities (oracle) shows its quadrature's O(H^7) (docs/inversion.md).

Measured on the smooth 8-D mixture in float64, as tests/harness/test_lte.py measures the forward steps.
"""
import pytest

from solverbench.grid import GridError, parse_grid
from solverbench.report.order_fit import lte_curves
from solverbench.engine import run_grid



def backwards_grid(solvers, step_sizes, start_times, **lte) -> dict:
    return {
        "name": "lte-backwards", "kind": "lte",
        "backbones": [{"name": "gmm", "params": {"preset": "gmm-smooth"}}], "solvers": solvers,
        "lte": {"step_sizes": step_sizes, "start_times": start_times, "direction": "inversion", **lte},
        "num_samples": 8, "dtype": "float64", "reference": {"rtol": 1e-13, "atol": 1e-13},
    }


def slopes(rows) -> dict:
    return {curve.label: curve.slope for curve in lte_curves(rows)}


def test_the_mirrored_ba_scheme_with_exact_node_velocities_keeps_its_local_order(tmp_path):
    """4-point Lobatto and 3-point Gauss-Legendre are exact to degree 5: local order 7 (slope >= 6.5 fitted
    where the error stands above the reference's 1e-13; at these H it is 1e-11 .. 1e-7)."""
    oracle = {"rtol": 1e-13, "atol": 1e-13}
    grid = parse_grid(backwards_grid(
        [{"name": "ba-oracle", "params": oracle}, {"name": "ba-oracle", "params": {"scheme": "single", **oracle}},
         {"name": "ba-oracle", "params": {"rule": "simpson", **oracle}}],
        [0.2, 0.1, 0.05], [0.05, 0.3]))
    rows = run_grid(grid, tmp_path, progress=False).frame
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    assert (rows["direction"] == "inversion").all() and (rows["t_end"] > rows["t_start"]).all()
    fitted = slopes(rows)
    lobatto, single, simpson = (next(v for k, v in fitted.items() if key in k)
                                for key in ("scheme=bi, rule=lobatto", "scheme=single", "rule=simpson"))
    assert lobatto > 6.5 and single > 6.5, fitted
    assert 4.5 < simpson < 6.0, fitted  # Simpson's 3/8: exact to degree 3, local order 5 (5.3-5.6 pre-asymptotic)


@pytest.mark.parametrize("solver, local_order", [
    ("euler", 2), ("heun", 3), ("rk4", 5),
    ({"name": "flow-dpm", "params": {"order": 2}}, 3), ({"name": "flow-unipc", "params": {"order": 2}}, 4),
], ids=str)
def test_every_solver_keeps_its_local_order_backwards(solver, local_order, tmp_path):
    """Multistep solvers get their exact history on the data side (t - H, t - 2H)."""
    grid = parse_grid(backwards_grid([solver], {"largest": 0.1, "smallest": 0.0125, "count": 4}, [0.45, 0.6]))
    rows = run_grid(grid, tmp_path, progress=False).frame
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    (slope,) = slopes(rows).values()
    assert abs(slope - local_order) < 0.3


def test_backwards_steps_that_would_pass_noise_or_need_history_below_data_are_refused():
    with pytest.raises(GridError, match=r"t = 0.95 toward noise would pass t = 1"):
        parse_grid(backwards_grid(["euler"], [0.1, 0.05], [0.95]))
    with pytest.raises(GridError, match=r"needs the state at t = -0.1.*raise the smallest start time"):
        parse_grid(backwards_grid([{"name": "flow-dpm", "params": {"order": 3}}], [0.1, 0.05], [0.1]))
    with pytest.raises(GridError, match="lte.direction"):
        parse_grid(backwards_grid(["euler"], [0.1, 0.05], [0.5], direction="sideways"))


def test_a_solver_that_cannot_invert_is_refused_by_a_backwards_study():
    grid = backwards_grid([{"name": "diffusers", "params": {"scheduler": "FlowMatchEulerDiscreteScheduler"}}],
                          [0.1, 0.05], [0.5])
    with pytest.raises(GridError, match=r"diffusers.*cannot invert \(a diffusers scheduler samples from noise"):
        parse_grid(grid)
