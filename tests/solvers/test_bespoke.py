"""The Bespoke solver: the identity is the base solver, training helps, exact NFE, the cache, refusals,
the parametrisation's constraints, and the differentiable field it trains through."""
import json

import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.noise import labels_for, noise_for
from solverbench.reference import Tolerance, reference_trajectory
from solverbench.sampling import sample
from solverbench.solver import NoExactHistoryStep
from solvers.bespoke import solver as bespoke_solver
from solvers.bespoke.cache import BespokeCacheError, cache_key, load_transformation
from solvers.bespoke.settings import TrainingSettings
from solvers.bespoke.solver import BespokeNotPrepared
from solvers.bespoke.steps import transformed_solve
from solvers.bespoke.training import bound_loss, train_transformation
from solvers.bespoke.trajectories import ground_truth
from solvers.bespoke.transform import Layout, Transformation

TINY = dict(trajectories=16, iterations=2, batch_size=8, reference_times=20)  # preparation in a blink


@pytest.fixture(scope="module")
def gmm():
    """8-D, 3 classes, narrow components: trajectories that curve late, as gmm64's do."""
    return GaussianMixture(dim=8, num_classes=3, components_per_class=2, std=(0.05, 0.2), mean_scale=1.0, seed=0)


def prepared(backbone, nfe, guidance=None, context=sb.PrepareContext(progress=False), **params):
    solver = sb.get_solver("bespoke", **{**TINY, **params})
    solver.prepare_for(backbone, nfe, guidance, context)
    return solver


def rms(a, b):
    return (a.double() - b.double()).flatten(1).pow(2).mean(1).sqrt().mean().item()


# -- (a) the identity theta is the base solver ---------------------------------------------------
@pytest.mark.parametrize("base, name, nfe", [("rk1", "euler", 4), ("rk1", "euler", 7), ("rk2", "midpoint", 4),
                                             ("rk2", "midpoint", 5), ("rk2", "midpoint", 10)])
def test_the_identity_transformation_is_the_base_solver_on_the_uniform_grid(gmm, base, name, nfe):
    x = torch.randn(6, 8, dtype=torch.float64)
    labels = torch.arange(6) % 3
    layout = sb.get_solver("bespoke", base=base).layout_for(nfe)
    field = VelocityField(gmm, labels)
    ours = transformed_solve(field, x, Transformation.identity(layout).nodes().floats(), layout)
    theirs = sample(gmm, name, x, labels, nfe=nfe).samples
    assert field.nfe == nfe
    torch.testing.assert_close(ours, theirs, rtol=0.0, atol=1e-12)


