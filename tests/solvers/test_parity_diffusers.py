"""flow-dpm and flow-unipc against diffusers' multistep schedulers.

Same velocity field, same noise and the SAME time grid: the scheduler's sigmas after
``set_timesteps`` (flow sigmas, shift 1, final sigma 0) are handed to our solver as its
explicit grid, and the scheduler's model is evaluated at t = sigma.  Every evaluation
point and the final samples must agree.

Precision:
- UniPCMultistepScheduler computes in the dtype of its sigmas and the sample, so with the
  sigmas upcast to float64 after ``set_timesteps`` (same values) it runs in float64:
  compared to 1e-5 in float64.
- DPMSolverMultistepScheduler casts the sample to float32 inside ``step`` (and keeps its
  sigmas in float32), so it cannot run in float64: compared to 1e-4 in float32.
"""
import pytest
import torch

import solverbench
from swirl_backbone import SwirlBackbone  # tests/solvers/swirl_backbone.py
from solvers.dpm import FlowDPM
from solvers.unipc import FlowUniPC

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

STEP_COUNTS = (5, 8, 12, 16)  # 16: diffusers lowers the order before the last step only below 15


def diffusers_sample(scheduler, backbone, noise, n_steps, float64):
    """Sample with a diffusers scheduler, the model evaluated at t = sigma; returns (x, grid)."""
    scheduler.set_timesteps(n_steps)
    if float64:
        scheduler.sigmas = scheduler.sigmas.to(torch.float64)
    scheduler.set_begin_index(0)
    x = noise.clone()
    for i, timestep in enumerate(scheduler.timesteps):
        sigma = float(scheduler.sigmas[i])
        v = backbone(x, torch.full((len(x),), sigma, dtype=x.dtype))
        x = scheduler.step(v, timestep, x).prev_sample
    return x, scheduler.sigmas.to(torch.float64)


def check_parity(scheduler, solver, n_steps, dtype, atol, final_fallback=False):
    noise = torch.randn(16, 3, generator=torch.Generator().manual_seed(n_steps), dtype=torch.float64).to(dtype)
    theirs, ours = SwirlBackbone(), SwirlBackbone()
    x_ref, grid = diffusers_sample(scheduler, theirs, noise, n_steps, float64=dtype == torch.float64)
    assert len(grid) == n_steps + 1 and grid[-1] == 0 and grid[0] < 1

    result = solverbench.sample(ours, solver, noise, time_grid=grid, partial=True)

    assert result.nfe == n_steps
    assert [t for _, t in ours.inputs] == [t for _, t in theirs.inputs] == grid[:-1].tolist()
    for (x_ours, _), (x_theirs, _) in zip(ours.inputs, theirs.inputs):
        torch.testing.assert_close(x_ours, x_theirs, rtol=0, atol=atol)
    if final_fallback and torch.isnan(x_ref).any():
        # diffusers' UniP-1 step to sigma = 0 adds alpha_t * B(h) * 0 with bh1's B(h) = h = inf,
        # which is NaN; the finite rest of that step is its last data prediction x - sigma v.
        x_ref = scheduler.model_outputs[-1]
    assert result.samples.dtype == dtype
    torch.testing.assert_close(result.samples, x_ref, rtol=0, atol=atol)


@pytest.mark.parametrize("n_steps", STEP_COUNTS)
@pytest.mark.parametrize("order", FlowDPM.ORDERS)
def test_flow_dpm_matches_diffusers(order, n_steps):
    scheduler = diffusers.DPMSolverMultistepScheduler(
        solver_order=order,
        algorithm_type="dpmsolver++",
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=1.0,
        final_sigmas_type="zero",
    )
    # order 3: diffusers' published 3M (second order), our compat="diffusers" variant
    solver = FlowDPM(order=order, compat="diffusers" if order == 3 else None)
    check_parity(scheduler, solver, n_steps, torch.float32, atol=1e-4)


@pytest.mark.parametrize("n_steps", STEP_COUNTS)
@pytest.mark.parametrize("order", FlowUniPC.ORDERS)
@pytest.mark.parametrize("variant", FlowUniPC.VARIANTS)
def test_flow_unipc_matches_diffusers(variant, order, n_steps):
    scheduler = diffusers.UniPCMultistepScheduler(
        solver_order=order,
        solver_type=variant,
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=1.0,
        final_sigmas_type="zero",
    )
    solver = FlowUniPC(variant=variant, order=order)
    check_parity(scheduler, solver, n_steps, torch.float64, atol=1e-5, final_fallback=variant == "bh1")
