"""Flow-DPM: multistep DPM-Solver++ with data prediction (Lu et al. 2022, "DPM-Solver++").

In the flow parametrisation ``alpha_t = 1 - t``, ``sigma_t = t``, the data prediction is
``x0_hat = x - t v`` and the log-SNR ``lambda_t = log(alpha_t / sigma_t)`` runs from -inf
(t = 1) to +inf (t = 0).  With ``h = lambda_t - lambda_s`` and ``m_i`` the data predictions
at the previous grid points (``m_0`` at s, the newest), one step from s to t is

    x_t = (sigma_t / sigma_s) x_s + alpha_t (phi_1 D_0 + phi_2 D_1 + phi_3 D_2)

    phi_1 = 1 - e^{-h},  phi_{k+1} = 1/k! - phi_k / h        (phi_k ~ h / k!)

- order 1 (DDIM): ``D_0 = m_0``; with ``e^{-h} = (alpha_s sigma_t) / (sigma_s alpha_t)``
  it is exactly Euler's step ``x_s - (s - t) v_s`` and stays finite at s = 1 and t = 0;
- order 2 (2M, the paper's Algorithm 2): ``x_t = (sigma_t/sigma_s) x_s + alpha_t phi_1 (D_0 + D_1 / 2)``
  with ``r_0 = h_0 / h``, ``D_1 = (m_0 - m_1) / r_0``;
- order 3 (3M): ``D_1 = D1_0 + r_0 / (r_0 + r_1) (D1_0 - D1_1)``, ``D_2 = 2 (D1_0 - D1_1) / (r_0 + r_1)``
  with ``D1_0 = (m_0 - m_1) / r_0``, ``D1_1 = (m_1 - m_2) / r_1``, so that ``D_1 ~ h x0_hat'`` and
  ``D_2 ~ h^2 x0_hat''`` (derivatives in lambda), the quantities phi_2 and phi_3 weigh.

The 3M update published in the authors' code and in diffusers computes ``D_2`` without
the factor 2: half the second difference that phi_3 needs, so it is exact only for
x0_hat linear in lambda; its local error is O(h^3) and its global order 2, like 2M's.
``compat="diffusers"`` selects that published update (declared order 2, and matched to
diffusers' ``DPMSolverMultistepScheduler`` in the parity tests); the default is the
third-order update (declared order 3, checked by the convergence tests).

The first steps warm up with lower orders (a point at t = 1, lambda = -inf, is never a
history point: no polynomial in lambda passes through it).  On a grid that ends at t = 0,
as diffusers' ``lower_order_final``, the step to t = 0 is first order (lambda_0 = +inf),
i.e. an Euler step, and on grids of fewer than 15 intervals the step before it is at most
second order.  A grid ending at some t_end > 0 has no special final step.  One NFE per
interval; t = 0 is never evaluated.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from solverbench import register_solver
from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.solver import Solver

LOWER_ORDER_FINAL_BELOW = 15  # diffusers: on shorter grids the step before the last is at most order 2


def alpha(t: float) -> float:
    return 1.0 - t


def sigma(t: float) -> float:
    return t


def log_snr(t: float) -> float:
    """``lambda_t = log(alpha_t / sigma_t)``: -inf at t = 1, +inf at t = 0 (a 0-d tensor stays one, so a
    time that carries a gradient passes it on)."""
    if t >= 1.0:
        return -math.inf
    if t <= 0.0:
        return math.inf
    ratio = alpha(t) / sigma(t)
    return torch.log(ratio) if isinstance(ratio, torch.Tensor) else math.log(ratio)


def exp_neg_h(s: float, t: float) -> float:
    """``e^{-h}``, ``h = lambda_t - lambda_s``, as the ratio ``(alpha_s sigma_t) / (sigma_s alpha_t)``.

    Exact (0) when s = 1 or t = 0, where h is infinite.
    """
    return alpha(s) * sigma(t) / (sigma(s) * alpha(t))


def phis(h: float, n: int) -> list[float]:
    """``[phi_1, ..., phi_n]`` with ``phi_1 = 1 - e^{-h}`` and ``phi_{k+1} = 1/k! - phi_k / h``."""
    out = [-(torch.expm1(-h) if isinstance(h, torch.Tensor) else math.expm1(-h))]
    for k in range(1, n):
        out.append(1.0 / math.factorial(k) - out[-1] / h)
    return out


def data_prediction(field: VelocityField, x: torch.Tensor, t: float) -> torch.Tensor:
    """``x0_hat = x - t v(x, t)``: one NFE."""
    return x - t * field(x, t)


@register_solver("flow-dpm")
class FlowDPM(Solver):
    """DPM-Solver++(2M) (``order=2``) or (3M) (``order=3``; ``compat="diffusers"``: the published 3M)."""

    ORDERS = (2, 3)
    COMPAT = (None, "diffusers")
    order = 2
    differentiable_times = True  # the step's coefficients are torch arithmetic on plan.time_values()
    invertible = True  # on the mirrored field: the noise-prediction form backwards (docs/inversion.md)

    def __init__(self, order: int = 2, compat: Optional[str] = None):
        if order not in self.ORDERS or isinstance(order, bool):
            raise ValueError(f"flow-dpm: order must be one of {', '.join(map(str, self.ORDERS))}, got {order!r}")
        if compat not in self.COMPAT:
            raise ValueError(f"flow-dpm: compat must be None or 'diffusers', got {compat!r}")
        self.solver_order = int(order)  # 2M or 3M, as diffusers' solver_order
        self.compat = compat
        self.history_length = self.solver_order
        # the published 3M (compat="diffusers") is second order; see the module docstring
        self.order = 3 if self.solver_order == 3 and compat is None else 2
        self.d2_factor = 1.0 if compat == "diffusers" else 2.0

    def params(self):
        return {"order": self.solver_order, **({"compat": self.compat} if self.compat else {})}

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        ts = plan.time_values()
        n = len(ts) - 1
        history: list[tuple[float, torch.Tensor]] = []  # (lambda_i, m_i) with finite lambda, newest last
        for k in range(n):
            s, t = ts[k], ts[k + 1]
            m = data_prediction(field, x, s)
            if s < 1.0:  # a point at t = 1 (lambda = -inf) is never a history point
                history = (history + [(log_snr(s), m)])[-self.solver_order :]
            x = self.step(x, s, t, m, history, self.max_order(k, n, ts[-1]))
        return x

    def local_step(self, field, history_times, history_states, t_next):
        """One step to ``t_next`` from the exact states at ``history_times`` (oldest first)."""
        times = [float(s) for s in history_times]
        history = [(log_snr(s), data_prediction(field, x, s)) for s, x in zip(times, history_states)]
        max_order = 1 if t_next <= 0.0 else self.solver_order
        return self.step(history_states[-1], times[-1], float(t_next), history[-1][1], history, max_order)

    def max_order(self, k: int, n: int, t_end: float) -> int:
        """The order allowed for step k of n: lowered only near t = 0 (diffusers' lower_order_final)."""
        if t_end > 0.0:
            return self.solver_order
        if k == n - 1:
            return 1
        if k == n - 2 and n < LOWER_ORDER_FINAL_BELOW:
            return 2
        return self.solver_order

    def step(self, x: torch.Tensor, s: float, t: float, m: torch.Tensor, history, max_order: int) -> torch.Tensor:
        """From s to t with ``m`` = x0_hat at s and ``history`` = (lambda_i, m_i) at s and before."""
        order = min(max_order, sum(1 for lambda_i, _ in history if lambda_i > -math.inf))  # t = 1 never counts
        if order <= 1:
            return self.ddim(x, m, s, t)
        if order == 2:
            return self.multistep_2m(x, history[-2:], s, t)
        return self.multistep_3m(x, history[-3:], s, t)

    @staticmethod
    def ddim(x: torch.Tensor, m0: torch.Tensor, s: float, t: float) -> torch.Tensor:
        """First order: ``x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) m_0`` (= Euler)."""
        return (sigma(t) / sigma(s)) * x + alpha(t) * (1.0 - exp_neg_h(s, t)) * m0

    @staticmethod
    def multistep_2m(x: torch.Tensor, history, s: float, t: float) -> torch.Tensor:
        (lambda_s1, m1), (lambda_s0, m0) = history
        h, h_0 = log_snr(t) - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        D0, D1 = m0, (m0 - m1) / r0
        (phi_1,) = phis(h, 1)
        return (sigma(t) / sigma(s)) * x + alpha(t) * phi_1 * (D0 + 0.5 * D1)

    def multistep_3m(self, x: torch.Tensor, history, s: float, t: float) -> torch.Tensor:
        (lambda_s2, m2), (lambda_s1, m1), (lambda_s0, m0) = history
        h, h_0, h_1 = log_snr(t) - lambda_s0, lambda_s0 - lambda_s1, lambda_s1 - lambda_s2
        r0, r1 = h_0 / h, h_1 / h
        D1_0, D1_1 = (m0 - m1) / r0, (m1 - m2) / r1
        D0 = m0
        D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
        D2 = self.d2_factor * (D1_0 - D1_1) / (r0 + r1)  # 2x: third order; 1x: the published 3M
        phi_1, phi_2, phi_3 = phis(h, 3)
        return (sigma(t) / sigma(s)) * x + alpha(t) * (phi_1 * D0 + phi_2 * D1 + phi_3 * D2)