# -- (b) training lowers the loss and the error ------------------------------------------------
def test_training_lowers_the_loss_and_the_trajectory_error(gmm):
    settings = TrainingSettings(trajectories=64, iterations=60, batch_size=32, reference_times=50)
    paths = ground_truth(gmm, sb.Guidance(), count=64, seed=0, intervals=50, tolerance=1e-6)
    layout = Layout((1,) * 4)

    transformation = Transformation.identity(layout)
    optimiser = torch.optim.Adam(transformation.parameters(), lr=1e-2)
    index = torch.arange(64)
    losses = []
    for _ in range(5):
        loss = bound_loss(transformation, gmm, sb.Guidance(), paths, index, lipschitz=1.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    trained = train_transformation(gmm, layout, sb.Guidance(), paths, settings)
    assert trained.stats["final_error"] < trained.stats["initial_error"]
    # on evaluation noise (streams training never draws), against the tight reference, at the same NFE
    x, labels = noise_for(0, range(128), (8,)), labels_for(0, range(128), 3)
    reference = reference_trajectory(VelocityField(gmm, labels), x.double(), [1.0, 0.0], Tolerance())[-1]
    learned = transformed_solve(VelocityField(gmm, labels), x, trained.transformation.nodes().floats(), layout)
    euler = sample(gmm, "euler", x, labels, nfe=4).samples
    assert rms(learned, reference) < 0.8 * rms(euler, reference)


def test_the_ground_truth_is_read_between_its_grid_times_to_high_accuracy(gmm):
    paths = ground_truth(gmm, sb.Guidance(), count=8, seed=3, intervals=50, tolerance=1e-9)
    times = [0.913, 0.5, 0.137, 0.031]
    exact = reference_trajectory(VelocityField(gmm, paths.labels), paths.states[0], [1.0] + times, Tolerance())[1:]
    for t, states in zip(times, exact):
        assert rms(paths.at(torch.tensor(t, dtype=torch.float64), torch.arange(8)), states) < 1e-5
    torch.testing.assert_close(paths.at(torch.tensor(0.0, dtype=torch.float64), torch.arange(8)), paths.states[-1])


# -- (c) NFE is the budget --------------------------------------------------------------------
@pytest.mark.parametrize("base", ["rk1", "rk2"])
def test_nfe_equals_the_budget(gmm, base):
    budgets = (4, 5, 6, 10)
    solver = sb.get_solver("bespoke", base=base, **TINY)
    solver.prepare(gmm, sb.PrepareContext(progress=False, uses=tuple((n, sb.Guidance()) for n in budgets)))
    x, labels = torch.randn(5, 8), torch.arange(5) % 3
    for nfe in budgets:
        result = sample(gmm, solver, x, labels, nfe=nfe)
        assert result.nfe == nfe and torch.isfinite(result.samples).all()
    if base == "rk2":
        assert solver.layout_for(5).stages == (2, 2, 1)  # an odd budget ends with a transformed RK1 step


def test_the_parameter_counts_are_the_papers():
    rk1, rk2 = sb.get_solver("bespoke", base="rk1"), sb.get_solver("bespoke", base="rk2")
    assert Transformation(rk1.layout_for(10)).parameter_count() == 4 * 10 - 1
    assert Transformation(rk2.layout_for(20)).parameter_count() == 8 * 10 - 1


# -- (d) the cache ----------------------------------------------------------------------------
def test_the_cache_is_reused_and_a_changed_setting_trains_again(gmm, tmp_path, monkeypatch):
    context = sb.PrepareContext(cache_dir=tmp_path, progress=False)
    first = prepared(gmm, 4, context=context)
    files = list((tmp_path / "bespoke").glob("*.pt"))
    assert len(files) == 1

    trained = []
    real = bespoke_solver.train_transformation
    monkeypatch.setattr(bespoke_solver, "train_transformation", lambda *a, **k: trained.append(1) or real(*a, **k))
    again = prepared(gmm, 4, context=context)
    assert not trained
    held_first, held_again = next(iter(first.held.values())), next(iter(again.held.values()))
    assert held_again.from_cache and held_again.stats == held_first.stats
    assert held_again.nodes == held_first.nodes
    assert again.row_fields()["train_seconds"] == first.row_fields()["train_seconds"]

    prepared(gmm, 4, context=context, lipschitz=2.0)
    prepared(gmm, 4, Guidance(2.0), context=context)
    prepared(gmm, 6, context=context)
    assert len(trained) == 3 and len(list((tmp_path / "bespoke").glob("*.pt"))) == 4


def test_a_corrupt_or_mismatched_cache_file_is_one_line_naming_it_and_trained_again(gmm, tmp_path, capsys):
    context = sb.PrepareContext(cache_dir=tmp_path, progress=False)
    solver = prepared(gmm, 4, context=context)
    other_solver = prepared(gmm, 4, context=context, lipschitz=2.0)
    (held,), (other_held,) = solver.held.values(), other_solver.held.values()
    path, other = held.path, other_held.path

    def moved_aside(**params):
        capsys.readouterr()
        again = next(iter(prepared(gmm, 4, context=context, **params).held.values()))
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("solverbench: warning: cached Bespoke transformation") and "moved it aside" in line
        assert not again.from_cache and next(iter(prepared(gmm, 4, context=context, **params).held.values())).from_cache
        return line, again

    other.write_bytes(path.read_bytes())  # the file of another setting under this setting's name
    line, again = moved_aside(lipschitz=2.0)
    assert str(other) in line and "training.lipschitz: 1.0 != 2.0" in line and again.nodes == other_held.nodes

    path.write_bytes(b"not a torch file")
    line, again = moved_aside()
    assert str(path) in line and again.nodes == held.nodes

    torch.save({"format": "something else"}, path)
    line, _ = moved_aside()
    assert "not a Bespoke transformation" in line
    torch.save({"format": "something else"}, path)
    with pytest.raises(BespokeCacheError, match="not a Bespoke transformation"):  # read directly: refused
        load_transformation(path, cache_key(gmm, solver.base, held.layout, Guidance(), solver.settings), held.layout)


# -- (e) refusals -----------------------------------------------------------------------------
def test_solve_refuses_what_it_was_not_prepared_for(gmm):
    x, labels = torch.randn(3, 8), torch.arange(3)
    with pytest.raises(BespokeNotPrepared, match="holds none: call solver.prepare_for"):
        sample(gmm, sb.get_solver("bespoke"), x, labels, nfe=4)
    solver = prepared(gmm, 4)
    sample(gmm, solver, x, labels, nfe=4)
    with pytest.raises(BespokeNotPrepared, match=r"no transformation for nfe=6 .*it holds nfe=4"):
        sample(gmm, solver, x, labels, nfe=6)
    with pytest.raises(BespokeNotPrepared, match=r"no transformation for nfe=4 cfg=2"):
        sample(gmm, solver, x, labels, nfe=4, cfg_scale=2.0)
    other = GaussianMixture(dim=8, num_classes=3, components_per_class=2, std=(0.05, 0.2), seed=1)
    with pytest.raises(BespokeNotPrepared, match="prepared for other backbones"):
        sample(other, solver, x, labels, nfe=4)
    with pytest.raises(ValueError, match="learns its own times"):
        sample(gmm, solver, x, labels, nfe=4, schedule={"name": "shifted", "shift": 3.0})
    with pytest.raises(NoExactHistoryStep, match="no exact-history step"):
        solver.local_step(VelocityField(gmm, labels), [0.5], [x], 0.25)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="base must be one of rk1, rk2"):
        sb.get_solver("bespoke", base="rk4")
    with pytest.raises(ValueError, match="iterations must be a whole number >= 1"):
        sb.get_solver("bespoke", iterations=0)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        sb.get_solver("bespoke", lr=-1.0)
    assert sb.get_solver("bespoke", base="rk1", lr=0.05).label() == "bespoke(base=rk1, lr=0.05)"


