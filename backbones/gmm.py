"""Analytic backbone: a class-conditional Gaussian mixture with its exact flow-matching velocity.

Data ``x0 ~ sum_k pi_k N(mu_k, s_k^2 I)`` (the components of the requested class; the
null label means the whole mixture).  Along ``x_t = (1 - t) x0 + t eps`` each component
gives ``x_t | k ~ N(a mu_k, var_k I)`` with ``a = 1 - t`` and ``var_k = a^2 s_k^2 + t^2``, and

    E[eps - x0 | x_t, k] = (t - a s_k^2) / var_k * (x_t - a mu_k) - mu_k,

so the exact velocity ``v(x_t, t) = E[eps - x0 | x_t]`` is the posterior-weighted sum of
these with weights ``w_k ∝ pi_k N(x_t; a mu_k, var_k I)``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from solverbench import Backbone, register_backbone

PRESETS: dict[str, dict[str, Any]] = {
    # 2-D, for pictures: 4 classes of 2 tight components each.
    "gmm2d": dict(dim=2, num_classes=4, components_per_class=2, std=(0.04, 0.08), mean_scale=1.5, seed=0),
    # 64-D class-conditional: small component spreads make trajectories curve late (t < 0.2),
    # as an image model's do.  The default of configs/quick.yaml.
    "gmm64": dict(dim=64, num_classes=10, components_per_class=4, std=(0.05, 0.2), mean_scale=1.0, seed=0),
    # Smooth 8-D mixture for convergence-order tests: wide components, so the asymptotic
    # regime of every solver is reached at moderate step counts.
    "gmm-smooth": dict(dim=8, num_classes=3, components_per_class=2, std=(0.5, 0.8), mean_scale=1.0, seed=0),
}
LOG_PROB_ROWS = 128  # samples per block of log_prob's distances (the same numbers as one block, faster)


@register_backbone("gmm")
class GaussianMixture(Backbone):
    """Exact flow-matching velocity of a class-conditional isotropic Gaussian mixture.

    ``std`` is one spread for every component or a range ``(lo, hi)`` from which each
    component's spread is drawn log-uniformly; means are ``mean_scale * N(0, I)``.
    """

    def __init__(
        self,
        preset: Optional[str] = None,
        *,
        dim: Optional[int] = None,
        num_classes: Optional[int] = None,
        components_per_class: Optional[int] = None,
        std: float | Sequence[float] | None = None,
        mean_scale: Optional[float] = None,
        seed: Optional[int] = None,
    ):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown gmm preset {preset!r}; known presets: {', '.join(PRESETS)}")
        config = dict(PRESETS[preset or "gmm64"])
        given = dict(dim=dim, num_classes=num_classes, components_per_class=components_per_class,
                     std=std, mean_scale=mean_scale, seed=seed)
        config.update({k: v for k, v in given.items() if v is not None})
        std_range = (config["std"], config["std"]) if isinstance(config["std"], (int, float)) else tuple(config["std"])
        if len(std_range) != 2 or not 0 < std_range[0] <= std_range[1]:
            raise ValueError(f"std must be a positive number or a range (lo, hi) with 0 < lo <= hi, got {config['std']}")
        for key in ("dim", "num_classes", "components_per_class"):
            if int(config[key]) < 1:
                raise ValueError(f"{key} must be a positive integer, got {config[key]}")
        self.preset = preset
        self.config = {**config, "std": list(std_range)}

        g = torch.Generator().manual_seed(int(config["seed"]))
        n_classes, per_class, d = int(config["num_classes"]), int(config["components_per_class"]), int(config["dim"])
        k = n_classes * per_class
        log_lo, log_hi = math.log(std_range[0]), math.log(std_range[1])
        self.register_buffer("means", float(config["mean_scale"]) * torch.randn(k, d, generator=g, dtype=torch.float64))
        self.register_buffer("stds", torch.exp(log_lo + (log_hi - log_lo) * torch.rand(k, generator=g, dtype=torch.float64)))
        self.register_buffer("component_class", torch.arange(n_classes).repeat_interleave(per_class))

        self.sample_shape = (d,)
        self.num_classes = n_classes
        self.null_label = n_classes

    def identity(self) -> dict[str, Any]:
        return {"class": "gmm", **self.config}

    def _class_mask(self, y: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """(batch, K) log-prior of each component given the label (the null label: all)."""
        if y is None:
            y = torch.full((batch,), self.null_label, dtype=torch.long, device=self.means.device)
        y = y.to(self.means.device).long()
        if torch.any((y < 0) | (y > self.null_label)):
            raise ValueError(f"labels must lie in [0, {self.null_label}] (null label {self.null_label})")
        in_class = (self.component_class[None, :] == y[:, None]) | (y[:, None] == self.null_label)
        counts = in_class.sum(dim=1, keepdim=True)
        return torch.where(in_class, -torch.log(counts.double()), torch.tensor(-math.inf, dtype=torch.float64))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The exact velocity, computed in float64 whatever the input dtype.

        With ``c_k = (t - a s_k^2) / var_k`` the sum is ``(sum_k w_k c_k) x - sum_k w_k (a c_k + 1) mu_k``,
        and ``|x - a mu_k|^2`` is expanded, so no (batch, K, D) tensor is formed.
        """
        x64 = x.double()
        mu, s2 = self.means.to(x64.device), self.stds.to(x64.device) ** 2  # (K, D), (K,)
        t = t.to(x64).reshape(-1, 1)  # (B, 1)
        a = 1 - t
        var = a**2 * s2 + t**2  # (B, K)
        sq = (x64**2).sum(1, keepdim=True) - 2 * a * (x64 @ mu.T) + a**2 * (mu**2).sum(1)  # |x - a mu_k|^2
        d = x.shape[-1]
        log_w = -0.5 * sq / var - 0.5 * d * torch.log(var) + self._class_mask(y, len(x)).to(x64.device)
        w = torch.softmax(log_w, dim=1)  # (B, K)
        c = (t - a * s2) / var  # (B, K)
        v = (w * c).sum(1, keepdim=True) * x64 - (w * (a * c + 1)) @ mu
        return v.to(x.dtype)

    def sample_data(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
        """``n`` draws ``(x0, y)``; labels uniform over classes unless given."""
        if labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=generator)
        labels = labels.long().cpu()
        log_prior = self._class_mask(labels.to(self.means.device), n).cpu()
        component = torch.multinomial(log_prior.exp(), 1, generator=generator).squeeze(1)
        eps = torch.randn(n, self.sample_shape[0], generator=generator, dtype=torch.float64)
        x0 = self.means.cpu()[component] + self.stds.cpu()[component, None] * eps
        return x0.to(self.means.device, torch.float32), labels

    def log_prob(self, x0: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Exact data log-density ``log p(x0 | y)`` (the null label or None: the whole mixture)."""
        x0 = x0.to(self.means)
        var = self.stds**2  # (K,)
        # |x0 - mu_k|^2 by blocks of rows, each (rows, K, D) difference small enough to stay in cache
        sq = torch.cat([((rows[:, None, :] - self.means) ** 2).sum(-1) for rows in x0.split(LOG_PROB_ROWS)])  # (B, K)
        d = x0.shape[-1]
        log_n = -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
        return torch.logsumexp(log_n + self._class_mask(y, len(x0)), dim=1)
