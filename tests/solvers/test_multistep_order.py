"""Empirical convergence orders of flow-dpm and flow-unipc, and their end steps.

The field is the exact velocity of a 2-D Gaussian mixture (three components, std 0.7),
written here; with std 0.7 the asymptotic regime is reached from about 45 intervals.
Orders are measured on [0.9, 0.05]: both ends have finite log-SNR lambda.  At t = 0
lambda = +inf and the first-order step to t = 0 adds an O(H^2) error once, capping any
solver at order 2; at t = 1 lambda = -inf and the first step has a low order in t too.
The end steps are tested on their own below.
"""

import numpy as np
import pytest
import torch
from scipy.stats import linregress
from torchdiffeq import odeint

import solverbench
from solvers.dpm import FlowDPM
from solvers.unipc import FlowUniPC

T_START, T_END = 0.9, 0.05
N_INTERVALS = (45, 64, 90, 128, 181, 256, 362)
ERROR_RANGE = (1e-10, 3e-2)  # fit where the error is well above round-off and well below O(1)


class MixtureFlow(torch.nn.Module):
    """``v = (x - E[x0 | x_t]) / t`` for x0 ~ mixture of N(mu_k, s^2 I), x_t = (1 - t) x0 + t eps."""

    sample_shape = (2,)
    num_classes = None
    null_label = None
    means = torch.tensor([[1.5, 0.5], [-1.0, -1.0], [0.0, 1.5]], dtype=torch.float64)
    std = 0.7

    def forward(self, x, t, y=None):
        t = t[:, None, None]
        var = (1 - t) ** 2 * self.std**2 + t**2  # of x_t given the component
        d = x[:, None, :] - (1 - t) * self.means
        weights = torch.softmax(-(d**2).sum(-1, keepdim=True) / (2 * var), dim=1)
        x0_k = self.means + (1 - t) * self.std**2 / var * d
        return (x - (weights * x0_k).sum(1)) / t[:, 0]




@pytest.fixture(scope="module")
def problem():
    backbone = MixtureFlow()
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = torch.tensor([T_START, T_END], dtype=torch.float64)
    exact = odeint(
        lambda t, x: backbone(x, t.expand(len(x))), noise, times, rtol=1e-12, atol=1e-12, method="dopri5"
    )[-1]
    return backbone, noise, exact


def order_grid(n: int, warmup: int) -> torch.Tensor:
    """n equal intervals (about H = (T_START - T_END) / n) after ``warmup`` short ones of H^2.

    A multistep method reaches its order only from accurate starting values; its warm-up
    steps run at lower orders, so they are shortened to keep their one-time errors small.
    """
    H = (T_START - T_END) / n
    warmup_points = torch.tensor([T_START - j * H**2 for j in range(warmup)], dtype=torch.float64)
    return torch.cat([warmup_points, torch.linspace(T_START - warmup * H**2, T_END, n + 1, dtype=torch.float64)])


# Multistep solvers warm up at lower orders: flow-dpm-p over p - 1 steps (the first is first
# order: O(H^2) once, within order 2 but not 3), UniPC-p over p - 1 steps (UniPC-3's first
# step is second order, which would cap its order 4 at 3 for small enough H), so those
# steps are shortened.
CASES = [pytest.param(FlowDPM(order=p), p - 1, id=f"flow-dpm-{p}") for p in FlowDPM.ORDERS] + [
    pytest.param(FlowDPM(order=3, compat="diffusers"), 0, id="flow-dpm-3-diffusers"),
] + [
    pytest.param(FlowUniPC(variant=v, order=p), p - 1, id=f"flow-unipc-{v}-{p}")
    for v in FlowUniPC.VARIANTS
    for p in FlowUniPC.ORDERS
]


@pytest.mark.parametrize("solver, warmup", CASES)
def test_global_order(problem, solver, warmup):
    backbone, noise, exact = problem
    steps, errors = [], []
    for n in N_INTERVALS:
        result = solverbench.sample(backbone, solver, noise, time_grid=order_grid(n, warmup), partial=True)
        error = (result.samples - exact).abs().max().item()
        if ERROR_RANGE[0] < error < ERROR_RANGE[1]:
            steps.append((T_START - T_END) / n)
            errors.append(error)
    assert len(errors) >= 4, f"only {len(errors)} errors in the fit range: {errors}"
    slope = linregress(np.log(steps), np.log(errors)).slope
    assert abs(slope - solver.order) < 0.3, f"{solver.label()}: slope {slope:.2f}, theory {solver.order}"


ALL_SOLVERS = [FlowDPM(order=p) for p in FlowDPM.ORDERS] + [
    FlowUniPC(variant=v, order=p) for v in FlowUniPC.VARIANTS for p in FlowUniPC.ORDERS
]


@pytest.mark.parametrize("t", [1.0, 0.6, 0.05])
@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=str)
def test_single_interval_to_zero_is_euler(solver, t):
    backbone, x = MixtureFlow(), torch.randn(8, 2, dtype=torch.float64)
    v = backbone(x, torch.full((8,), t, dtype=torch.float64))
    result = solverbench.sample(backbone, solver, x, time_grid=[t, 0.0], partial=True)
    assert result.nfe == 1
    torch.testing.assert_close(result.samples, x - t * v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=str)
