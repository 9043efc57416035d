"""The gmm backbone's data as diffusion models in closed form (for tests/backbones/test_diffusion.py).

Data ``x0 ~ sum_k pi_k N(mu_k, s_k^2 I)`` (the gmm backbone's mixture, the components of a label);
the diffusion state ``x_s = alpha x0 + sigma eps`` of component k is ``N(alpha mu_k, var_k I)`` with
``var_k = alpha^2 s_k^2 + sigma^2``, and

    E[eps | x_s, k] = sigma / var_k (x_s - alpha mu_k),   E[x0 | x_s, k] = mu_k + alpha s_k^2 / var_k (x_s - alpha mu_k),

weighted by the posterior ``w_k ∝ pi_k N(x_s; alpha mu_k, var_k I)``.  ``VPNetwork`` answers as a network
of a discrete-time VP model does (a timestep in, one prediction out), ``EDMDenoiser`` as EDM's ``D(x; sigma)``.
"""
from __future__ import annotations

import torch

from backbones.gmm import GaussianMixture


def posterior_means(gmm: GaussianMixture, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, y=None):
    """``(E[eps | x_s], E[x0 | x_s])`` in float64; ``alpha``, ``sigma`` of shape (batch,)."""
    x = x.double()
    mu, s2 = gmm.means, gmm.stds**2  # (K, D), (K,)
    alpha, sigma = alpha.double().reshape(-1, 1), sigma.double().reshape(-1, 1)
    var = alpha**2 * s2 + sigma**2  # (B, K)
    sq = (x**2).sum(1, keepdim=True) - 2 * alpha * (x @ mu.T) + alpha**2 * (mu**2).sum(1)
    log_w = -0.5 * sq / var - 0.5 * x.shape[1] * torch.log(var) + gmm._class_mask(y, len(x))
    w = torch.softmax(log_w, dim=1)
    c_eps, c_x0 = sigma / var, alpha * s2 / var  # (B, K)
    e_eps = (w * c_eps).sum(1, keepdim=True) * x - alpha * (w * c_eps) @ mu
    e_x0 = (w * c_x0).sum(1, keepdim=True) * x + (w * (1 - alpha * c_x0)) @ mu
    return e_eps, e_x0


def log_sigma_table(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``log sqrt((1 - alpha_bar_k) / alpha_bar_k)`` per training timestep, as diffusers' schedulers compute it."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).double().log()


class VPNetwork:
    """The exact prediction (``"epsilon"``, ``"sample"`` or ``"v_prediction"``) of a VP model of the gmm's data whose
    timestep k has ``log sigma_k = table[k]`` (``sigma / alpha``), linear in between."""

    def __init__(self, gmm: GaussianMixture, prediction: str, table: torch.Tensor):
        self.gmm, self.prediction, self.table = gmm, prediction, table

    def coefficients(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = timestep.double().floor().clamp(0, len(self.table) - 2)
        w = timestep.double() - k
        k = k.long()
        sigma_ve = torch.exp((1 - w) * self.table[k] + w * self.table[k + 1])
        alpha = 1 / torch.sqrt(1 + sigma_ve**2)
        return alpha, sigma_ve * alpha

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor, class_labels=None) -> torch.Tensor:
        alpha, sigma = self.coefficients(timestep)
        eps, x0 = posterior_means(self.gmm, x, alpha, sigma, class_labels)
        a, s = alpha.reshape(-1, 1), sigma.reshape(-1, 1)
        out = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - s * x0}[self.prediction]
        return out.to(x.dtype)


class EDMDenoiser:
    """EDM's ``D(x; sigma) = E[x0 | x0 + sigma eps = x]`` of the gmm's data."""

    def __init__(self, gmm: GaussianMixture):
        self.gmm = gmm

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, class_labels=None) -> torch.Tensor:
        return posterior_means(self.gmm, x, torch.ones_like(sigma), sigma, class_labels)[1].to(x.dtype)
