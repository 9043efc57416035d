"""The analytic gmm backbone: exact velocity, data sampler, log-density."""
import math

import pytest
import torch

from backbones.gmm import GaussianMixture


def marginal_log_density(backbone, x, t, y):
    """log p_t(x | y): each component is N((1 - t) mu_k, ((1 - t)^2 s_k^2 + t^2) I)."""
    a = 1 - t
    var = a**2 * backbone.stds**2 + t**2
    sq = ((x[:, None, :] - a * backbone.means) ** 2).sum(-1)
    d = x.shape[1]
    log_n = -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
    return torch.logsumexp(log_n + backbone._class_mask(y, len(x)), dim=1)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.99])
@pytest.mark.parametrize("conditional", [True, False])
def test_velocity_matches_the_score_identity(t, conditional):
    """v = E[eps] - E[x0] with E[eps | x_t] = -t * score and (1 - t) E[x0] + t E[eps] = x_t."""
    b = GaussianMixture("gmm2d")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 2, generator=g, dtype=torch.float64) * 1.5
    y = torch.randint(4, (32,), generator=g) if conditional else None
    x.requires_grad_(True)
    score = torch.autograd.grad(marginal_log_density(b, x, t, y).sum(), x)[0]
    e_eps = -t * score
    e_x0 = (x - t * e_eps) / (1 - t)
    v = b(x.detach(), torch.full((32,), t, dtype=torch.float64), y)
    torch.testing.assert_close(v, (e_eps - e_x0).detach(), rtol=1e-8, atol=1e-8)


def test_null_label_is_the_unconditional_mixture():
    b = GaussianMixture("gmm2d")
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.full((8,), 0.4, dtype=torch.float64)
    torch.testing.assert_close(b(x, t, None), b(x, t, torch.full((8,), b.null_label)))


def test_data_sampler_and_log_prob():
    b = GaussianMixture("gmm2d")
    g = torch.Generator().manual_seed(0)
    labels = torch.full((4000,), 1)
    x0, y = b.sample_data(4000, g, labels=labels)
    assert x0.shape == (4000, 2) and (y == 1).all()
    # samples of class 1 lie near its components, far from the others
    comps = b.means[b.component_class == 1]
    nearest = torch.cdist(x0.double(), comps).min(dim=1).values
    assert nearest.max() < 6 * b.stds.max()
    # log_prob integrates to 1 (grid quadrature over the 2-D plane)
    grid = torch.linspace(-6, 6, 601, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    mass = b.log_prob(pts, torch.full((len(pts),), 1)).exp().sum() * (grid[1] - grid[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-3)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown gmm preset"):
        GaussianMixture("nope")
    with pytest.raises(ValueError, match="std"):
        GaussianMixture(std=(0.5, 0.1))
