"""``solverbench.sample``: names, instances, plain modules, explicit grids and clear errors."""
import pytest
import torch

import solverbench as sb
from solverbench.timegrid import make_time_grid


def test_sample_with_registered_names():
    result = sb.sample("gmm", "euler", torch.randn(8, 64), torch.arange(8) % 10, nfe=5, cfg_scale=2.0)
    assert result.samples.shape == (8, 64)
    assert result.nfe == 5 and result.sidenet_calls == 0 and result.sidenet_time == 0 and result.wall_time > 0
    assert len(result.time_grid) == 6


def test_sample_with_a_plain_module_and_explicit_grid(linear_backbone):
    grid = torch.tensor([1.0, 0.7, 0.3, 0.0])
    result = sb.sample(linear_backbone, sb.get_solver("heun"), torch.randn(3, 4), time_grid=grid)
    assert result.nfe == 6
    torch.testing.assert_close(result.time_grid, grid.double())


def test_reference_counts_its_nfe(linear_backbone):
    result = sb.sample(linear_backbone, "reference", torch.randn(3, 4).double())
    assert result.nfe > 6 and result.time_grid is None


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give an NFE budget"),
    ({"nfe": 4, "time_grid": [1.0, 0.0]}, "either nfe or time_grid"),
    ({"time_grid": [0.0, 1.0]}, "strictly decreasing"),
    ({"time_grid": [1.5, 0.0]}, r"in \[0, 1\]"),
    ({"nfe": 0}, "at least 1"),
])
def test_bad_requests_fail_clearly(linear_backbone, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), **kwargs)


def test_wrong_noise_shape_and_non_backbone():
    with pytest.raises(ValueError, match="sample shape"):
        sb.sample("gmm", "euler", torch.randn(2, 3), nfe=2)
    with pytest.raises(TypeError, match="not a backbone"):
        sb.sample(torch.nn.Linear(2, 2), "euler", torch.randn(2, 2), nfe=2)


def test_guidance_on_an_unconditional_backbone_is_refused(linear_backbone):
    with pytest.raises(ValueError, match="needs class labels"):
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), nfe=2, cfg_scale=2.0)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="known schedules: shifted, uniform"):
        make_time_grid("cosine", 4)
