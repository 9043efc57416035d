"""Flow-UniPC: multistep UniPC with data prediction (Zhao et al. 2023, "UniPC").

Same flow parametrisation as Flow-DPM (``alpha_t = 1 - t``, ``sigma_t = t``,
``lambda_t = log(alpha_t / sigma_t)``, ``x0_hat = x - t v``).  Both halves are one update
from s to t, with ``h = lambda_t - lambda_s``, ``m_s`` the data prediction at s and nodes
``(lambda_k, m_k)`` at ``r_k = (lambda_k - lambda_s) / h``:

    x_t = (sigma_t / sigma_s) x_s + alpha_t phi_1 m_s + alpha_t B(h) sum_k rho_k D_k,
    D_k = (m_k - m_s) / r_k,     sum_k rho_k r_k^(i-1) = i! phi_{i+1} / B(h),  i = 1..K,

with ``phi_1 = 1 - e^{-h}``, ``phi_{k+1} = 1/k! - phi_k / h`` and ``B(h) = h`` (bh1) or
``1 - e^{-h}`` (bh2) (the paper's B(h) at -h, as data prediction needs, sign-flipped).
A single node takes ``rho = 1/2``, the simplified coefficient of the reference code.

- UniP-p (predictor): nodes are the p - 1 previous points; order p.
- UniC-p (corrector): once the next point's model output ``m_t`` is known (it is the
  next step's evaluation, so the corrector costs no NFE), redo the step from s with the
  same nodes plus ``(lambda_t, m_t)`` at r = 1; order p + 1.  ``m_t`` is not re-evaluated
  at the corrected point.

UniPC-p therefore has order p + 1, the ``order`` this solver declares.  The warm-up steps
use lower p (a point at t = 1, lambda = -inf, is never a node); on a grid that ends at
t = 0 the order of step k is at most the number of steps left (diffusers'
``lower_order_final``), so the step to t = 0 is UniP-1, i.e. ``x_0 = m_s``, the Euler step
from the point where ``m_s`` was evaluated (as in diffusers, the corrector's change at s
drops out, its coefficient sigma_0 / sigma_s being 0).  No corrector follows the final
step and t = 0 is never evaluated: NFE = number of intervals.  A grid ending at some
t_end > 0 keeps full order to its end.  On a step from t = 1 (h = inf) bh2 corrects with
``B = 1``, ``x_t = t x_1 + (1 - t) (m_1 + m_t) / 2`` (second order in t), while bh1's
``B(h) = h`` is infinite there, so bh1 leaves that step uncorrected.

Embedded error estimate (``stepper``): every corrected step's UniP-p prediction minus its UniC-p
correction, O(h^(p+1)); the final step to t = 0 and bh1's step from t = 1 make none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from solverbench import register_solver
from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.solver import Solver, Stepper, error_estimate
from solvers.dpm import alpha, data_prediction, exp_neg_h, log_snr, phis, sigma

Node = tuple[float, torch.Tensor]  # (lambda_k, m_k)


@register_solver("flow-unipc")
class FlowUniPC(Solver):
    """UniPC-p with data prediction; ``order`` (p) is the predictor's, the solver's is p + 1."""

    VARIANTS = ("bh1", "bh2")
    ORDERS = (1, 2, 3)
    order = 3
    differentiable_times = True  # the coefficients (rho included) are torch arithmetic on plan.time_values()
    invertible = True  # on the mirrored field: the noise-prediction form backwards (docs/inversion.md)
    embedded_error = True  # UniP-p minus UniC-p of every corrected step (UniPCStepper)

    def __init__(self, variant: str = "bh2", order: int = 2):
        if variant not in self.VARIANTS:
            raise ValueError(f"flow-unipc: variant must be one of {', '.join(self.VARIANTS)}, got {variant!r}")
        if order not in self.ORDERS or isinstance(order, bool):
            raise ValueError(f"flow-unipc: order must be one of {', '.join(map(str, self.ORDERS))}, got {order!r}")
        self.variant = variant
        self.p = int(order)  # UniPC-p
        self.order = self.p + 1  # UniC raises the predictor's order p by one
        self.history_length = self.p

    def params(self):
        return {"variant": self.variant, "order": self.p}

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        ts = plan.time_values()
        n = len(ts) - 1
        history: list[Node] = []  # the last p - 1 data predictions with finite lambda, newest last
        last = None  # the predictor step that led to x: (x_s, s, m_s, nodes)
        for k in range(n):
            s, t = ts[k], ts[k + 1]
            m = data_prediction(field, x, s)
            if last is not None:
                x_s, s_prev, m_prev, nodes = last
                if self.corrects_from(s_prev):
                    x = self.update(x_s, s_prev, s, m_prev, nodes, m_t=m)  # UniC, reusing m
            p = min(self.p, len(history) + 1, self.max_order(k, n, ts[-1]))
            nodes = history[len(history) - (p - 1) :]
            last = (x, s, m, nodes)
            x = self.update(x, s, t, m, nodes)  # UniP
            if s < 1.0:  # a point at t = 1 (lambda = -inf) is never a node
                history = (history + [(log_snr(s), m)])[-(self.p - 1) :] if self.p > 1 else []
        return x

    def stepper(self, field: VelocityField, x: torch.Tensor, t: float) -> "UniPCStepper":
        """The solve a step at a time (``UniPCStepper``), its data prediction at ``(x, t)`` evaluated (one NFE)."""
        return UniPCStepper(self, field, x, float(t), data_prediction(field, x, float(t)), ())

    def local_step(self, field, history_times, history_states, t_next):
        """One step to ``t_next`` from exact states (oldest first), corrected as a run corrects it.

        The state a run carries on from ``t_next`` is the UniC-corrected one; the evaluation
        at the predicted point that the corrector needs is the next step's NFE in a run.
        """
        times, t_next = [float(s) for s in history_times], float(t_next)
        s, x = times[-1], history_states[-1]
        m = data_prediction(field, x, s)
        history = [(log_snr(u), data_prediction(field, x_u, u)) for u, x_u in zip(times[:-1], history_states[:-1])]
        history = [node for node in history if node[0] > -math.inf]  # a point at t = 1 is never a node
        p = 1 if t_next <= 0.0 else min(self.p, len(history) + 1)
        nodes = history[len(history) - (p - 1) :]
        x_t = self.update(x, s, t_next, m, nodes)  # UniP
        if t_next <= 0.0 or not self.corrects_from(s):
            return x_t
        return self.update(x, s, t_next, m, nodes, m_t=data_prediction(field, x_t, t_next))  # UniC

    def max_order(self, k: int, n: int, t_end: float) -> int:
        """p allowed for step k of n: near t = 0 at most the steps left (diffusers' lower_order_final)."""
        return self.p if t_end > 0.0 else min(self.p, n - k)

    def corrects_from(self, s: float) -> bool:
        """bh1's B(h) = h is infinite on a step from t = 1, so that step stays uncorrected."""
        return s < 1.0 or self.variant == "bh2"

    def update(
        self,
        x_s: torch.Tensor,
        s: float,
        t: float,
        m_s: torch.Tensor,
        nodes: list[Node],
        m_t: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """UniP from s to t on ``nodes``; given ``m_t``, UniC: the same nodes plus ``(lambda_t, m_t)`` at r = 1."""
        lambda_s = log_snr(s)
        h = log_snr(t) - lambda_s
        phi_1 = 1.0 - exp_neg_h(s, t)
        x_t = (sigma(t) / sigma(s)) * x_s + alpha(t) * phi_1 * m_s
        rks = [(lambda_k - lambda_s) / h for lambda_k, _ in nodes]
        ms = [m_k for _, m_k in nodes]
        if m_t is not None:
            rks, ms = rks + [1.0], ms + [m_t]
        if not rks:
            return x_t
        B_h = h if self.variant == "bh1" else phi_1
        rho = self.rho(rks, h, B_h)
        return x_t + alpha(t) * B_h * sum(rho_k / r_k * (m_k - m_s) for rho_k, r_k, m_k in zip(rho, rks, ms))

    @staticmethod
    def rho(rks: list[float], h: float, B_h: float) -> list[float]:
        """Solve ``sum_k rho_k r_k^(i-1) = i! phi_{i+1} / B(h)``, i = 1..K (K = 1: rho = 1/2)."""
        K = len(rks)
        if K == 1:
            return [0.5]
        phi = phis(h, K + 1)
        if any(isinstance(v, torch.Tensor) for v in (*rks, h, B_h)):  # times that carry gradients
            R = torch.stack([torch.stack([torch.as_tensor(r, dtype=torch.float64) ** i for r in rks])
                             for i in range(K)])
            b = torch.stack([torch.as_tensor(math.factorial(i) * phi[i] / B_h, dtype=torch.float64)
                             for i in range(1, K + 1)])
            return list(torch.linalg.solve(R, b).unbind())
        R = torch.tensor([[r**i for r in rks] for i in range(K)], dtype=torch.float64)
        b = torch.tensor([math.factorial(i) * phi[i] / B_h for i in range(1, K + 1)], dtype=torch.float64)
        return torch.linalg.solve(R, b).tolist()


@dataclass(frozen=True)
class UniPCStepper(Stepper):
    """UniPC standing at ``(x, t)``: ``m`` the data prediction there (evaluated at the predicted state, as a run
    evaluates it), ``history`` the earlier nodes.  A step is UniP-p to ``t_next``, then, except on the final
    step, the evaluation there (the next step's NFE) and UniC-p; the order is capped by the steps left as on a
    grid that ends at t = 0 (``left`` None: not known, more than one).  Walked along a fixed grid it gives
    ``FlowUniPC.solve``'s samples."""

    solver: FlowUniPC
    field: VelocityField
    x: torch.Tensor
    t: float
    m: Optional[torch.Tensor]
    history: tuple[Node, ...]

    @property
    def order(self) -> int:
        """UniP-p errs by O(h^(p+1)), UniC-p by O(h^(p+2)): their difference is O(h^(p+1))."""
        return self.solver.p + 1

    def step(self, t_next: float, left: Optional[int] = None) -> tuple["UniPCStepper", Optional[torch.Tensor]]:
        if self.m is None:
            raise ValueError("the UniPC stepper took its final step; it steps no further")
        solver, s, t_next = self.solver, self.t, float(t_next)
        final = left == 1 or t_next <= 0.0  # the step to t = 0 is the data prediction: nothing to correct
        cap = 1 if final else solver.p if left is None else min(solver.p, left)
        p = min(solver.p, len(self.history) + 1, cap)
        nodes = list(self.history[len(self.history) - (p - 1):])
        predicted = solver.update(self.x, s, t_next, self.m, nodes)  # UniP
        history = self.history
        if s < 1.0:  # a point at t = 1 (lambda = -inf) is never a node
            history = (history + ((log_snr(s), self.m),))[-(solver.p - 1):] if solver.p > 1 else ()
        if final:
            return UniPCStepper(solver, self.field, predicted, t_next, None, history), None
        m_next = data_prediction(self.field, predicted, t_next)
        if not solver.corrects_from(s):
            return UniPCStepper(solver, self.field, predicted, t_next, m_next, history), None
        corrected = solver.update(self.x, s, t_next, self.m, nodes, m_t=m_next)  # UniC, reusing m_next
        estimate = error_estimate(predicted, corrected)
        return UniPCStepper(solver, self.field, corrected, t_next, m_next, history), estimate
