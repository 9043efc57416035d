"""The oracle (exact node velocities): the quadrature's local order shows, 7 for 4-point Lobatto."""
import numpy as np
import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.field import VelocityField



def local_errors(oracle, steps, t0=0.9):
    """Max error of two oracle intervals of size H from the exact state at ``t0`` (the first
    interval predicts and corrects, the last only predicts), on the smooth 8-D mixture, whose
    asymptotic regime these H reach; the reference is a float64 solve at 1e-13."""
    backbone = GaussianMixture("gmm-smooth")
    generator = torch.Generator().manual_seed(0)
    x1, labels = torch.randn(8, 8, generator=generator, dtype=torch.float64), torch.arange(8) % 3
    reference = sb.get_solver("reference", rtol=1e-13, atol=1e-13)
    errors = []
    for H in steps:
        times = torch.tensor([1.0, t0, t0 - H, t0 - 2 * H], dtype=torch.float64)
        exact = reference.trajectory(VelocityField(backbone, labels), x1, times)
        got = sb.sample(backbone, oracle, exact[1], labels, time_grid=times[1:], partial=True).samples
        errors.append((got - exact[3]).abs().max().item())
    return errors


@pytest.mark.parametrize("params, local_order", [({}, 7), ({"scheme": "single", "nodes": 3}, 7),
                                                 ({"rule": "simpson"}, 5)], ids=str)
def test_oracle_local_order(params, local_order):
    oracle = sb.get_solver("ba-oracle", rtol=1e-13, atol=1e-13, **params)
    steps = [0.2, 0.1, 0.05]
    errors = local_errors(oracle, steps)
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope > local_order - 0.5, (errors, slope)  # 4-point Lobatto: local order >= 6.5
    assert oracle.order == local_order - 1
