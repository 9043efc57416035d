"""``solverbench.sample``: names, instances, plain modules, explicit grids and clear errors."""
import pytest
import torch

import solverbench as sb
from solverbench.timegrid import make_time_grid


def test_sample_with_registered_names():
    result = sb.sample("gmm", "euler", torch.randn(8, 64), torch.arange(8) % 10, nfe=5, cfg_scale=2.0)
    assert result.samples.shape == (8, 64)
    assert result.nfe == 5 and result.counters == {} and result.wall_time > 0  # euler counts nothing else
    assert len(result.plan.times) == 6 and result.plan.stages == (1,) * 5


def test_sample_with_a_plain_module_and_explicit_grid(linear_backbone):
    grid = torch.tensor([1.0, 0.7, 0.3, 0.0])
    result = sb.sample(linear_backbone, sb.get_solver("heun"), torch.randn(3, 4), time_grid=grid)
    assert result.nfe == 6
    torch.testing.assert_close(result.plan.times, grid.double())
    assert result.plan.stages == (2, 2, 2)


def test_a_budget_on_an_explicit_grid_spends_as_the_budget_says(linear_backbone):
    """A grid learned for a budget: Heun's 5 NFE on 3 intervals, the last an Euler one."""
    grid = [1.0, 0.6, 0.25, 0.0]
    result = sb.sample(linear_backbone, "heun", torch.randn(3, 4), nfe=5, time_grid=grid)
    assert result.nfe == 5 and result.plan.stages == (2, 2, 1)
    torch.testing.assert_close(result.plan.times, torch.tensor(grid, dtype=torch.float64))


def test_reference_counts_its_nfe(linear_backbone):
    result = sb.sample(linear_backbone, "reference", torch.randn(3, 4).double())
    assert result.nfe > 6 and result.plan.adaptive and result.plan.nfe is None


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give an NFE budget"),
    ({"nfe": 4, "time_grid": [1.0, 0.0]}, "budget of 4 NFE on 4 interval.*the time grid given with it has 1"),
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


@pytest.mark.parametrize("shift", [0.2, 0.3, 0.4, 0.5, 1.5, 3.0, 7.0])
@pytest.mark.parametrize("n", [5, 10, 15])
def test_a_shifted_grid_runs_from_exactly_one_to_zero(shift, n):
    """SD3's shift maps 0 and 1 to themselves; the division alone lands 1 at 1 - 2e-16 for s = 0.4."""
    grid = make_time_grid({"name": "shifted", "shift": shift}, n)
    assert grid[0].item() == 1.0 and grid[-1].item() == 0.0 and len(grid) == n + 1


def test_unknown_schedule():
    with pytest.raises(ValueError, match="known schedules: karras, logsnr, shifted, uniform"):
        make_time_grid("cosine", 4)


# -- issue 9 (5): the Python API refuses what it cannot mean -------------------------------------


class Conditional(torch.nn.Module):
    """v = -x; three classes and the null label 3."""

    sample_shape, num_classes, null_label = (2,), 3, 3

    def forward(self, x, t, y=None):
        return -x


@pytest.mark.parametrize("grid, where", [
    ([1.0, 0.5], "ends at 0.5, not 0"),
    ([0.9, 0.0], "starts at 0.9, not 1"),
    (torch.tensor([0.9, 0.3]), "starts at 0.9, not 1 and ends at 0.3, not 0"),
])
def test_a_grid_not_from_one_to_zero_needs_partial(linear_backbone, grid, where):
    with pytest.raises(ValueError, match=f"from noise t=1 to data t=0, this one {where}; pass partial=True") as err:
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), time_grid=grid)
    assert "\n" not in str(err.value)
    result = sb.sample(linear_backbone, "euler", torch.randn(2, 4), time_grid=grid, partial=True)
    assert result.nfe == 1 and result.plan.times.tolist() == torch.as_tensor(grid, dtype=torch.float64).tolist()


def test_partial_sampling_continues_where_it_stopped(linear_backbone):
    x = torch.randn(3, 4)
    whole = sb.sample(linear_backbone, "heun", x, time_grid=[1.0, 0.6, 0.3, 0.0]).samples
    half = sb.sample(linear_backbone, "heun", x, time_grid=[1.0, 0.6], partial=True).samples
    rest = sb.sample(linear_backbone, "heun", half, time_grid=[0.6, 0.3, 0.0], partial=True).samples
    torch.testing.assert_close(rest, whole)


