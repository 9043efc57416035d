"""The BA samplers: exact NFE, the zero-SideNet reduction, CFG on both branches, preparation."""
import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.field import VelocityField
from solverbench.sampling import sample
from solvers.ba.checkpoint import save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.samplers import SideNetNotPrepared
from solvers.ba.training import train_sidenet

TINY = dict(iterations=2, width=16, depth=1, embed_dim=8, batch_size=16, chain_length=2)


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture("gmm2d")


@pytest.fixture(scope="module")
def checkpoint(gmm, tmp_path_factory):
    """A tiny SideNet for gmm2d whose last layer is made non-zero, so it changes velocities."""
    config = SideNetConfig(**TINY)
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    torch.manual_seed(1)
    for layer in (ema.output, ema.gates):
        torch.nn.init.normal_(layer.weight, std=0.5)
        torch.nn.init.normal_(layer.bias, std=0.5)
    return save_checkpoint(tmp_path_factory.mktemp("sidenet") / "tiny.pt", raw=raw, ema=ema, config=config,
                           stats=stats.as_dict(), backbone=gmm)


def prepared(name, backbone, **params):
    solver = sb.get_solver(name, **params)
    solver.prepare(backbone)
    return solver


VARIANTS = [
    ("ba", {}), ("ba", {"nodes": 0}), ("ba", {"nodes": 1}), ("ba", {"rule": "simpson"}), ("ba", {"a": 0.3}),
    ("ba-single", {}), ("ba-single", {"nodes": 1}), ("ba-single", {"nodes": 5}),
    ("ba", {"sidenet": "off"}), ("ba-single", {"sidenet": False}),
]


@pytest.mark.parametrize("name, params", VARIANTS, ids=str)
@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_nfe_is_the_number_of_intervals(gmm, checkpoint, name, params, cfg_scale):
    if params.get("sidenet", True) not in ("off", False):
        params = {**params, "checkpoint": str(checkpoint)}
    solver = prepared(name, gmm, **params)
    noise, labels = torch.randn(6, 2), torch.arange(6) % 4
    for nfe in range(1, 7):
        # the guidance interval leaves t = 1 out: the anchors there still bring both CFG branches
        result = sample(gmm, solver, noise, labels, nfe=nfe, cfg_scale=cfg_scale, cfg_interval=(0.1, 0.9))
        assert result.nfe == nfe and torch.isfinite(result.samples).all()
        if "sidenet" in params:
            expected_calls = 0
        elif name == "ba-single":
            expected_calls = nfe
        else:  # a forward probe per interval, a backward one on all but the last (none for m = 0)
            expected_calls = nfe + (nfe - 1) * (params.get("nodes", 2) > 0)
        # the solver's own counters: SideNet calls, and their time apart, inside the solve's wall time
        assert set(result.counters) == {"sidenet_calls", "sidenet_time"}
        assert result.counters["sidenet_calls"] == expected_calls
        assert (result.counters["sidenet_time"] > 0) == (expected_calls > 0)
        assert 0 <= result.counters["sidenet_time"] <= result.wall_time


@pytest.mark.parametrize("params", [{}, {"scheme": "single", "nodes": 2}], ids=str)
def test_oracle_spends_one_nfe_per_interval_and_is_labelled_analysis(gmm, params):
    oracle = sb.get_solver("ba-oracle", rtol=1e-6, atol=1e-6, **params)
    assert oracle.analysis_only and "oracle" in oracle.label() and "analysis" in oracle.label()
    result = sample(gmm, oracle, torch.randn(3, 2), torch.arange(3), nfe=3, cfg_scale=2.0)
    assert result.nfe == 3
    assert 0 < result.counters["sidenet_time"] <= result.wall_time  # the exact solves, timed apart like a SideNet


