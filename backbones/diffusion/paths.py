"""The change of variables between a diffusion model's path and solverbench's straight path.

A diffusion model's state is ``x_s = alpha_s x0 + sigma_s eps``; solverbench's is
``x_t = (1 - t) x0 + t eps``.  Dividing the first by ``alpha_s + sigma_s``,

    x_s / (alpha_s + sigma_s) = (1 - t) x0 + t eps,   t = sigma_s / (alpha_s + sigma_s),

so both paths pass through the same points, a state ``x_t`` being ``x_s / (alpha + sigma)``, and
the velocity ``v = dx_t/dt = eps - x0`` is the model's ``eps_hat - x0_hat`` at ``(x_s, s)``.
The log-SNR ``lambda = log(alpha / sigma) = log((1 - t) / t)`` is the same in both coordinates.

Given t, a VP model (``alpha^2 + sigma^2 = 1``) has ``alpha = (1 - t) / r``, ``sigma = t / r``
with ``r = sqrt((1 - t)^2 + t^2)``, and a VE model (EDM's, ``alpha = 1``) ``sigma = t / (1 - t)``.

The model's output is one of three predictions (diffusers' ``prediction_type``): the noise
``eps`` (``"epsilon"``), the data ``x0`` (``"sample"``) or ``v = alpha eps - sigma x0``
(``"v_prediction"``, VP only); ``x_s = alpha x0 + sigma eps`` gives the other half.
"""
from __future__ import annotations

import torch

PREDICTIONS = ("epsilon", "sample", "v_prediction")


def vp_coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, sigma)`` of a VP model at flow time t: ``((1 - t) / r, t / r)``, ``r = sqrt((1 - t)^2 + t^2)``."""
    r = torch.sqrt((1 - t) ** 2 + t**2)
    return (1 - t) / r, t / r


def ve_coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, sigma)`` of a VE model at flow time t < 1: ``(1, t / (1 - t))``."""
    return torch.ones_like(t), t / (1 - t)


def flow_time(sigma_over_alpha: torch.Tensor) -> torch.Tensor:
    """The flow time of a noise level ``sigma / alpha`` (EDM's sigma): ``t = sigma / (alpha + sigma)``."""
    return sigma_over_alpha / (1 + sigma_over_alpha)


def eps_and_x0(prediction: str, out: torch.Tensor, x_s: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps_hat, x0_hat)`` from the model's ``out`` at ``x_s = alpha x0 + sigma eps``."""
    if prediction == "epsilon":
        return out, (x_s - sigma * out) / alpha
    if prediction == "sample":
        return (x_s - alpha * out) / sigma, out
    if prediction == "v_prediction":  # v = alpha eps - sigma x0 with alpha^2 + sigma^2 = 1
        return sigma * x_s + alpha * out, alpha * x_s - sigma * out
    raise ValueError(f"unknown prediction type {prediction!r}; known: {', '.join(PREDICTIONS)}")


def velocity(x_t: torch.Tensor, t: torch.Tensor, eps_hat: torch.Tensor, x0_hat: torch.Tensor,
             t_range: tuple[float, float]) -> torch.Tensor:
    """``v = eps_hat - x0_hat`` on the model's range ``[t_min, t_max]``; outside it, the velocity of the held
    prediction (``t`` of shape (batch,), broadcast over a sample's dimensions):

    - above ``t_max`` the data prediction is held: ``v = (x_t - x0_hat) / t`` (``x_t = (1 - t) x0 + t eps``
      solved for eps; at t = 1, ``x_t - x0_hat``);
    - below ``t_min`` the noise prediction is held: ``v = (eps_hat - x_t) / (1 - t)`` (solved for x0; at
      t = 0, ``eps_hat - x_t``).

    Both equal ``eps_hat - x0_hat`` at the range's ends, so the velocity is continuous in t.
    """
    t_min, t_max = t_range
    t = t.reshape(-1, *([1] * (x_t.dim() - 1)))
    above, below = t > t_max, t < t_min
    t = t.to(x_t.dtype)
    held_x0 = (x_t - x0_hat) / torch.where(above, t, torch.ones_like(t))  # safe denominators: no inf in
    held_eps = (eps_hat - x_t) / torch.where(below, 1 - t, torch.ones_like(t))  # the branch not taken
    return torch.where(above, held_x0, torch.where(below, held_eps, eps_hat - x0_hat))