# -- (f) the parametrisation keeps t and s where they belong ---------------------------------------
def test_learned_times_fall_strictly_from_1_to_0_and_scales_stay_positive(gmm):
    solver = prepared(gmm, 6, iterations=20)
    nodes = next(iter(solver.held.values())).nodes
    t, s = torch.tensor(nodes.t), torch.tensor(nodes.s)
    assert t[0] == 1.0 and t[-1] == 0.0 and torch.all(t[1:] < t[:-1])
    assert s[0] == 1.0 and torch.all(s > 0) and all(v < 0 for v in nodes.tdot)

    wild = Transformation(Layout((2, 2, 1)))
    with torch.no_grad():
        for p in wild.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype) * 5)
    nodes = wild.nodes()
    assert nodes.t[0] == 1.0 and nodes.t[-1] == 0.0 and torch.all(nodes.t[1:] < nodes.t[:-1])
    assert nodes.s[0] == 1.0 and torch.all(nodes.s > 0) and torch.all(nodes.tdot < 0)


def test_row_fields_describe_every_theta_held(gmm):
    solver = sb.get_solver("bespoke", base="rk1", **TINY)
    assert solver.row_fields() == {"train_seconds": None, "trainable_params": None}
    solver.prepare(gmm, sb.PrepareContext(progress=False, uses=((4, sb.Guidance()), (6, sb.Guidance()), (None, None))))
    fields = solver.row_fields()
    assert json.loads(fields["bespoke_params_per_budget"]) == {"nfe=4": 15, "nfe=6": 23}
    assert fields["trainable_params"] == 15 + 23 and fields["train_seconds"] > 0
    training = json.loads(fields["bespoke_training"])
    assert set(training) == {"nfe=4", "nfe=6"} and training["nfe=4"]["cached"] is False
    assert set(json.loads(fields["bespoke_final_loss"])) == {"nfe=4", "nfe=6"}
    cell = solver.cell_fields(6, sb.Guidance())  # a cell's row: its own theta
    assert cell["trainable_params"] == 23 and 0 < cell["train_seconds"] < fields["train_seconds"]
    assert solver.cell_fields(5, sb.Guidance()) == {}


# -- (g) the field it trains through ------------------------------------------------------------
@pytest.mark.parametrize("guidance", [Guidance(), Guidance(2.5, (0.2, 0.8)), Guidance(1.5, channels=3),
                                      Guidance(3.0, (0.3, 0.7), decision="step")])
def test_the_differentiable_field_gives_the_sampling_fields_velocity_and_gradients(gmm, guidance):
    x, labels = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
    for t in (0.9, 0.5, 0.25):
        plain = VelocityField(gmm, labels, guidance)
        trained = VelocityField(gmm, labels, guidance, differentiable=True)
        t_grad = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        x_grad = x.clone().requires_grad_(True)
        with plain.at_step(0.6), trained.at_step(0.6):  # the step decision: from the step's start
            v = trained(x_grad, t_grad)
            torch.testing.assert_close(v, plain(x, t), rtol=0.0, atol=0.0)
        v.pow(2).sum().backward()
        assert t_grad.grad is not None and torch.isfinite(t_grad.grad) and x_grad.grad.abs().sum() > 0