def test_first_step_from_noise_is_euler(solver):
    """From t = 1 (lambda = -inf) the first step is first order, and finite."""
    backbone, x = MixtureFlow(), torch.randn(8, 2, dtype=torch.float64)
    v = backbone(x, torch.ones(8, dtype=torch.float64))
    result = solverbench.sample(backbone, solver, x, time_grid=[1.0, 0.7], partial=True)
    torch.testing.assert_close(result.samples, x - 0.3 * v, rtol=1e-12, atol=1e-12)


class Recording(MixtureFlow):
    def forward(self, x, t, y=None):
        self.last = (x.clone(), float(t[0]))
        return super().forward(x, t, y)


GRIDS_TO_ZERO = [[1.0, 0.75, 0.5, 0.3, 0.15, 0.0], torch.linspace(0.999, 0.0, 21)]


@pytest.mark.parametrize("grid", GRIDS_TO_ZERO, ids=["5-intervals", "20-intervals"])
@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=str)
def test_last_step_to_zero_is_euler(solver, grid):
    """The step to t = 0 returns x - t v at the last evaluated point (x0_hat there); NFE = intervals."""
    backbone = Recording()
    noise = torch.randn(8, 2, dtype=torch.float64)
    result = solverbench.sample(backbone, solver, noise, time_grid=grid, partial=True)
    x, t = backbone.last
    assert result.nfe == len(grid) - 1 and t > 0
    expected = x - t * MixtureFlow()(x, torch.full((8,), t, dtype=torch.float64))
    torch.testing.assert_close(result.samples, expected, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(result.samples).all()


def test_declared_orders_and_parameters():
    assert [FlowDPM(order=p).order for p in (2, 3)] == [2, 3]
    assert FlowDPM(order=3, compat="diffusers").order == 2  # 3M as published is second order
    assert FlowDPM(order=3).params() == {"order": 3}
    assert FlowDPM(order=3, compat="diffusers").params() == {"order": 3, "compat": "diffusers"}
    with pytest.raises(ValueError, match="compat"):
        FlowDPM(order=3, compat="k-diffusion")
    assert [FlowUniPC(order=p).order for p in (1, 2, 3)] == [2, 3, 4]  # UniC raises p by one
    assert FlowUniPC(variant="bh1", order=3).params() == {"variant": "bh1", "order": 3}
    with pytest.raises(ValueError, match="2, 3"):
        FlowDPM(order=1)
    with pytest.raises(ValueError, match="1, 2, 3"):
        FlowUniPC(order=4)
    with pytest.raises(ValueError, match="bh1, bh2"):
        FlowUniPC(variant="bh3")


# -- local_step: one step from exact history, for the local-truncation-error study ------------


@pytest.mark.parametrize("order", FlowDPM.ORDERS)
def test_dpm_local_step_is_the_step_a_run_takes(order):
    """From the states a run reached, local_step takes the run's next step (away from t = 0)."""
    backbone, solver = MixtureFlow(), FlowDPM(order=order)
    noise = torch.randn(8, 2, dtype=torch.float64)
    grid = [0.9, 0.8, 0.65, 0.5, 0.4]
    states = {t: solverbench.sample(backbone, solver, noise, time_grid=grid[: k + 1], partial=True).samples
              for k, t in enumerate(grid) if k > 0}
    times = grid[-1 - order : -1]
    field = solverbench.VelocityField(backbone)
    x = solver.local_step(field, times, [states[t] for t in times], grid[-1])
    assert field.nfe == order == solver.history_length
    torch.testing.assert_close(x, states[grid[-1]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", [s for s in ALL_SOLVERS if isinstance(s, FlowUniPC)], ids=str)
def test_unipc_local_order(solver):
    """One corrected step from exact history: local error O(H^(order + 1)), UniC included."""
    backbone, t = MixtureFlow(), 0.55
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    steps = [0.05 / 2 ** (k / 2) for k in range(9)]
    history_times = {t + j * H for H in steps for j in range(solver.history_length)}
    times = sorted(history_times | {t - H for H in steps} | {1.0}, reverse=True)
    f = lambda u, x: backbone(x, u.expand(len(x)))  # noqa: E731
    exact = dict(zip(times, odeint(f, noise, torch.tensor(times, dtype=torch.float64), rtol=1e-12, atol=1e-12)))
    errors = []
    for H in steps:
        history = [t + j * H for j in reversed(range(solver.history_length))]
        x = solver.local_step(solverbench.VelocityField(backbone), history, [exact[u] for u in history], t - H)
        errors.append((x - exact[t - H]).abs().max().item())
    fit = [(H, e) for H, e in zip(steps, errors) if ERROR_RANGE[0] < e < ERROR_RANGE[1]]
    assert len(fit) >= 4, errors
    slope = linregress(np.log([H for H, _ in fit]), np.log([e for _, e in fit])).slope
    theory = solver.order + 1
    assert abs(slope - theory) < 0.3, f"{solver.label()}: local slope {slope:.2f}, theory {theory}"
