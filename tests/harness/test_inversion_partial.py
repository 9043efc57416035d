"""Partial inversion to a time t0 and regeneration from it: ``sb.invert(..., t_end=t0)`` and
``sb.sample(..., t_start=t0)`` (docs/inversion.md, "Edits that keep their source").

What users rely on: t0 = 1 is the whole inversion and the ordinary solve, bit for bit; every solver
spends exactly its budget on [0, t0] in both directions; the budget's schedule grid is scaled onto
[t0, 0], and the inversion walks it backwards; the exact flow returns the data from t0; a bad t0 is
refused in one line before any work.
"""
import math

import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.noise import data_generator
from solverbench.timegrid import make_time_grid

SHIPPED_GMM64 = "solvers/ba/checkpoints/gmm64.pt"
SOLVERS = [("euler", {}), ("heun", {}), ("rk4", {}), ("flow-dpm", {"order": 2}),
           ("flow-unipc", {"variant": "bh2", "order": 2}), ("ba", {"sidenet": "off"}),
           ("ba", {"checkpoint": SHIPPED_GMM64})]


@pytest.fixture(scope="module")
def gmm64():
    return GaussianMixture("gmm64")


@pytest.fixture(scope="module")
def data(gmm64):
    labels = torch.arange(6) % gmm64.num_classes
    x0, y = gmm64.sample_data(6, data_generator(0, 0), labels=labels)
    return x0.float(), y


def prepared(gmm64, name, params):
    solver = sb.get_solver(name, **params)
    solver.prepare(gmm64, sb.PrepareContext())
    return solver


@pytest.mark.parametrize("name, params", SOLVERS, ids=lambda v: v if isinstance(v, str) else str(v))
def test_each_solver_spends_exactly_its_budget_on_zero_to_t0_both_ways(gmm64, data, name, params):
    solver = prepared(gmm64, name, params)
    x0, y = data
    for nfe in (4, 5, 8):
        if solver.stages == 4 and nfe % 4:  # rk4 spends 4 per interval
            continue
        inverted = sb.invert(gmm64, solver, x0, y, nfe=nfe, cfg_scale=1.5, t_end=0.4)
        back = sb.sample(gmm64, solver, inverted.noise, y, nfe=nfe, cfg_scale=1.5, t_start=0.4)
        assert inverted.nfe == back.nfe == nfe
        assert inverted.times[0] == 0 and math.isclose(inverted.times[-1], 0.4, abs_tol=1e-15)
        assert back.plan.times[0] == 0.4 and back.plan.times[-1] == 0
        assert back.plan.stages == inverted.plan.stages and sum(back.plan.stages) == nfe


@pytest.mark.parametrize("name, params", SOLVERS, ids=lambda v: v if isinstance(v, str) else str(v))
def test_t0_of_one_is_the_whole_inversion_and_the_ordinary_solve_bit_for_bit(gmm64, data, name, params):
    solver = prepared(gmm64, name, params)
    x0, y = data
    whole = sb.invert(gmm64, solver, x0, y, nfe=8, cfg_scale=1.5)
    ended = sb.invert(gmm64, solver, x0, y, nfe=8, cfg_scale=1.5, t_end=1.0)
    assert torch.equal(whole.noise, ended.noise) and torch.equal(whole.plan.times, ended.plan.times)
    edit = sb.sample(gmm64, solver, whole.noise, (y + 1) % gmm64.num_classes, nfe=8, cfg_scale=2.0)
    started = sb.sample(gmm64, solver, ended.noise, (y + 1) % gmm64.num_classes, nfe=8, cfg_scale=2.0, t_start=1)
    assert torch.equal(edit.samples, started.samples)