def test_partial_needs_an_explicit_grid(linear_backbone):
    with pytest.raises(ValueError, match="partial=True applies to an explicit time_grid"):
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), nfe=3, partial=True)


@pytest.mark.parametrize("grid, error, message", [
    ("1,0", TypeError, "a time grid must be a 1-D sequence of times"),
    ([[1.0], [0.0]], ValueError, r"must be 1-D, got shape \(2, 1\)"),
])
def test_grid_of_the_wrong_kind(linear_backbone, grid, error, message):
    with pytest.raises(error, match=message):
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), time_grid=grid)


@pytest.mark.parametrize("nfe, error, message", [
    (2.5, TypeError, r"nfe must be a whole number of evaluations, got 2\.5 \(float\)"),
    (4.0, TypeError, r"got 4\.0 \(float\)"),
    (True, TypeError, r"got True \(bool\)"),
    ("5", TypeError, r"got '5' \(str\)"),
    (0, ValueError, "must be at least 1, got 0"),
    (-3, ValueError, "must be at least 1, got -3"),
])
def test_nfe_must_be_a_whole_number_at_least_one(linear_backbone, nfe, error, message):
    with pytest.raises(error, match=message):
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), nfe=nfe)


def test_nfe_as_an_integer_scalar_of_numpy_or_torch():
    import numpy as np

    noise = torch.randn(2, 2)
    assert sb.sample(Conditional(), "heun", noise, nfe=np.int64(3)).nfe == 3
    assert sb.sample(Conditional(), "heun", noise, nfe=torch.tensor(3)).nfe == 3


@pytest.mark.parametrize("labels, error, message", [
    (torch.tensor([3.7, 1.0]), TypeError, r"labels must be integer class indices, got float32 labels \(e\.g\. 3\.7\)"),
    ([0.0, 1.0], TypeError, "labels must be integer class indices"),
    (torch.tensor([True, False]), TypeError, "labels must be integer class indices, got bool"),
    (torch.tensor([[0], [1]]), ValueError, r"labels must have shape \(N,\) = \(2,\).*got shape \(2, 1\)"),
    (torch.tensor([0, 1, 2]), ValueError, "3 labels for 2 noise samples"),
    (torch.tensor([0, 4]), ValueError, r"labels must lie in \[0, 3\) or the null label 3 for Conditional, got 4"),
    (torch.tensor([-1, 0]), ValueError, r"must lie in \[0, 3\).*got -1"),
    (["a", "b"], TypeError, "labels must be a tensor or list of 2 integer class indices"),
])
def test_bad_labels(labels, error, message):
    with pytest.raises(error, match=message) as err:
        sb.sample(Conditional(), "euler", torch.randn(2, 2), labels, nfe=2)
    assert "\n" not in str(err.value)


def test_labels_as_a_list_and_the_null_label_are_accepted():
    noise = torch.randn(3, 2)
    as_list = sb.sample(Conditional(), "euler", noise, [0, 2, 3], nfe=2, cfg_scale=2.0)
    as_tensor = sb.sample(Conditional(), "euler", noise, torch.tensor([0, 2, 3]), nfe=2, cfg_scale=2.0)
    torch.testing.assert_close(as_list.samples, as_tensor.samples)


def test_labels_for_an_unconditional_backbone_are_refused(linear_backbone):
    with pytest.raises(ValueError, match=r"LinearBackbone is unconditional \(num_classes is None\): give no labels"):
        sb.sample(linear_backbone, "euler", torch.randn(2, 4), torch.tensor([0, 1]), nfe=2)


@pytest.mark.parametrize("scale, error", [(-3, ValueError), (float("nan"), ValueError), ("2", TypeError),
                                          (True, TypeError)])
def test_cfg_scale_must_be_a_non_negative_number(scale, error):
    with pytest.raises(error, match="cfg_scale must be a number >= 0"):
        sb.sample(Conditional(), "euler", torch.randn(2, 2), [0, 1], nfe=2, cfg_scale=scale)


def test_noise_must_be_a_tensor(linear_backbone):
    with pytest.raises(TypeError, match=r"noise must be a torch\.Tensor of shape \(N, 4\), got list"):
        sb.sample(linear_backbone, "euler", [[0.0] * 4], nfe=2)
