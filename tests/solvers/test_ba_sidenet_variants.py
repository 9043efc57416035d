"""Cheaper SideNets: the polynomial head (one trunk pass per anchor), and the unconditional branch
skipped where guidance is off (backbone and SideNet)."""

import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.field import VelocityField
from solverbench.sampling import sample
from solvers.ba.checkpoint import load_checkpoint, save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.node_velocities import SideNetVelocities
from solvers.ba.sidenet import build_sidenet, sidenet_for
from solvers.ba.training import train_sidenet

POLY = dict(width=16, depth=2, embed_dim=8, heads=2, output_head="poly", poly_degree=3)
GATED = dict(width=16, depth=2, embed_dim=8, heads=2, output_head="gated")


class Shaped:
    def __init__(self, shape, num_classes=3):
        self.sample_shape, self.num_classes, self.null_label = shape, num_classes, num_classes


def randomised(net):
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return net


def counting_trunk(net):
    calls = []
    trunk = net.trunk
    net.trunk = lambda u, c: (calls.append(len(u)), trunk(u, c))[1]
    return calls


# -- the polynomial head ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6,), (2, 8, 8)])
def test_poly_offsets_from_one_trunk_pass_equal_one_call_per_offset(shape):
    net = randomised(sidenet_for(Shaped(shape), POLY))
    x, v, y = torch.randn(3, *shape), torch.randn(3, *shape), torch.tensor([0, 3, 2])
    offsets = [0.1, 0.25, -0.05, 0.4]
    calls = counting_trunk(net)
    batched = net.velocities_at(x, v, 0.6, offsets, y)
    assert calls == [3]  # one pass for four offsets
    for h, v_hat in zip(offsets, batched):
        torch.testing.assert_close(v_hat, net.velocity(x, v, torch.full((3,), 0.6), torch.full((3,), h), y))


def test_poly_is_a_polynomial_in_h_with_no_constant_term():
    net = randomised(sidenet_for(Shaped((6,)), POLY))
    x, v, t = torch.randn(5, 6), torch.randn(5, 6), torch.rand(5)
    assert torch.equal(net(x, v, t, torch.zeros(5)), torch.zeros(5, 6))  # dv(0) = 0 exactly
    hs = torch.tensor([-0.2, 0.1, 0.2, 0.3])
    dv = torch.stack([net(x, v, t, torch.full((5,), float(h))).double() for h in hs])  # (4, 5, 6)
    basis = torch.stack([hs.double() ** p for p in (1, 2, 3)], dim=1)  # h, h^2, h^3: exact through 4 points
    coefficients = torch.linalg.lstsq(basis, dv.reshape(4, -1)).solution
    torch.testing.assert_close(basis @ coefficients, dv.reshape(4, -1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(6,), (2, 8, 8)])
def test_untrained_poly_sidenet_leaves_velocities_unchanged(shape):
    net = sidenet_for(Shaped(shape, num_classes=None), POLY)
    assert net.conditioning.h_mlp is None  # the trunk does not see h
    x, v = torch.randn(4, *shape), torch.randn(4, *shape)
    assert torch.equal(net.velocity(x, v, torch.rand(4), torch.rand(4) - 0.5), v)
    assert all(torch.equal(v_hat, v) for v_hat in net.velocities_at(x, v, 0.5, [0.1, -0.2]))


def test_poly_trains_with_the_chain_trainer_and_its_checkpoint_reloads(tmp_path):
    gmm = GaussianMixture("gmm2d")
    config = SideNetConfig(iterations=3, batch_size=16, chain_length=2, **POLY)
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    assert stats.loss[-1] == stats.loss[-1]  # finite
    assert raw.output.weight.abs().sum() > 0  # it learned something
    path = save_checkpoint(tmp_path / "poly.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(),
                           backbone=gmm)
    loaded = load_checkpoint(path, gmm)
    assert loaded.config.output_head == "poly" and loaded.sidenet.spec["poly_degree"] == 3
    x, v = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(loaded.sidenet.velocities_at(x, v, 0.5, [0.1])[0],
                               ema.velocities_at(x, v, 0.5, [0.1])[0])


# -- settings and cache keys -------------------------------------------------------------------
@pytest.mark.parametrize("settings", [{}, {"output_head": "plain"}, {"architecture": "official"}])
def test_a_network_without_a_poly_head_takes_no_poly_degree(settings):
    assert "poly_degree" not in SideNetConfig.from_settings(settings).network.build_arguments()


def test_poly_settings_are_keyed_and_checked():
    assert SideNetConfig(output_head="poly").as_dict()["output_head"] == "poly"
    assert SideNetConfig(output_head="poly", poly_degree=5).as_dict()["poly_degree"] == 5
    with pytest.raises(ValueError, match="'poly_degree' is for output_head poly"):
        SideNetConfig(poly_degree=5)
    with pytest.raises(ValueError, match="'poly_degree' must be a positive integer"):
        SideNetConfig(output_head="poly", poly_degree=0)
    with pytest.raises(ValueError, match="official architecture has the authors' plain head only"):
        SideNetConfig.from_settings({"architecture": "official", "output_head": "poly"})
    with pytest.raises(ValueError, match="poly_degree must be a positive integer with output_head poly"):
        build_sidenet({"kind": "mlp", "sample_shape": [2], "num_classes": None, "null_label": None,
                       **GATED, "poly_degree": 3})


