"""The noise schedules of diffusion models, as functions of solverbench's flow time t.

A schedule covers the flow times ``t_range = (t_min, t_max)`` of the noise levels its model was
trained on, and gives at such a t the model's coefficients ``(alpha, sigma)`` and its time
input (``model_time``): a discrete-time VP model's fractional timestep, or EDM's sigma.
"""
from __future__ import annotations

import hashlib
import math

import torch

from backbones.diffusion.paths import flow_time, ve_coefficients, vp_coefficients


class VPSchedule:
    """A discrete-time VP schedule: diffusers' ``alphas_cumprod`` over the training timesteps 0..T-1.

    Timestep k has the noise level ``sigma_k = sqrt((1 - alpha_bar_k) / alpha_bar_k)`` (``sigma / alpha``,
    computed as diffusers' schedulers compute it, in the table's dtype), increasing with k.  A flow time t
    has the level ``t / (1 - t)``, and its timestep is found by linear interpolation of ``log sigma_k`` over
    k, as diffusers' ``_sigma_to_t`` finds it: diffusers' own grid points get their own timesteps.  The range
    is ``[t(sigma_0), t(sigma_{T-1})]``, with ``t(s) = s / (1 + s)``.
    """

    kind = "vp"

    def __init__(self, alphas_cumprod: torch.Tensor):
        alpha_bar = torch.as_tensor(alphas_cumprod)
        if alpha_bar.dim() != 1 or len(alpha_bar) < 2:
            raise ValueError(f"a VP schedule needs alpha_bar at two timesteps or more, got shape {tuple(alpha_bar.shape)}")
        if not bool(((alpha_bar > 0) & (alpha_bar < 1)).all()):
            raise ValueError("a VP schedule needs 0 < alpha_bar < 1 at every timestep (a zero terminal SNR, "
                             f"alpha_bar = 0, has no noise level), got {alpha_bar.min().item()} ... {alpha_bar.max().item()}")
        sigmas = ((1 - alpha_bar) / alpha_bar) ** 0.5
        self.log_sigmas = sigmas.double().log()
        if not bool((self.log_sigmas[1:] > self.log_sigmas[:-1]).all()):
            raise ValueError("a VP schedule's noise level must grow with the timestep (alpha_bar decreasing)")
        self.alphas_cumprod = alpha_bar
        self.t_range = (float(flow_time(sigmas[0].double())), float(flow_time(sigmas[-1].double())))
        self._on_device: dict[torch.device, torch.Tensor] = {}

    @staticmethod
    def coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vp_coefficients(t)

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The fractional timestep of flow times t (float64): ``k + w`` with ``log sigma`` between ``log sigma_k``
        and ``log sigma_{k+1}`` at fraction w, clipped to ``[0, T - 1]``."""
        log_sigmas = self._table(t.device)
        log_sigma = torch.log(t / (1 - t))
        low = (torch.searchsorted(log_sigmas, log_sigma.detach().contiguous(), right=True) - 1).clamp(0, len(log_sigmas) - 2)
        lo, hi = log_sigmas[low], log_sigmas[low + 1]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return low.to(w.dtype) + w

    def _table(self, device: torch.device) -> torch.Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.log_sigmas.to(device)
        return self._on_device[device]

    def identity(self) -> dict:
        digest = hashlib.sha256(self.alphas_cumprod.detach().cpu().numpy().tobytes()).hexdigest()[:16]
        return {"kind": self.kind, "timesteps": len(self.alphas_cumprod), "alphas_cumprod_sha256": digest}


class EDMSchedule:
    """EDM's VE schedule (``alpha = 1``): a denoiser ``D(x; sigma)`` trained for ``sigma_min <= sigma <= sigma_max``;
    its time input is ``sigma = t / (1 - t)``, and its range ``[t(sigma_min), t(sigma_max)]`` (EDM's 80: 80/81)."""

    kind = "ve"

    def __init__(self, sigma_min: float, sigma_max: float):
        if not (isinstance(sigma_min, (int, float)) and isinstance(sigma_max, (int, float))
                and 0 < sigma_min < sigma_max < math.inf):
            raise ValueError(f"an EDM denoiser needs 0 < sigma_min < sigma_max (finite), got {sigma_min!r} and {sigma_max!r}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_range = (self.sigma_min / (1 + self.sigma_min), self.sigma_max / (1 + self.sigma_max))

    @staticmethod
    def coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ve_coefficients(t)

    @staticmethod
    def model_time(t: torch.Tensor) -> torch.Tensor:
        return t / (1 - t)

    def identity(self) -> dict:
        return {"kind": self.kind, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}