def heun_like_trapezoid(field, x, grid):
    """Euler predictor, one call at the predicted end, trapezoid corrector; v1 reused as next v0."""
    v0 = field(x, float(grid[0]))
    for k in range(len(grid) - 1):
        t, H = float(grid[k]), float(grid[k] - grid[k + 1])
        x_pred = x - H * v0
        if k == len(grid) - 2:
            return x_pred
        v1 = field(x_pred, t - H)
        x = x - H * 0.5 * (v0 + v1)
        v0 = v1
    return x


@pytest.mark.parametrize("params", [{"nodes": 0, "sidenet": "off"}, {"nodes": 0, "checkpoint": "untrained"},
                                    {"nodes": 2, "sidenet": "off"}], ids=str)
def test_zero_sidenet_is_the_heun_like_trapezoid(gmm, tmp_path, params):
    if params.get("checkpoint") == "untrained":  # a SideNet straight from initialisation: zero output
        config = SideNetConfig(**{**TINY, "iterations": 1, "lr": 1e-12})
        raw, ema, stats = train_sidenet(gmm, config, progress=False)
        for layer in (ema.output, ema.gates):
            torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
        params["checkpoint"] = str(save_checkpoint(tmp_path / "zero.pt", raw=raw, ema=ema, config=config,
                                                   stats=stats.as_dict(), backbone=gmm))
    solver = prepared("ba", gmm, **params)
    x, labels = torch.randn(8, 2, dtype=torch.float64), torch.arange(8) % 4
    grid = torch.linspace(1, 0, 6, dtype=torch.float64)
    got = solver.solve(VelocityField(gmm, labels), x, sb.make_plan(solver, times=grid))
    expected = heun_like_trapezoid(VelocityField(gmm, labels), x, grid)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)


class AlwaysGuided(VelocityField):
    """Guidance switched on at every t even at scale 1: the doubled-batch CFG path runs."""

    def guided_at(self, t):
        return True


@pytest.mark.parametrize("name", ["ba", "ba-single"])
def test_cfg_scale_one_equals_the_conditional_only_path(gmm, checkpoint, name):
    solver = prepared(name, gmm, checkpoint=str(checkpoint))
    x, labels = torch.randn(8, 2), torch.arange(8) % 4
    plan = sb.make_plan(solver, times=torch.linspace(1, 0, 5, dtype=torch.float64))
    conditional = solver.solve(VelocityField(gmm, labels), x, plan)
    doubled = solver.solve(AlwaysGuided(gmm, labels, sb.Guidance(1.0)), x, plan)
    torch.testing.assert_close(doubled, conditional, rtol=1e-5, atol=1e-5)
    with_sidenet_off = prepared(name, gmm, sidenet="off").solve(VelocityField(gmm, labels), x, plan)
    assert not torch.allclose(conditional, with_sidenet_off)  # the SideNet did take part


def test_with_cfg_the_sidenet_sees_both_branches_and_guidance_uses_node_times(gmm, checkpoint):
    solver = prepared("ba", gmm, checkpoint=str(checkpoint))
    seen = []
    solver.loaded.sidenet.register_forward_hook(lambda m, args, out: seen.append((args[3].clone(), args[4].clone())))
    labels = torch.tensor([0, 1, 2])
    sample(gmm, solver, torch.randn(3, 2), labels, nfe=2, cfg_scale=3.0)
    h, y = seen[0]  # the first forward probe: offsets a H, (1 - a) H, H for 3 conditional + 3 null rows
    assert y.tolist() == [0, 1, 2, 4, 4, 4] * 3
    torch.testing.assert_close(h.unique(), torch.tensor([0.5 * 0.2763932, 0.5 * 0.7236068, 0.5]), atol=1e-6, rtol=0)


def test_unprepared_solver_says_what_to_do(gmm):
    with pytest.raises(SideNetNotPrepared, match=r"call solver.prepare\(backbone, PrepareContext\(cache_dir=...\)\) first"):
        sample(gmm, "ba", torch.randn(2, 2), torch.arange(2), nfe=4)
    sample(gmm, sb.get_solver("ba", sidenet="off"), torch.randn(2, 2), torch.arange(2), nfe=4)  # needs nothing


