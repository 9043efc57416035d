"""Classifier-free guidance inside (t_lo, t_hi], one doubled batch, one NFE per call; Guidance checked once."""
import pytest
import torch

from solverbench import Guidance, VelocityField


class Recorder(torch.nn.Module):
    """v = x + y (label added), records the batch sizes and labels it was called with."""

    sample_shape = (2,)
    num_classes = 3
    null_label = 3

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.shape[0], None if y is None else y.tolist(), t.tolist()))
        return x + y[:, None].to(x)


def test_guidance_formula_and_doubled_batch():
    backbone = Recorder()
    labels = torch.tensor([0, 2])
    field = VelocityField(backbone, labels, Guidance(3.0, (0.2, 0.8)))
    x = torch.zeros(2, 2)
    v = field(x, 0.5)
    v_c, v_u = labels[:, None].float(), torch.full((2, 1), 3.0)
    torch.testing.assert_close(v, (v_u + 3.0 * (v_c - v_u)).expand(2, 2))
    assert backbone.calls == [(4, [0, 2, 3, 3], [0.5] * 4)]
    assert field.nfe == 1


@pytest.mark.parametrize("t, guided", [(0.2, False), (0.2001, True), (0.8, True), (0.81, False), (1.0, False), (0.0, False)])
def test_interval_is_open_below_closed_above(t, guided):
    backbone = Recorder()
    field = VelocityField(backbone, torch.tensor([1]), Guidance(2.0, (0.2, 0.8)))
    v = field(torch.zeros(1, 2), t)
    assert field.guided_at(t) is guided
    assert backbone.calls[0][0] == (2 if guided else 1)  # the unconditional half runs only when guided
    expected = (3 + 2.0 * (1 - 3)) if guided else 1.0
    torch.testing.assert_close(v, torch.full((1, 2), float(expected)))
    assert field.nfe == 1


def test_scale_one_is_conditional_only():
    backbone = Recorder()
    field = VelocityField(backbone, torch.tensor([2]), Guidance(1.0))
    field(torch.zeros(1, 2), 0.5)
    assert backbone.calls == [(1, [2], [0.5])]


def test_bad_guidance_is_refused():
    with pytest.raises(ValueError, match="cfg_interval"):
        Guidance(2.0, (0.8, 0.2))
    with pytest.raises(ValueError, match="cfg_scale"):
        Guidance(-1.0)
    with pytest.raises(TypeError, match="cfg_scale"):
        Guidance(True)
    with pytest.raises(ValueError, match="needs class labels"):
        VelocityField(Recorder(), None, Guidance(2.0))


def test_guidance_is_a_checked_value_that_says_where_it_applies():
    g = Guidance(2, [0.2, 0.8])
    assert (g.scale, g.interval, g.on) == (2.0, (0.2, 0.8), True)
    assert g == Guidance(2.0, (0.2, 0.8)) and hash(g) == hash(Guidance(2.0, (0.2, 0.8)))
    assert [g.applies_at(t) for t in (0.2, 0.5, 0.8, 0.9)] == [False, True, True, False]
    assert not Guidance(1.0).applies_at(0.5)
