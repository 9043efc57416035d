"""``sb.invert``: every solver run from data to noise (docs/inversion.md).

What users rely on: the reference solver's inversion followed by generation returns the data; each
solver spends exactly its budget backwards; the direction is right (Euler backwards is the explicit
step up in t); guidance is decided at path times; the mirrored BA scheme is the one docs/inversion.md
writes out; and a solver that cannot invert is refused in one line before any work.
"""
import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.field import VelocityField
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.noise import data_generator
from solvers.ba.quadrature import LOBATTO4
from test_ba_solvers import checkpoint, gmm  # noqa: F401  (fixtures: gmm2d and a tiny non-zero SideNet)


SHIPPED_GMM64 = "solvers/ba/checkpoints/gmm64.pt"


@pytest.fixture(scope="module")
def gmm64():
    return GaussianMixture("gmm64")


def data(backbone, n=16, seed=0):
    labels = torch.arange(n) % backbone.num_classes
    x0, y = backbone.sample_data(n, data_generator(seed, 0), labels=labels)
    return x0.float(), y


def test_the_reference_inversion_followed_by_generation_returns_the_data(gmm64):
    x0, y = data(gmm64)
    reference = sb.get_solver("reference", rtol=1e-9, atol=1e-9)
    for cfg_scale in (1.0, 2.0):
        noise = sb.invert(gmm64, reference, x0, y, cfg_scale=cfg_scale).noise
        back = sb.sample(gmm64, reference, noise, y, cfg_scale=cfg_scale).samples
        assert per_sample_rms(back, x0).max() < 1e-5
        assert 0.7 < noise.std() < 1.3  # it reached noise, not a copy of the data


BUDGETS = [("euler", {}, 5), ("heun", {}, 5), ("heun", {}, 6), ("midpoint", {}, 6), ("rk4", {}, 8),
           ("flow-dpm", {"order": 2}, 5), ("flow-dpm", {"order": 3}, 7), ("flow-unipc", {"order": 2}, 5),
           ("flow-unipc", {"variant": "bh1", "order": 3}, 7), ("ba", {"sidenet": "off"}, 5),
           ("ba", {"checkpoint": SHIPPED_GMM64}, 5), ("ba-single", {"checkpoint": SHIPPED_GMM64}, 7),
           ("ba-oracle", {}, 3), ("ba-oracle", {"scheme": "single"}, 3)]


@pytest.mark.parametrize("name, params, nfe", BUDGETS, ids=str)
def test_each_solver_inverts_on_exactly_its_budget_and_converges_to_the_exact_inversion(gmm64, name, params, nfe):
    solver = sb.get_solver(name, **params)
    solver.prepare(gmm64, sb.PrepareContext())
    x0, y = data(gmm64, n=8)
    result = sb.invert(gmm64, solver, x0, y, nfe=nfe, cfg_scale=1.5)
    assert result.nfe == nfe and result.times[0] == 0 and result.times[-1] == 1
    assert (result.times[1:] > result.times[:-1]).all()
    exact = sb.invert(gmm64, "reference", x0, y, cfg_scale=1.5).noise
    error = per_sample_rms(result.noise, exact).mean()
    finer = per_sample_rms(sb.invert(gmm64, solver, x0, y, nfe=4 * nfe, cfg_scale=1.5).noise, exact).mean()
    assert torch.isfinite(result.noise).all() and finer < 0.6 * error  # more NFE, closer to the exact inversion


def test_euler_backwards_is_the_explicit_step_up_in_t(gmm64):
    x0, y = data(gmm64, n=4)
    field = VelocityField(gmm64, y)
    x, times = x0, [0.0, 0.2, 0.6, 1.0]
    for t, t_next in zip(times, times[1:]):
        x = x + (t_next - t) * field(x, t)
    got = sb.invert(gmm64, "euler", x0, y, time_grid=times)
    torch.testing.assert_close(got.noise, x, rtol=0, atol=1e-6)
    assert got.nfe == 3


def test_a_budget_traverses_the_grid_sampling_makes_backwards(gmm64):
    x0, y = data(gmm64, n=2)
    shift = {"name": "shifted", "shift": 3.0}
    sampled = sb.sample(gmm64, "heun", torch.randn_like(x0), y, nfe=7, schedule=shift)
    inverted = sb.invert(gmm64, "heun", x0, y, nfe=7, schedule=shift)
    torch.testing.assert_close(inverted.times, sampled.plan.times.flip(0), rtol=0, atol=1e-15)
    assert inverted.plan.stages == sampled.plan.stages == (2, 2, 2, 1)  # Heun's last interval: Euler, toward noise