def test_prepared_for_one_backbone_refuses_another(gmm, checkpoint):
    solver = prepared("ba", gmm, checkpoint=str(checkpoint))
    other = GaussianMixture("gmm2d", seed=3)
    with pytest.raises(SideNetNotPrepared, match="was prepared for the backbone"):
        sample(other, solver, torch.randn(2, 2), torch.arange(2), nfe=4)


def test_prepare_trains_into_the_cache_once(gmm, tmp_path):
    context = sb.PrepareContext(cache_dir=tmp_path, settings={**TINY, "iterations": 1}, progress=False)
    first = sb.get_solver("ba")
    first.prepare(gmm, context)
    second = sb.get_solver("ba-single", step_rate=50)  # same settings, spelled out: same SideNet
    second.prepare(gmm, context)
    assert first.loaded.path == second.loaded.path and len(list((tmp_path / "sidenet").iterdir())) == 1
    third = sb.get_solver("ba", step_rate=20)
    third.prepare(gmm, context)
    assert third.loaded.path != first.loaded.path and third.loaded.config.step_rate == 20
    assert third.label() == "ba(rule=lobatto, nodes=2, step_rate=20)"


def test_row_fields_log_sidenet_size_and_ratio(gmm, checkpoint, linear_backbone):
    fields = prepared("ba", gmm, checkpoint=str(checkpoint)).row_fields()
    assert fields["sidenet_params"] > 0 and fields["sidenet_param_ratio"] is None  # gmm has no parameters
    assert fields["sidenet_iterations"] == 2 and fields["sidenet_checkpoint"] == str(checkpoint)
    solver = sb.get_solver("ba", sidenet="off")
    solver.prepare(linear_backbone)
    assert solver.row_fields()["sidenet_params"] == 0 and solver.row_fields()["sidenet_param_ratio"] == 0.0


@pytest.mark.parametrize("name, params, error, message", [
    ("ba", {"rule": "gauss"}, ValueError, "rule must be one of lobatto, simpson"),
    ("ba", {"rule": "simpson", "a": 0.3}, ValueError, "either rule"),
    ("ba", {"nodes": 3}, ValueError, "must be 0, 1 or 2"),
    ("ba", {"sidenet": "maybe"}, ValueError, "sidenet must be on or off"),
    ("ba", {"sidenet": "off", "iterations": 10}, ValueError, "sidenet=off takes neither"),
    ("ba", {"checkpoint": "x.pt", "lr": 1e-3}, ValueError, "a checkpoint fixes the SideNet"),
    ("ba", {"chain": 4}, TypeError, "SideNet settings are: width"),
    ("ba", {"iterations": 0}, ValueError, "'iterations' must be a positive integer"),
    ("ba-single", {"nodes": 6}, ValueError, "1 to 5 nodes"),
    ("ba-oracle", {"scheme": "single", "rule": "lobatto"}, ValueError, "Gauss-Legendre nodes"),
])
def test_bad_parameters_are_refused_clearly(name, params, error, message):
    with pytest.raises(error, match=message):
        sb.get_solver(name, **params)


def test_local_step_is_a_mid_run_interval_with_its_corrector(gmm):
    """For the LTE study: from an exact state, predictor and corrector (a one-interval solve
    would stop at the predictor); with the SideNet off and m = 0 that is Heun's step."""
    solver = sb.get_solver("ba", nodes=0, sidenet="off")
    x, labels = torch.randn(5, 2, dtype=torch.float64), torch.arange(5) % 4
    field = VelocityField(gmm, labels)
    got = solver.local_step(field, [0.6], [x], 0.5)
    v0 = field(x, 0.6)
    expected = x - 0.1 * 0.5 * (v0 + field(x - 0.1 * v0, 0.5))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
