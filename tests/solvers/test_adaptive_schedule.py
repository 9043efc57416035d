"""The adaptive schedule (solverbench.adaptive): intervals chosen from a solver's embedded local-error estimate
(BA's and UniPC's predictor minus corrector) spend exactly the budget and end exactly at 0; the error-target
mode buys accuracy with NFE; a batch's samples do not depend on the batch; a hard region gets more intervals;
the estimate follows the true local error; a sweep records the grid walked; bad requests fail in one line."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.adaptive import adaptive_settings, decide_grid
from solverbench.engine import run_grid
from solverbench.field import VelocityField
from solverbench.grid import GridError, parse_grid
from solverbench.guidance import NO_GUIDANCE, Guidance
from solverbench.reference import Tolerance, reference_trajectory

PILOT = {"name": "adaptive", "samples": 16, "passes": 2}


class StiffAtMiddle(torch.nn.Module):
    """``dx/dt = lam(t) x`` with ``lam(t) = -A exp(-((t - C) / W)^2)``: smooth except near t = C = 0.5, where the
    velocity changes over a width W = 0.05; the exact flow is ``x(s) = x(t) exp(L(s) - L(t))``."""

    sample_shape = (4,)
    num_classes = None
    null_label = None
    A, C, W = 20.0, 0.5, 0.05

    def forward(self, x, t, y=None):
        return -self.A * torch.exp(-((t - self.C) / self.W) ** 2)[:, None] * x

    def exact(self, x, t, s):
        integral = lambda u: -self.A * self.W * math.sqrt(math.pi) / 2 * math.erf((u - self.C) / self.W)
        return x * math.exp(integral(s) - integral(t))


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture("gmm64")


@pytest.fixture(scope="module")
def ba(gmm):
    solver = sb.get_solver("ba", checkpoint="solvers/ba/checkpoints/gmm64.pt")
    solver.prepare(gmm)
    return solver


def solvers(ba):
    return [ba, sb.get_solver("ba", sidenet="off"), sb.get_solver("flow-unipc", variant="bh2", order=2)]


@pytest.mark.parametrize("nfe", [5, 7, 10, 15])
def test_the_budget_is_spent_exactly_and_the_grid_ends_exactly_at_zero(gmm, ba, nfe):
    noise, labels = torch.randn(4, 64), torch.arange(4)
    for solver in solvers(ba):
        result = sb.sample(gmm, solver, noise, labels, nfe=nfe, schedule=PILOT, cfg_scale=2.0)
        times = result.plan.times
        assert result.nfe == nfe and result.plan.nfe == nfe and result.plan.intervals == nfe
        assert times[0].item() == 1.0 and times[-1].item() == 0.0 and bool((times[1:] < times[:-1]).all())
        assert not torch.allclose(times, torch.linspace(1, 0, nfe + 1, dtype=torch.float64), atol=1e-3)
        assert result.counters["pilot_nfe"] > 0 and torch.isfinite(result.samples).all()


def test_the_error_target_mode_buys_a_smaller_error_with_more_nfe():
    smooth = GaussianMixture("gmm-smooth")
    noise = torch.randn(32, 8, dtype=torch.float64)
    exact = sb.sample(smooth, "reference", noise).samples
    for solver in (sb.get_solver("ba", sidenet="off"), sb.get_solver("flow-unipc")):
        spent, errors = [], []
        for tolerance in (0.3, 0.1, 0.03):
            result = sb.sample(smooth, solver, noise, schedule={**PILOT, "tolerance": tolerance})
            spent.append(result.nfe)
            errors.append((result.samples - exact).pow(2).mean(1).sqrt().mean().item())
            assert result.plan.times[-1].item() == 0.0 and result.nfe == result.plan.intervals
        assert spent[0] < spent[1] < spent[2], (solver.label(), spent)
        assert errors[0] > errors[1] > errors[2], (solver.label(), errors)


def test_the_error_target_grid_keeps_its_estimated_error_below_the_tolerance():
    smooth = GaussianMixture("gmm-smooth")
    for tolerance in (0.3, 0.03):
        grid = decide_grid(sb.get_solver("ba", sidenet="off"), smooth, NO_GUIDANCE,
                           adaptive_settings({**PILOT, "tolerance": tolerance}), nfe=None, conditional=False)
        assert grid.estimated_error <= tolerance and grid.pilot_nfe >= grid.intervals


def test_samples_do_not_depend_on_the_batch_they_are_solved_in(gmm, ba):
    """The grid is decided on the pilot, not on the batch: every batch walks the same grid, and gets what a solve on
    that fixed grid gives (bit for bit across batches where the solver has no network of its own; BA's SideNet,
    an MLP, is not bitwise batch-invariant on any grid)."""
    noise, labels = torch.randn(6, 64), torch.arange(6)
    for solver in solvers(ba):
        whole = sb.sample(gmm, solver, noise, labels, nfe=7, schedule=PILOT)
        parts = [sb.sample(gmm, solver, noise[s], labels[s], nfe=7, schedule=PILOT) for s in (slice(0, 1), slice(1, 6))]
        assert all(torch.equal(part.plan.times, whole.plan.times) for part in parts)
        fixed = sb.sample(gmm, solver, noise, labels, nfe=7, time_grid=whole.plan.times)
        assert torch.equal(fixed.samples, whole.samples)
        joined = torch.cat([part.samples for part in parts])
        if solver.params().get("sidenet") == "off" or not solver.registered_name.startswith("ba"):
            assert torch.equal(joined, whole.samples)
        else:
            assert torch.allclose(joined, whole.samples, rtol=0, atol=1e-5)


@pytest.mark.parametrize("solver", [{"name": "ba", "sidenet": "off"}, {"name": "flow-unipc"}], ids=str)
def test_a_hard_region_gets_more_intervals_and_a_smaller_error(solver):
    stiff, noise = StiffAtMiddle(), torch.randn(8, 4, dtype=torch.float64)
    solver = sb.get_solver(solver.pop("name"), **solver)
    adaptive = sb.sample(stiff, solver, noise, nfe=10, schedule={**PILOT, "passes": 3})
    uniform = sb.sample(stiff, solver, noise, nfe=10)
    inside = lambda times: int(((times > 0.4) & (times < 0.6)).sum())
    assert inside(adaptive.plan.times) >= 2 * inside(uniform.plan.times)
    exact = stiff.exact(noise, 1.0, 0.0)
    error = lambda result: (result.samples - exact).norm().item()
    assert error(adaptive) < 0.5 * error(uniform)


@pytest.mark.parametrize("solver", [{"name": "ba", "sidenet": "off"}, {"name": "flow-unipc"}], ids=str)
def test_the_estimate_follows_the_true_local_error(solver):
    """One interval from exact states at many times and two sizes, against a tight reference step: the estimate
    (predictor minus corrector) is the predictor's true local error to within a factor and follows it from
    interval to interval, and it bounds the true local error of the corrected state the solve carries on."""
    smooth = GaussianMixture("gmm-smooth")
    noise = torch.randn(16, 8, dtype=torch.float64)
    solver = sb.get_solver(solver.pop("name"), **solver)
    starts = [0.95, 0.8, 0.65, 0.5, 0.35, 0.2]
    states = reference_trajectory(VelocityField(smooth), noise, [1.0] + starts, Tolerance(1e-11, 1e-11))[1:]
    rms = lambda d: d.pow(2).mean(1).mean().sqrt().item()
    estimated, predictor, corrector = [], [], []
    for t, x in zip(starts, states):
        for h in (0.1, 0.05):
            field = VelocityField(smooth)
            stepper = solver.stepper(field, x, t)
            corrected, estimate = stepper.step(t - h, None)
            predicted, _ = stepper.step(t - h, 1)  # a final interval returns its predictor
            exact = reference_trajectory(field, x, [t, t - h], Tolerance(1e-11, 1e-11))[-1]
            estimated.append(estimate.pow(2).mean().sqrt().item())
            predictor.append(rms(predicted.x - exact))
            corrector.append(rms(corrected.x - exact))
    estimated, predictor, corrector = map(np.array, (estimated, predictor, corrector))
    assert np.corrcoef(np.log(estimated), np.log(predictor))[0, 1] > 0.9
    assert 0.3 < (estimated / predictor).min() and (estimated / predictor).max() < 2
    assert np.mean(estimated >= corrector) >= 0.85


@pytest.mark.parametrize("solver", [{"name": "ba", "sidenet": "off"},
                                    {"name": "flow-unipc", "variant": "bh1", "order": 3},
                                    {"name": "flow-unipc", "variant": "bh2", "order": 1}], ids=str)
def test_a_stepper_walked_along_a_grid_gives_the_solves_samples(gmm, solver):
    solver = sb.get_solver(solver.pop("name"), **solver)
    noise, labels, times = torch.randn(5, 64), torch.arange(5), [1.0, 0.8, 0.55, 0.3, 0.12, 0.0]
    field = VelocityField(gmm, labels, Guidance(2.0, (0.2, 0.7)))
    stepper = solver.stepper(field, noise, 1.0)
    for k in range(1, len(times)):
        stepper, _ = stepper.step(times[k], len(times) - k)
    solved = sb.sample(gmm, solver, noise, labels, time_grid=times, cfg_scale=2.0, cfg_interval=(0.2, 0.7))
    assert torch.allclose(stepper.x, solved.samples, rtol=0, atol=1e-6) and field.nfe == solved.nfe


def test_a_sweep_samples_on_the_adaptive_grid_and_its_rows_record_it(tmp_path):
    grid = parse_grid({"name": "a", "backbones": [{"name": "gmm", "params": {"preset": "gmm-smooth"}}],
                       "solvers": [{"name": "ba", "params": {"sidenet": "off"}}, "flow-unipc"], "nfe": [5],
                       "schedule": ["uniform", {**PILOT, "samples": 8}], "num_samples": 16, "batch_size": 8,
                       "metrics": ["trajectory_error"], "reference": {"rtol": 1e-6, "atol": 1e-6}})
    run_grid(grid, tmp_path, progress=False)
    table = pd.read_parquet(tmp_path / "a" / "results.parquet")
    assert (table["status"] == "ok").all() and (table["nfe_measured"] == 5).all() and len(table) == 4
    adaptive = table[table["schedule"].str.contains("adaptive")]
    for _, row in adaptive.iterrows():
        times = json.loads(row["schedule_times"])
        assert len(times) == 6 and times[0] == 1.0 and times[-1] == 0.0 and times != list(np.linspace(1, 0, 6))
        assert row["schedule_pilot_nfe"] > 0 and row["schedule_estimated_error"] > 0


@pytest.mark.parametrize("grid, message", [
    ({"solvers": ["heun"], "schedule": {"name": "adaptive"}},
     r"heun offers none; the solvers that do: .*ba.*flow-unipc"),
    ({"solvers": ["flow-unipc"], "schedule": {"name": "adaptive", "tolerance": 1e-3}}, "decides the NFE itself"),
    ({"solvers": ["flow-unipc"], "schedule": {"name": "adaptive"}, "nfe": [2]}, "at least 3 intervals"),
    ({"solvers": ["flow-unipc"], "schedule": {"name": "adaptive", "tolerance": 0}}, "tolerance must be a number > 0"),
])
def test_bad_adaptive_schedules_are_refused_when_the_grid_is_read(grid, message):
    base = {"name": "g", "backbones": ["gmm"], "nfe": [5], "metrics": ["trajectory_error"]}
    with pytest.raises(GridError, match=message):
        parse_grid({**base, **grid})


@pytest.mark.parametrize("call, message", [
    ({"solver": "heun", "nfe": 5}, r"heun offers none; the solvers that do: .*ba.*flow-unipc"),
    ({"nfe": 2}, "at least 3 intervals .* a budget of at least 3"),
    ({"nfe": None}, "needs an NFE budget"),
    ({"nfe": 5, "tolerance": 1e-3}, "decides the NFE itself"),
    ({"nfe": None, "tolerance": -1.0}, "tolerance must be a number > 0"),
    ({"nfe": None, "tolerance": 1e-9, "max_nfe": 8}, "needs more than max_nfe 8 NFE"),
    ({"nfe": 5, "passes": 0}, "passes must be a whole number >= 1"),
    ({"nfe": 5, "reduce": "mean"}, "reduce must be one of rms, max"),
])
def test_bad_adaptive_requests_fail_in_one_line(call, message):
    settings = {k: call.pop(k) for k in list(call) if k not in ("solver", "nfe")}
    with pytest.raises(ValueError, match=message) as caught:
        sb.sample(GaussianMixture("gmm-smooth"), call.get("solver", "flow-unipc"), torch.randn(2, 8),
                  nfe=call["nfe"], schedule={**PILOT, **settings})
    assert "\n" not in str(caught.value)


def test_an_adaptive_schedule_is_not_inverted():
    with pytest.raises(ValueError, match="adaptive schedule .* cannot be inverted"):
        sb.invert("gmm", sb.get_solver("flow-unipc"), torch.randn(4, 64), nfe=6, schedule={"name": "adaptive"})
