"""Every training-free solver: NFE exactly its budget, explicit grids, empirical global order."""
import numpy as np
import pytest
import torch
from scipy.stats import linregress

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.sampling import sample

EXPECTED = {"euler", "heun", "midpoint", "rk4", "flow-dpm", "flow-unipc"}


def fixed_step_solvers():
    """Every registered solver that needs no preparation, with each of its variants."""
    variants = {"flow-dpm": [{"order": 2}, {"order": 3}],
                "flow-unipc": [{"variant": v, "order": o} for v in ("bh1", "bh2") for o in (1, 2, 3)]}
    out = []
    for name in sb.SOLVERS.names():
        cls = sb.SOLVERS.get(name)
        if cls.adaptive or cls.prepare is not sb.Solver.prepare or name.startswith("test-"):
            continue
        out += [(name, p) for p in variants.get(name, [{}])]
    return out


def test_all_built_in_solvers_are_present():
    assert EXPECTED <= set(sb.SOLVERS.names())


@pytest.mark.parametrize("name, params", fixed_step_solvers(), ids=str)
@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_measured_nfe_equals_budget(name, params, cfg_scale):
    backbone = GaussianMixture("gmm2d")
    noise = torch.randn(6, 2)
    labels = torch.arange(6) % 4
    solver = sb.get_solver(name, **params)
    for nfe in range(1, 10):
        result = sample(backbone, solver, noise, labels, nfe=nfe, cfg_scale=cfg_scale, cfg_interval=(0.1, 0.9))
        assert result.nfe == nfe, f"{solver.label()} spent {result.nfe} NFE for a budget of {nfe}"
        assert torch.isfinite(result.samples).all()


@pytest.mark.parametrize("name, stages", [("euler", 1), ("heun", 2), ("midpoint", 2), ("rk4", 4)])
def test_uneven_budget_ends_with_a_lower_stage_step(name, stages):
    plan = sb.make_plan(sb.get_solver(name), nfe=4 * stages + 1)
    assert plan.intervals == 5 and plan.nfe == 4 * stages + 1
    assert plan.stages == (stages,) * 4 + (1,)
    assert sb.make_plan(sb.get_solver(name), times=torch.linspace(1, 0, 6)).stages == (stages,) * 5


@pytest.mark.parametrize("name, budget, stages", [("rk4", 6, (4, 2)), ("rk4", 7, (4, 3)), ("heun", 3, (2, 1))])
def test_the_plan_gives_the_remainder_to_the_last_interval(name, budget, stages):
    assert sb.make_plan(sb.get_solver(name), nfe=budget).stages == stages


def test_a_budget_a_solver_cannot_spend_is_refused_with_what_it_can():
    class TwoStageOnly(sb.Solver):
        stages = 2

    with pytest.raises(ValueError, match="spends 2 NFE per interval and cannot end on an interval of 1"):
        sb.make_plan(TwoStageOnly(), nfe=5)


def test_heun_odd_budget_is_heun_then_euler():
    """heun at NFE 5 = two Heun intervals and a final Euler interval on the 3-interval grid."""
    backbone = GaussianMixture("gmm2d")
    x = torch.randn(4, 2, dtype=torch.float64)
    grid = torch.linspace(1, 0, 4, dtype=torch.float64)
    by_budget = sample(backbone, "heun", x, nfe=5).samples
    two_heun = sample(backbone, "heun", x, time_grid=grid[:3], partial=True).samples
    expected = sample(backbone, "euler", two_heun, time_grid=grid[2:], partial=True).samples
    torch.testing.assert_close(by_budget, expected)


# Global order on the smooth preset (wide components: the asymptotic regime is reached at
# these step counts), float64, against a dopri5 reference at 1e-12.
ORDER_CASES = [("euler", [32, 64, 128]), ("heun", [16, 32, 64]), ("midpoint", [16, 32, 64]), ("rk4", [8, 16, 32])]


@pytest.mark.parametrize("name, steps", ORDER_CASES)
def test_empirical_global_order(name, steps):
    backbone = GaussianMixture("gmm-smooth")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g, dtype=torch.float64)
    y = torch.arange(32) % 3
    reference = sample(backbone, sb.get_solver("reference", rtol=1e-12, atol=1e-12), x, y).samples
    errors = []
    for n in steps:
        out = sample(backbone, name, x, y, time_grid=torch.linspace(1, 0, n + 1, dtype=torch.float64)).samples
        errors.append((out - reference).pow(2).mean().sqrt().item())
    assert all(1e-12 < e < 0.1 for e in errors), errors
    slope = linregress(np.log(1 / np.array(steps)), np.log(errors)).slope
    assert abs(slope - sb.get_solver(name).order) < 0.3, (name, errors, slope)


def test_shifted_schedule_is_used():
    backbone = GaussianMixture("gmm2d")
    x = torch.randn(4, 2)
    plain = sample(backbone, "euler", x, nfe=4)
    shifted = sample(backbone, "euler", x, nfe=4, schedule={"name": "shifted", "shift": 3.0})
    t = torch.linspace(1, 0, 5, dtype=torch.float64)
    torch.testing.assert_close(shifted.plan.times, 3 * t / (1 + 2 * t))
    assert not torch.allclose(plain.samples, shifted.samples)
