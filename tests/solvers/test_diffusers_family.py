"""The ``diffusers`` family: diffusers' schedulers as they ship, on a flow-matching model.

Parity: on the scheduler's own grid (its sigmas after ``set_timesteps``, handed to our
solver as an explicit grid), FlowMatchEuler is our ``euler``, FlowMatchHeun our ``heun``
with an Euler last interval (2N - 1 NFE), DPMSolverMultistep ``flow-dpm`` and UniPC bh2
``flow-unipc``: every evaluation (time and state) and the samples.  Then the NFE each
supported scheduler spends, the time mapping t = sigma, the refusals, and what the config
and ``grid=`` change.
"""
import math

import pytest
import torch

import solverbench
from solverbench.grid import GridError, parse_grid
from solverbench.solver import NoExactHistoryStep
from solverbench.timegrid import make_time_grid
from swirl_backbone import SwirlBackbone  # tests/solvers/swirl_backbone.py
from solvers.diffusers_schedulers import DiffusersScheduler, supported_schedulers, t_of_sigma

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
EULER, HEUN = "FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"
DPM, UNIPC = "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"


def noise(dtype=torch.float32, seed=0):
    return torch.randn(16, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def scheduler_sigmas(name, steps, **config):
    """The scheduler's own sigmas for ``steps`` steps (with the flow settings the family gives it)."""
    cls = getattr(diffusers, name)
    scheduler = cls(**({} if name.startswith("Flow") else FLOW), **config)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.to(torch.float64)


def grid_of(sigmas):
    """The distinct sigmas of a scheduler (FlowMatchHeun lists its inner ones twice): our time grid."""
    return torch.unique_consecutive(sigmas)


def compare(ours_solver, theirs, nfe, grid, dtype, atol):
    """``theirs`` (a diffusers family solver, NFE budget ``nfe``) and ``ours_solver`` on ``grid``: every
    evaluation and the samples agree to ``atol``."""
    x = noise(dtype)
    a, b = SwirlBackbone(), SwirlBackbone()
    got = solverbench.sample(a, theirs, x, nfe=nfe)
    want = solverbench.sample(b, ours_solver, x, time_grid=grid, partial=True, nfe=nfe)
    assert got.nfe == want.nfe == nfe == len(a.inputs)
    assert a.times == b.times
    for (x_theirs, _), (x_ours, _) in zip(a.inputs, b.inputs):
        torch.testing.assert_close(x_theirs, x_ours, rtol=0, atol=atol)
    assert got.samples.dtype == dtype
    torch.testing.assert_close(got.samples, want.samples, rtol=0, atol=atol)
    return a.times


# -- (a, b) parity with our solvers on the scheduler's own grid ------------------------------------------------

@pytest.mark.parametrize("steps", [5, 8, 12])
def test_flow_match_euler_is_euler_on_its_grid(steps):
    grid = scheduler_sigmas(EULER, steps)
    times = compare("euler", DiffusersScheduler(EULER), steps, grid, torch.float32, atol=1e-6)
    assert times == grid[:-1].tolist() and times[0] == 1.0  # FlowMatchEuler starts at sigma = 1 with shift 1


@pytest.mark.parametrize("steps", [3, 5, 8])
def test_flow_match_heun_is_heun_ending_with_an_euler_interval(steps):
    """diffusers' Heun takes N - 1 Heun steps and an Euler step to sigma = 0: our heun at 2N - 1 NFE."""
    sigmas = scheduler_sigmas(HEUN, steps)
    grid = grid_of(sigmas)
    assert len(grid) == steps + 1 and len(sigmas) == 2 * steps  # s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0
    # float32, and (sample - (sample - sigma v)) / sigma loses digits at sigma = 0.001
    times = compare("heun", DiffusersScheduler(HEUN), 2 * steps - 1, grid, torch.float32, atol=2e-5)
    assert times == sigmas[:-1].tolist()


@pytest.mark.parametrize("steps", [5, 12, 16])
@pytest.mark.parametrize("order", [2, 3])
def test_dpm_solver_multistep_is_flow_dpm(order, steps):
    grid = scheduler_sigmas(DPM, steps, solver_order=order)
    ours = solverbench.get_solver("flow-dpm", order=order, compat="diffusers" if order == 3 else None)
    times = compare(ours, DiffusersScheduler(DPM, solver_order=order), steps, grid, torch.float32, atol=1e-5)
    assert times[0] == pytest.approx(0.999, abs=1e-7)  # DPM-Solver's flow sigmas start at 1 - 1/1000


@pytest.mark.parametrize("steps", [5, 12, 16])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_bh2_is_flow_unipc_in_float64(order, steps):
    grid = scheduler_sigmas(UNIPC, steps, solver_order=order)
    ours = solverbench.get_solver("flow-unipc", variant="bh2", order=order)
    compare(ours, DiffusersScheduler(UNIPC, solver_order=order), steps, grid, torch.float64, atol=1e-12)


@pytest.mark.parametrize("name, ours, nfe", [(EULER, "euler", 7), (HEUN, "heun", 7), (DPM, "flow-dpm", 7)])
def test_flow_match_and_dpm_schedulers_compute_in_float32(name, ours, nfe):
    """A float64 state is rounded to float32 inside their step: agreement to float32, not float64, digits."""
    x = noise(torch.float64)
    steps = (nfe + 1) // 2 if name == HEUN else nfe
    grid = grid_of(scheduler_sigmas(name, steps))
    got = solverbench.sample(SwirlBackbone(), DiffusersScheduler(name), x, nfe=nfe).samples
    want = solverbench.sample(SwirlBackbone(), ours, x, time_grid=grid, partial=True, nfe=nfe).samples
    assert got.dtype == torch.float64
    assert 1e-12 < (got - want).abs().max() < 1e-5


# -- (c) NFE -----------------------------------------------------------------------------------------------------

def test_the_installed_diffusers_runs_at_least_these():
    assert {EULER, HEUN, DPM, UNIPC} <= set(supported_schedulers())


@pytest.mark.parametrize("nfe", [5, 7, 10])
@pytest.mark.parametrize("name", supported_schedulers())
def test_the_counted_nfe_is_the_budget(name, nfe):
    solver = DiffusersScheduler(name)
    backbone = SwirlBackbone()
    if name == HEUN and nfe % 2 == 0:  # 2N - 1: it ends with an Euler step
        with pytest.raises(ValueError, match=r"ends on an interval of 1 NFE, so it cannot spend a budget of 10; "
                                             r"give 9 or 11"):
            solverbench.sample(backbone, solver, noise(), nfe=nfe)
        assert backbone.inputs == []  # refused before any evaluation
        return
    result = solverbench.sample(backbone, solver, noise(), nfe=nfe)
    assert result.nfe == result.plan.nfe == len(backbone.inputs) == nfe
    assert torch.isfinite(result.samples).all()


@pytest.mark.parametrize("name", supported_schedulers())
def test_every_supported_scheduler_converges_to_the_flow(name):
    """More NFE, closer to a fine rk4 solve: the scheduler reads the field as the velocity at t = sigma."""
    x = noise(torch.float64)
    exact = solverbench.sample(SwirlBackbone(), "rk4", x, nfe=400).samples
    errors = [(solverbench.sample(SwirlBackbone(), DiffusersScheduler(name), x, nfe=nfe).samples - exact).abs().max()
              for nfe in (5, 41)]
    assert errors[1] < errors[0] / 5 and errors[1] < 0.05, errors  # 8x the NFE: 8x smaller at first order


def test_declared_stages_orders_and_history():
    euler, heun, dpm, unipc = (DiffusersScheduler(n) for n in (EULER, HEUN, DPM, UNIPC))
    assert (euler.stages, euler.partial_stages, euler.order, euler.history_length) == (1, (), 1, 1)
    assert (heun.stages, heun.partial_stages, heun.order, heun.history_length) == (2, (1,), 2, 1)
    assert (dpm.stages, dpm.order, dpm.history_length) == (1, 2, 2)  # 2M
    assert DiffusersScheduler(DPM, solver_order=3).order == 2  # the published 3M is second order
    assert (unipc.stages, unipc.order, unipc.history_length) == (1, 3, 2)  # UniPC-2 with its corrector


def test_the_lte_study_gets_no_exact_history_step():
    for name in (EULER, DPM):
        with pytest.raises(NoExactHistoryStep, match="whole grid ending at sigma = 0"):
            DiffusersScheduler(name).local_step(None, [0.5], [noise()], 0.4)


# -- (d) the time mapping ------------------------------------------------------------------------------------------

def test_t_is_sigma_not_the_rounded_timestep():
    assert t_of_sigma(torch.tensor(0.25, dtype=torch.float32)) == 0.25
    scheduler = diffusers.DPMSolverMultistepScheduler(**FLOW)
    scheduler.set_timesteps(7)
    assert scheduler.timesteps.dtype == torch.int64  # sigma * 1000, rounded
    backbone = SwirlBackbone()
    solverbench.sample(backbone, DiffusersScheduler(DPM), noise(), nfe=7)
    assert backbone.times == scheduler.sigmas[:-1].tolist()
    assert backbone.times != (scheduler.timesteps / 1000).tolist()


@pytest.mark.parametrize("name", supported_schedulers())
def test_the_noise_is_the_state_at_the_first_sigma(name):
    """The noise (the state at t = 1) is used at the scheduler's own first sigma, as pipelines do."""
    x = noise()
    backbone = SwirlBackbone()
    solverbench.sample(backbone, DiffusersScheduler(name), x, nfe=5)
    first = scheduler_sigmas(name, 3 if name == HEUN else 5)[0]
    assert backbone.times[0] == float(first) <= 1.0
    assert torch.equal(backbone.inputs[0][0], x)


# -- (e) refusals, each in one line --------------------------------------------------------------------------------

def refused(match, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as info:
        DiffusersScheduler(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("name", ["DDIMScheduler", "EulerDiscreteScheduler", "LMSDiscreteScheduler"])
def test_a_scheduler_without_flow_sigmas_is_refused_with_the_supported_ones(name):
    message = refused(f"{name} cannot sample a flow-matching model: it has no flow sigmas", name)
    assert f"the flow-matching schedulers it runs: {', '.join(supported_schedulers())}" in message


@pytest.mark.parametrize("name", ["DEISMultistepScheduler", "SASolverScheduler"])
def test_deis_and_sa_solver_are_refused_their_flow_sigmas_do_not_end_at_zero(name):
    refused(rf"{name}\(use_flow_sigmas=True, prediction_type='flow_prediction'\) cannot sample a flow-matching "
            r"model: its sigmas end at 0.333 \(for 3 steps\), not at 0", name)


def test_settings_that_do_not_sample_the_flow_are_refused_with_the_reason():
    refused("not finite", UNIPC, solver_type="bh1")  # its last step to sigma = 0 is B(h) * 0 = inf * 0
    refused("outside \\[0, 1\\]", DPM, use_karras_sigmas=True)  # VP sigmas: flow sigmas do not convert them
    refused("stochastic", DPM, algorithm_type="sde-dpmsolver++")
    refused("stochastic", EULER, stochastic_sampling=True)
    refused("stochastic", "FlowMatchLCMScheduler")
    refused("not at 0", DPM, final_sigmas_type="sigma_min")


def test_an_unknown_class_name_is_refused_with_close_names():
    refused("has no scheduler class 'FlowMatchEulerScheduler' \\(did you mean FlowMatchEulerDiscreteScheduler",
            "FlowMatchEulerScheduler")
    refused("has no scheduler class 'SchedulerMixin'", "SchedulerMixin")


def test_an_unknown_config_key_is_refused_naming_the_keys_of_the_class():
    message = refused("FlowMatchEulerDiscreteScheduler has no config key 'flow_shift'; its keys: ", EULER,
                      flow_shift=3.0)
    assert "shift, use_dynamic_shifting" in message and "use_karras_sigmas" in message
    refused("UniPCMultistepScheduler has no config key 'shift'; its keys: .*flow_shift", UNIPC, shift=3.0)


def test_a_setting_contradicting_a_flow_model_is_refused():
    refused("prediction_type='epsilon' contradicts a flow-matching model; the diffusers family sets "
            "prediction_type='flow_prediction'", DPM, prediction_type="epsilon")
    refused("use_flow_sigmas=False contradicts", UNIPC, use_flow_sigmas=False)
    same = DiffusersScheduler(DPM, use_flow_sigmas=True, prediction_type="flow_prediction")
    assert same.params() == DiffusersScheduler(DPM).params() == {"scheduler": DPM}


def test_mu_and_grid_settings_are_checked():
    refused("use_dynamic_shifting=True needs mu", EULER, use_dynamic_shifting=True)
    refused("mu applies only with use_dynamic_shifting=True", EULER, mu=1.15)
    refused("takes no sigmas, so grid='plan' cannot", DPM, grid="plan")
    refused("takes no sigmas", HEUN, grid="plan")
    refused("grid must be 'scheduler'", EULER, grid="uniform")


def test_a_grid_file_with_a_non_flow_scheduler_is_refused_while_read():
    grid = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "nfe": [2], "num_samples": 8,
            "solvers": [{"name": "diffusers", "params": {"scheduler": "DDIMScheduler"}}]}
    with pytest.raises(GridError, match="solvers\\[0\\].params.*DDIMScheduler cannot sample a flow-matching model"):
        parse_grid(grid)


@pytest.mark.parametrize("plan", [{"schedule": {"name": "shifted", "shift": 3.0}},
                                  {"time_grid": [1.0, 0.6, 0.3, 0.1, 0.0]},
                                  {"time_grid": [0.8, 0.5, 0.0], "partial": True}])
def test_the_scheduler_grid_refuses_a_plan_it_would_ignore(plan):
    backbone = SwirlBackbone()
    with pytest.raises(ValueError, match="samples on the scheduler's own sigmas \\(grid='scheduler'\\), so the plan's "
                                         "time grid .* would be ignored.*grid='plan'"):
        solverbench.sample(backbone, DiffusersScheduler(EULER), noise(), nfe=4 if "schedule" in plan else None, **plan)
    assert backbone.inputs == []


# -- (f) the config and grid= change the grid ----------------------------------------------------------------------

def evaluation_times(solver, nfe=None, **plan):
    backbone = SwirlBackbone()
    solverbench.sample(backbone, solver, noise(), nfe=nfe, **plan)
    return torch.tensor(backbone.times, dtype=torch.float64)


def test_sd3_shift_3_moves_the_evaluations_toward_noise():
    plain, sd3 = evaluation_times(DiffusersScheduler(EULER), 8), evaluation_times(DiffusersScheduler(EULER, shift=3.0), 8)
    assert plain[0] == sd3[0] == 1.0
    assert (sd3[1:] > plain[1:]).all()
    assert torch.equal(sd3, scheduler_sigmas(EULER, 8, shift=3.0)[:-1])


@pytest.mark.parametrize("name, key", [(EULER, "use_karras_sigmas"), (EULER, "use_exponential_sigmas"),
                                       (EULER, "use_beta_sigmas"), (UNIPC, "use_karras_sigmas")])
def test_karras_exponential_and_beta_sigmas_pass_through(name, key):
    times = evaluation_times(DiffusersScheduler(name, **{key: True}), 8)
    assert torch.equal(times, scheduler_sigmas(name, 8, **{key: True})[:-1])
    assert not torch.allclose(times, scheduler_sigmas(name, 8)[:-1])
    assert times[0] <= 1.0 and (times > 0).all() and (times[1:] < times[:-1]).all()


def test_the_plan_grid_hands_the_plan_times_to_the_scheduler():
    """grid='plan': a learned (here explicit) grid is sampled on; UniPC then equals flow-unipc on it."""
    grid = [1.0, 0.7, 0.45, 0.2, 0.06, 0.0]
    times = evaluation_times(DiffusersScheduler(EULER, grid="plan"), time_grid=grid)
    torch.testing.assert_close(times, torch.tensor(grid[:-1], dtype=torch.float64), rtol=0, atol=1e-7)  # float32
    compare_grid = torch.tensor(grid, dtype=torch.float32).to(torch.float64)
    compare_grid[0] = 1.0 - 1e-6  # UniPC nudges a first sigma of 1 below it (log alpha/sigma must be finite)
    x, a, b = noise(torch.float64), SwirlBackbone(), SwirlBackbone()
    got = solverbench.sample(a, DiffusersScheduler(UNIPC, grid="plan"), x, time_grid=grid)
    want = solverbench.sample(b, "flow-unipc", x, time_grid=compare_grid.to(torch.float32).to(torch.float64),
                              partial=True)
    assert a.times == b.times
    torch.testing.assert_close(got.samples, want.samples, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="the plan must end at t = 0"):
        solverbench.sample(SwirlBackbone(), DiffusersScheduler(EULER, grid="plan"), noise(), time_grid=[1.0, 0.5],
                           partial=True)


def test_flux_dynamic_shifting_on_the_plan_grid_is_the_flux_pipeline_grid():
    """Flux passes sigmas = linspace(1, 1/N, N) (the uniform plan) and mu from the token count; its exponential
    time shift is solverbench's shifted schedule with shift = e^mu."""
    tokens = 4096  # 1024 x 1024
    mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (tokens - 256)
    flux = DiffusersScheduler(EULER, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, mu=mu, grid="plan")
    times = evaluation_times(flux, 8)
    shifted = make_time_grid({"name": "shifted", "shift": math.exp(mu)}, 8)[:-1]
    torch.testing.assert_close(times, shifted, rtol=0, atol=1e-6)
    # the scheduler's own grid (no sigmas passed) ends lower, at the shifted 1/1000
    own = evaluation_times(DiffusersScheduler(EULER, use_dynamic_shifting=True, mu=mu), 8)
    assert own[-1] < times[-1] / 10


def test_params_and_label():
    sd3 = DiffusersScheduler(EULER, shift=3.0)
    assert sd3.params() == {"scheduler": EULER, "shift": 3.0}
    assert sd3.label() == "diffusers(scheduler=FlowMatchEulerDiscreteScheduler, shift=3.0)"
    flux = DiffusersScheduler(EULER, use_dynamic_shifting=True, mu=1.15, grid="plan")
    assert flux.label() == ("diffusers(scheduler=FlowMatchEulerDiscreteScheduler, use_dynamic_shifting=True, "
                            "mu=1.15, grid=plan)")


def test_every_solve_starts_a_fresh_scheduler():
    solver, x = DiffusersScheduler(DPM, solver_order=3), noise()
    first = solverbench.sample(SwirlBackbone(), solver, x, nfe=6).samples
    solverbench.sample(SwirlBackbone(), solver, x, nfe=9)
    assert torch.equal(solverbench.sample(SwirlBackbone(), solver, x, nfe=6).samples, first)


def test_a_budget_flowmatch_heun_cannot_spend_is_refused_when_the_grid_is_read():
    with pytest.raises(GridError, match=r"solvers\[0\]\.nfe.*cannot spend a budget of 6; give 5 or 7"):
        parse_grid({"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "num_samples": 8,
                    "solvers": [{"name": "diffusers", "params": {"scheduler": HEUN}, "nfe": [5, 6]}]})