# -- the unconditional branch only where guidance applies -------------------------------------
class Counting(torch.nn.Module):
    """gmm2d, recording the batch size of every backbone call."""

    def __init__(self):
        super().__init__()
        self.gmm = GaussianMixture("gmm2d")
        self.sample_shape, self.num_classes, self.null_label = self.gmm.sample_shape, 4, self.gmm.null_label
        self.batches = []

    def forward(self, x, t, y=None):
        self.batches.append(len(x))
        return self.gmm(x, t, y)

    def identity(self):
        return self.gmm.identity()


class BothEverywhere(VelocityField):
    """The former rule: every BA anchor evaluates both branches wherever guidance is on."""

    def raw(self, x, t, *, both=False):
        return super().raw(x, t, both=True)


@pytest.fixture(scope="module")
def solvers():
    """BA solvers with a random (non-zero) gated or polynomial SideNet for gmm2d."""
    out = {}
    for head, arch in (("gated", GATED), ("poly", POLY)):
        net = randomised(sidenet_for(GaussianMixture("gmm2d"), arch))
        for p in net.parameters():
            p.data.mul_(0.3)
        solver = sb.get_solver("ba", sidenet="off")
        solver.velocities = SideNetVelocities(net)  # as prepare() sets it
        out[head] = solver
    return out


GRID = torch.linspace(1, 0, 5, dtype=torch.float64)  # t = 1, 0.75, 0.5, 0.25, 0


@pytest.mark.parametrize("head", ["gated", "poly"])
@pytest.mark.parametrize("interval, batches", [
    ((0.0, 1.0), [6, 6, 6, 6]),  # guided everywhere: both branches at every anchor
    ((0.0, 0.4), [3, 3, 6, 6]),
    ((0.0, 0.5), [3, 6, 6, 6]),  # t = 0.75's f_end sits on t_hi = 0.5, which is guided  # t = 0.75 serves nodes down to 0.5 only; t = 0.5 probes down to 0.25
    ((0.6, 1.0), [6, 6, 3, 3]),  # t = 0.75's probe nodes 0.68 and 0.57 and 0.5; t = 0.5 is not guided
    ((0.9, 1.0), [6, 3, 3, 3]),  # t = 0.75: its backward node t = 0.82 is not guided either
])
def test_backbone_evaluates_the_unconditional_half_only_where_guidance_is_used(solvers, head, interval, batches):
    backbone = Counting()
    x, labels = torch.randn(3, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2])
    guidance = sb.Guidance(3.0, interval)
    field = VelocityField(backbone, labels, guidance)
    plan = sb.make_plan(solvers[head], times=GRID)
    out = solvers[head].solve(field, x, plan)
    assert backbone.batches == batches and field.nfe == 4  # one NFE per interval, as before
    before = solvers[head].solve(BothEverywhere(Counting(), labels, guidance), x, plan)
    torch.testing.assert_close(out, before, rtol=1e-6, atol=1e-6)  # the skipped halves were never used


def test_sidenet_runs_the_unconditional_half_only_at_guided_nodes(solvers):
    seen = []
    net = solvers["gated"].velocities.sidenet
    hook = net.register_forward_hook(lambda m, args, out: seen.append(args[4].tolist()))
    try:
        sample(Counting(), solvers["gated"], torch.randn(2, 2), torch.tensor([0, 1]), nfe=4, cfg_scale=3.0,
               cfg_interval=(0.0, 0.6))
    finally:
        hook.remove()
    null = 4
    # first probe from t = 1 (nodes 0.93, 0.82, 0.75): conditional rows only; from t = 0.75: nodes 0.68 (not
    # guided), 0.57 and 0.5 (guided, both branches)
    assert seen[0] == [0, 1] * 3
    assert seen[2] == [0, 1] + [0, 1, null, null] * 2


def test_sidenet_paired_rows_equal_the_doubled_batch():
    net = randomised(sidenet_for(Shaped((2, 8, 8)), GATED))
    x, v_c, v_u = torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    y, null = torch.tensor([0, 1, 2]), torch.full((3,), 3)
    offsets = [0.05, 0.15, 0.2]
    doubled = net.velocities_at(torch.cat([x, x]), torch.cat([v_c, v_u]), 0.7, offsets, torch.cat([y, null]))
    paired = net.cfg_velocities_at(x, v_c, v_u, 0.7, offsets, [False, True, True], y, null)
    assert paired[0][1] is None
    for (c, u), both in zip(paired, doubled):
        torch.testing.assert_close(c, both[:3])
        if u is not None:
            torch.testing.assert_close(u, both[3:])