@pytest.mark.parametrize("schedule", ["uniform", {"name": "shifted", "shift": 3.0}, {"name": "karras"}], ids=str)
def test_the_budgets_schedule_grid_is_scaled_onto_t0_to_zero_and_walked_backwards_when_inverting(gmm64, data,
                                                                                                schedule):
    x0, y = data
    back = sb.sample(gmm64, "heun", x0, y, nfe=7, schedule=schedule, t_start=0.6)
    torch.testing.assert_close(back.plan.times, 0.6 * make_time_grid(schedule, 4), rtol=0, atol=0)
    assert back.plan.stages == (2, 2, 2, 1)
    inverted = sb.invert(gmm64, "heun", x0, y, nfe=7, schedule=schedule, t_end=0.6)
    torch.testing.assert_close(inverted.times, back.plan.times.flip(0), rtol=0, atol=1e-15)


def test_the_exact_flow_inverted_to_t0_and_regenerated_from_it_returns_the_data(gmm64, data):
    x0, y = data
    reference = sb.get_solver("reference", rtol=1e-9, atol=1e-9)
    state = sb.invert(gmm64, reference, x0.double(), y, cfg_scale=1.5, t_end=0.3)
    assert state.times.tolist() == pytest.approx([0.0, 0.3])
    back = sb.sample(gmm64, reference, state.noise, y, cfg_scale=1.5, t_start=0.3).samples
    assert per_sample_rms(back, x0.double()).max() < 1e-6
    # the state at 0.3 is on the way to noise: neither the data nor noise
    assert 0.05 < per_sample_rms(state.noise, x0.double()).mean() < 0.6


def test_a_small_t0_changes_the_data_little_and_a_large_one_much(gmm64, data):
    x0, y = data
    targets = (y + 1) % gmm64.num_classes
    moved = {}
    for t0 in (0.1, 1.0):
        state = sb.invert(gmm64, "rk4", x0, y, nfe=16, t_end=t0).noise
        moved[t0] = per_sample_rms(sb.sample(gmm64, "rk4", state, targets, nfe=16, t_start=t0).samples, x0).mean()
    assert moved[0.1] < 0.25 * moved[1.0]


@pytest.mark.parametrize("value, error, message", [
    (0.0, ValueError, r"t_start must lie in \(0, 1\] \(between data t=0, excluded, and noise t=1\), got 0$"),
    (1.5, ValueError, r"t_start must lie in \(0, 1\].*got 1.5$"),
    (-0.2, ValueError, r"got -0.2$"),
    (float("nan"), ValueError, r"got nan$"),
    (True, TypeError, r"t_start must be a time in \(0, 1\] \(a number\), got True \(bool\)"),
    ("0.5", TypeError, r"got '0.5' \(str\)"),
], ids=["zero", "above-one", "negative", "nan", "bool", "string"])
def test_a_bad_t_start_or_t_end_is_refused_in_one_line(value, error, message):
    with pytest.raises(error, match=message):
        sb.sample("gmm", "euler", torch.randn(2, 64), nfe=4, t_start=value)
    with pytest.raises(error, match=message.replace("t_start", "t_end")):
        sb.invert("gmm", "euler", torch.randn(2, 64), nfe=4, t_end=value)


def test_t0_as_a_tensor_is_a_number():
    out = sb.sample("gmm", "euler", torch.randn(2, 64), nfe=4, t_start=torch.tensor(0.5))
    assert out.plan.times[0] == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda x: sb.sample("gmm", "euler", x, time_grid=[0.5, 0.0], partial=True, t_start=0.5),
     "give t_start or an explicit time_grid, not both"),
    (lambda x: sb.invert("gmm", "euler", x, time_grid=[0.0, 0.5], partial=True, t_end=0.5),
     "give t_end or an explicit time_grid, not both"),
    (lambda x: sb.sample("gmm", "euler", x, nfe=3, partial=True, t_start=0.5),
     "partial=True applies to an explicit time_grid; t_start needs none"),
    (lambda x: sb.sample("gmm", "reference", x, nfe=3, t_start=0.5), "is adaptive: give neither nfe"),
], ids=["sample-grid", "invert-grid", "partial", "adaptive-budget"])
def test_t0_with_an_explicit_grid_or_partial_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(2, 64))
