"""SideNet models: v_hat = v at h = 0, zero output before training, the kind from the sample shape."""
import pytest
import torch

from solvers.ba.sidenet import ImageSideNet, MLPSideNet, build_sidenet, sidenet_for, sidenet_kind

ARCH = dict(width=16, depth=2, embed_dim=8, heads=2)


class Shaped:
    """Just the backbone attributes a SideNet is built from."""

    def __init__(self, shape, num_classes=3):
        self.sample_shape, self.num_classes, self.null_label = shape, num_classes, num_classes


def perturbed(sidenet):
    """The SideNet with random last layers (they start at zero), so the output is not trivially 0."""
    for layer in (sidenet.output, sidenet.gates):
        torch.nn.init.normal_(layer.weight)
        torch.nn.init.normal_(layer.bias)
    return sidenet


@pytest.mark.parametrize("shape, kind", [((6,), MLPSideNet), ((2, 8, 8), ImageSideNet)])
def test_kind_follows_the_sample_shape(shape, kind):
    assert isinstance(sidenet_for(Shaped(shape), ARCH), kind)


def test_other_shapes_are_refused_clearly():
    with pytest.raises(ValueError, match=r"no SideNet for samples of shape \(3, 4\)"):
        sidenet_kind((3, 4))


@pytest.mark.parametrize("shape", [(6,), (2, 8, 8)])
def test_output_is_zero_at_h_zero_and_not_elsewhere(shape):
    sidenet = perturbed(sidenet_for(Shaped(shape), ARCH))
    x, v = torch.randn(5, *shape), torch.randn(5, *shape)
    t, y = torch.rand(5), torch.tensor([0, 1, 2, 3, 1])  # 3 is the null label
    h = torch.tensor([0.0, 0.1, 0.0, -0.2, 0.05])
    dv = sidenet(x, v, t, h, y)
    assert dv.shape == x.shape
    assert torch.equal(dv[h == 0], torch.zeros_like(dv[h == 0]))
    assert (dv[h != 0].flatten(1).abs().sum(1) > 0).all()
    assert torch.equal(sidenet.velocity(x, v, t, torch.zeros(5), y), v)


@pytest.mark.parametrize("shape", [(6,), (2, 8, 8)])
@pytest.mark.parametrize("output_head", ["gated", "plain"])
def test_untrained_sidenet_leaves_velocities_unchanged(shape, output_head):
    sidenet = sidenet_for(Shaped(shape, num_classes=None), {**ARCH, "output_head": output_head})
    assert (sidenet.gates is None) == (output_head == "plain")
    x, v = torch.randn(4, *shape), torch.randn(4, *shape)
    assert torch.equal(sidenet.velocity(x, v, torch.rand(4), torch.rand(4) - 0.5), v)


def test_batched_offsets_equal_one_call_per_offset():
    sidenet = perturbed(sidenet_for(Shaped((6,)), ARCH))
    x, v, y = torch.randn(3, 6), torch.randn(3, 6), torch.tensor([0, 3, 2])
    offsets = [0.1, 0.25, -0.05]
    batched = sidenet.velocities_at(x, v, 0.6, offsets, y)
    for h, v_hat in zip(offsets, batched):
        one = sidenet.velocity(x, v, torch.full((3,), 0.6), torch.full((3,), h), y)
        torch.testing.assert_close(v_hat, one)


def test_gated_head_adds_alpha_x_plus_beta_v():
    sidenet = sidenet_for(Shaped((6,)), ARCH)
    sidenet.gates.bias.data = torch.tensor([2.0, -3.0])  # alpha = 2, beta = -3 everywhere
    x, v, h = torch.randn(4, 6), torch.randn(4, 6), torch.full((4,), 0.1)
    torch.testing.assert_close(sidenet(x, v, torch.rand(4), h), 0.1 * (2.0 * x - 3.0 * v))


def test_rebuilt_from_its_spec():
    sidenet = sidenet_for(Shaped((2, 8, 8)), ARCH)
    again = build_sidenet(sidenet.spec)
    assert type(again) is type(sidenet)
    assert again.parameter_count() == sidenet.parameter_count()


def test_image_attention_is_multi_head_softmax_attention_over_positions():
    """The attention block against the formula: per head, softmax(q k^T / sqrt(d)) v over the H x W positions."""
    from solvers.ba.sidenet.conditioning import SharedRows, modulate
    from solvers.ba.sidenet.image import AttentionBlock

    torch.manual_seed(0)
    block = AttentionBlock(channels=8, cond_dim=6, heads=2)
    torch.nn.init.normal_(block.modulation.proj.weight, std=0.3)
    u, c = torch.randn(3, 8, 4, 5), SharedRows.each(torch.randn(3, 6))
    scale, shift = block.modulation(c)
    qkv = block.qkv(modulate(block.norm(u), scale, shift)).flatten(2)  # (b, 3 * 8, 20)
    q, k, v = (z.reshape(3, 2, 4, 20) for z in qkv.chunk(3, dim=1))  # (b, heads, d, positions)
    weights = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / 2.0, dim=-1)  # sqrt(d) = 2
    mixed = torch.einsum("bhij,bhdj->bhdi", weights, v).reshape(3, 8, 4, 5)
    assert torch.allclose(block(u, c), u + block.proj(mixed), atol=1e-5)


def test_distinct_numbers_each_combination_of_keys_from_its_first_sample():
    from solvers.ba.sidenet.conditioning import distinct

    t = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    h = torch.tensor([0.1, 0.1, 0.2, 0.2, 0.1, 0.2])
    y = torch.tensor([3, 1, 3, 3, 3, 1])
    first, index = distinct([t, h, y])
    combos = list(zip(h.tolist(), y.tolist()))
    assert len(first) == len(set(combos)) == 4
    assert [combos[first[j]] for j in index.tolist()] == combos  # each sample alike its combination's first
    assert all(combos.index(combos[i]) == i for i in first.tolist())  # and that is its first sample


@pytest.mark.parametrize("shape, output_head", [((6,), "gated"), ((6,), "poly"), ((2, 8, 8), "gated")])
def test_conditioning_is_computed_once_per_distinct_t_h_y_and_each_sample_as_if_alone(shape, output_head):
    """A step's batch shares one t, a few offsets h and a few labels: the conditioning MLPs see one row per
    distinct (t, h, y), and every sample's output is the one it gets alone."""
    arch = dict(ARCH, output_head=output_head, **({"poly_degree": 2} if output_head == "poly" else {}))
    sidenet = perturbed(sidenet_for(Shaped(shape), arch)).eval()
    seen = []
    sidenet.conditioning.t_mlp.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    n = 12
    x, v, y = torch.randn(n, *shape), torch.randn(n, *shape), torch.tensor([0, 1, 2, 3] * 3)
    with torch.no_grad():
        together = sidenet.velocities_at(x, v, 0.6, [0.1, 0.05], y)
        assert seen == [4 if output_head == "poly" else 8]  # poly: the trunk does not see h
        alone = [sidenet.velocities_at(x[i:i + 1], v[i:i + 1], 0.6, [0.1, 0.05], y[i:i + 1]) for i in range(n)]
    for k in range(2):
        torch.testing.assert_close(together[k], torch.cat([a[k] for a in alone]), rtol=1e-6, atol=1e-6)