def test_partial_grids_and_bad_grids(gmm64):
    x0, y = data(gmm64, n=2)
    part = sb.invert(gmm64, "rk4", x0, y, time_grid=[0.0, 0.25, 0.5], partial=True)
    whole = sb.invert(gmm64, "rk4", part.noise, y, time_grid=[0.5, 0.75, 1.0], partial=True)
    torch.testing.assert_close(whole.noise, sb.invert(gmm64, "rk4", x0, y, time_grid=[0, .25, .5, .75, 1]).noise)
    with pytest.raises(ValueError, match="strictly increasing .from data t=0 toward noise t=1."):
        sb.invert(gmm64, "euler", x0, y, time_grid=[1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="pass partial=True"):
        sb.invert(gmm64, "euler", x0, y, time_grid=[0.0, 0.5])
    with pytest.raises(ValueError, match="x0 has sample shape"):
        sb.invert(gmm64, "euler", x0[:, :3], y, nfe=2)


def test_guidance_is_decided_at_the_path_time():
    backbone = GaussianMixture("gmm2d")
    mirrored = VelocityField(backbone, torch.tensor([0]), sb.Guidance(2.0, (0.2, 0.5)), mirrored=True)
    for s in (0.9, 0.8, 0.6, 0.5, 0.3):  # path times 0.1, 0.2, 0.4, 0.5, 0.7
        assert mirrored.guided_at(s) == (0.2 < 1 - s <= 0.5)
    forward = VelocityField(backbone, torch.tensor([0]), sb.Guidance(2.0, (0.2, 0.5)))
    x = torch.randn(1, 2)
    torch.testing.assert_close(mirrored(x, 0.6), -forward(x, 0.4))
    assert mirrored.nfe == 1 and mirrored.unmirrored().nfe == 0  # the SideNet's path-time view spends no NFE


def mirrored_bi_anchor(field, sidenet, rule, x, times):
    """docs/inversion.md's mirrored BA scheme, written from the page: anchor on the data side, forward probe
    at offsets -aH, -(1-a)H, -H (toward noise), refinement from the terminal at +aH, x <- x + H (...)."""
    a = rule.interior[0]
    (w0, w1, w2, w3), y = rule.weights, field.labels
    v0 = field(x, times[0])
    for k, (t, t_up) in enumerate(zip(times, times[1:])):
        H = t_up - t
        f_a, f_b, f_end = sidenet.velocities_at(x, v0, t, [-a * H, -(1 - a) * H, -H], y)
        x_pred = x + H * (w0 * v0 + w1 * f_a + w2 * f_b + w3 * f_end)
        if k == len(times) - 2:
            return x_pred
        v1 = field(x_pred, t_up)
        (g_b,) = sidenet.velocities_at(x_pred, v1, t_up, [a * H], y)
        x, v0 = x + H * (w0 * v0 + w1 * f_a + w2 * g_b + w3 * v1), v1


def test_ba_backwards_is_the_mirrored_scheme_docs_write_out(gmm, checkpoint):  # noqa: F811
    solver = sb.get_solver("ba", checkpoint=str(checkpoint))
    solver.prepare(gmm)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    y = torch.arange(6) % gmm.num_classes
    times = [0.0, 0.3, 0.55, 1.0]
    expected = mirrored_bi_anchor(VelocityField(gmm, y), solver.loaded.sidenet, LOBATTO4, x0, times)
    got = sb.invert(gmm, solver, x0, y, time_grid=times)
    torch.testing.assert_close(got.noise, expected, rtol=1e-5, atol=1e-6)
    assert got.nfe == 3 and got.counters["sidenet_calls"] > 0
    off = sb.invert(gmm, sb.get_solver("ba", sidenet="off"), x0, y, time_grid=times).noise
    assert (got.noise - off).abs().max() > 1e-3  # the SideNet does change the inversion


def test_solvers_that_cannot_invert_are_refused_in_one_line(gmm64):
    x0, y = data(gmm64, n=2)
    refusals = {
        sb.get_solver("diffusers", scheduler="FlowMatchEulerDiscreteScheduler"): "a diffusers scheduler samples",
        sb.get_solver("bespoke"): "learned on trajectories from noise to data",
    }

    class OnlyForward(sb.Solver):
        registered_name = "only-forward"

        def solve(self, field, x, plan):
            raise AssertionError("refused before any work")

    refusals[OnlyForward()] = r"does not declare that it inverts \(Solver.invertible\)"
    for solver, reason in refusals.items():
        with pytest.raises(sb.NotInvertible, match=rf"^{solver.registered_name}.* cannot invert: .*{reason}") as err:
            sb.invert(gmm64, solver, x0, y, nfe=4)
        assert "\n" not in str(err.value)
