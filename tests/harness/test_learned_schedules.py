"""Learned and optimised time grids (solverbench.schedules: LD3, GITS): each lowers its own objective,
yields a strictly decreasing grid from 1 to 0 with the plan's intervals, is cached and reused, is
refused where it cannot work, and a sweep samples on it at exactly its NFE budget."""
import itertools
import json
import math

import pandas as pd
import pytest
import torch

import solverbench as sb
from solverbench.engine import run_grid
from solverbench.field import VelocityField
from solverbench.grid import GridError, parse_grid
from solverbench.guidance import Guidance
from solverbench.plan import make_plan
from solverbench.schedules import ScheduleProblem, learn_time_grid, learned_schedule
from solverbench.schedules.cache import cache_path
from solverbench.schedules.gits import cheapest_path
from solverbench.schedules.ld3 import grid_of
from solverbench.solver import get_solver


SMALL_LD3 = {"name": "ld3", "samples": 48, "validation": 24, "batch_size": 24, "epochs": 4, "teacher_rtol": 1e-6}
SMALL_GITS = {"name": "gits", "samples": 16, "fine_steps": 40, "teacher_rtol": 1e-6}


@pytest.fixture(scope="module")
def gmm():
    return sb.resolve_backbone("gmm", preset="gmm64")


def problem(gmm, solver, nfe, guidance=Guidance(2.0)):
    return ScheduleProblem(gmm, get_solver(solver), nfe, guidance)


@pytest.mark.parametrize("solver, nfe, intervals, gain", [("euler", 5, 5, 0.9), ("heun", 5, 3, 0.995),
                                                         ("flow-unipc", 7, 7, 0.9)])
def test_ld3_lowers_its_held_out_loss_and_yields_a_grid_of_the_plans_intervals(gmm, solver, nfe, intervals, gain):
    """Eight Adam steps; Heun's 5 NFE (two Heun intervals and an Euler one) leave the grid little to gain."""
    grid = learn_time_grid(gmm, solver, nfe, SMALL_LD3, guidance=Guidance(2.0))
    assert grid.stats["held_out_loss"] < gain * grid.stats["held_out_loss_init"]
    times = grid.times
    assert len(times) == intervals + 1 and times[0] == 1.0 and times[-1] == 0.0
    assert torch.all(times[1:] < times[:-1])
    assert grid.parameters == intervals - 1 and grid.seconds > 0


def test_ld3_grid_lowers_the_trajectory_error_of_held_out_noise(gmm):
    """Fresh evaluation noise (not the training streams): the learned grid beats the uniform one it starts from."""
    grid = learn_time_grid(gmm, "euler", 5, {**SMALL_LD3, "epochs": 8}, guidance=Guidance(2.0))
    noise = torch.randn(256, 64, generator=torch.Generator().manual_seed(123))
    labels = torch.randint(10, (256,), generator=torch.Generator().manual_seed(124))
    exact = VelocityField(gmm, labels, Guidance(2.0))
    from solverbench.reference import Tolerance, reference_trajectory
    target = reference_trajectory(exact, noise.double(), [1.0, 0.0], Tolerance(1e-8, 1e-8))[-1]

    def error(**kw):
        x = sb.sample(gmm, "euler", noise, labels, nfe=5, cfg_scale=2.0, **kw).samples
        return (x.double() - target).flatten(1).norm(dim=1).mean().item()

    assert error(time_grid=grid.times) < 0.9 * error()


def test_gits_path_is_the_cheapest_of_all_paths():
    """The dynamic programme against brute force over every path of a random cost matrix."""
    g = torch.Generator().manual_seed(0)
    m, n = 7, 3
    cost = torch.rand(m + 1, m + 1, generator=g, dtype=torch.float64)
    cost = torch.where(torch.arange(m + 1)[:, None] < torch.arange(m + 1)[None, :], cost, math.inf)
    path, total = cheapest_path(cost, n)
    brute = min(
        (sum(cost[a, b].item() for a, b in zip((0, *inner), (*inner, m))), (0, *inner, m))
        for inner in itertools.combinations(range(1, m), n - 1))
    assert tuple(path) == brute[1] and total == pytest.approx(brute[0])


def test_gits_lowers_its_cost_below_the_uniform_grid_and_is_strictly_decreasing(gmm):
    grid = learn_time_grid(gmm, "euler", 5, SMALL_GITS, guidance=Guidance(2.0))
    times = grid.times
    assert len(times) == 6 and times[0] == 1.0 and times[-1] == 0.0 and torch.all(times[1:] < times[:-1])
    # the uniform 5-interval grid is a path of the 40-step fine grid: its summed cost is higher
    from solverbench.schedules.gits import euler_step_costs
    p = problem(gmm, "euler", 5)
    s = torch.linspace(1.0, 0.0, 41, dtype=torch.float64)
    cost = euler_step_costs(p, p.teacher(0, 16, s, 1e-6).states, s, p.draws(0, 16)[1])
    uniform = sum(cost[i, i + 8].item() for i in range(0, 40, 8))
    assert grid.stats["cost"] < uniform


def test_learned_grids_are_cached_and_reused(gmm, tmp_path, monkeypatch):
    first = learn_time_grid(gmm, "euler", 4, SMALL_GITS, cache_dir=tmp_path)
    path = cache_path(tmp_path, learned_schedule(SMALL_GITS), problem(gmm, "euler", 4, Guidance()))
    assert path.is_file()

    def no_learning(self, problem):
        raise AssertionError("learned again")

    from solverbench.schedules.gits import GITS
    monkeypatch.setattr(GITS, "learn", no_learning)
    again = learn_time_grid(gmm, "euler", 4, SMALL_GITS, cache_dir=tmp_path)
    assert torch.equal(first.times, again.times) and again.seconds == first.seconds
    # gits depends on the solver only through its intervals: midpoint at 8 NFE has euler's 4
    assert torch.equal(learn_time_grid(gmm, "midpoint", 8, SMALL_GITS, cache_dir=tmp_path).times, first.times)
    with pytest.raises(AssertionError, match="learned again"):  # another setting is another grid
        learn_time_grid(gmm, "euler", 4, {**SMALL_GITS, "samples": 8}, cache_dir=tmp_path)


def test_a_torn_cache_file_is_named_moved_aside_and_learned_again(gmm, tmp_path, capsys):
    first = learn_time_grid(gmm, "euler", 3, SMALL_GITS, cache_dir=tmp_path)
    path = cache_path(tmp_path, learned_schedule(SMALL_GITS), problem(gmm, "euler", 3, Guidance()))
    path.write_bytes(b"not a torch file")
    capsys.readouterr()
    again = learn_time_grid(gmm, "euler", 3, SMALL_GITS, cache_dir=tmp_path)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"learned time grid {path} cannot be used" in line and f"moved it aside to {path}.damaged" in line
    assert torch.equal(again.times, first.times) and path.with_name(path.name + ".damaged").is_file()


@pytest.mark.parametrize("solver, params", [("euler", {}), ("heun", {}), ("rk4", {}), ("flow-dpm", {}),
                                            ("flow-dpm", {"order": 3}), ("flow-unipc", {}),
                                            ("flow-unipc", {"variant": "bh1", "order": 3})])
def test_gradients_through_the_solver_to_its_times_match_finite_differences(gmm, solver, params):
    """What LD3 relies on: d(samples)/d(times) by autograd equals central differences (float64 state)."""
    solver = get_solver(solver, **params)
    assert solver.differentiable_times
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 64, generator=g, dtype=torch.float64)
    y = torch.randint(10, (6,), generator=g)
    w = torch.randn(6, 64, generator=g, dtype=torch.float64)
    base = torch.tensor([1.0, 0.8, 0.55, 0.3, 0.12, 0.0], dtype=torch.float64)

    def weighted(times):
        field = VelocityField(gmm, y, Guidance(2.0), differentiable=True)
        return (solver.solve(field, x, make_plan(solver, times=times)) * w).sum()

    times = base.clone().requires_grad_(True)
    weighted(times).backward()
    for k in range(1, 5):
        e = torch.zeros(6, dtype=torch.float64)
        e[k] = 1e-6
        fd = (weighted(base + e) - weighted(base - e)).item() / 2e-6
        assert times.grad[k].item() == pytest.approx(fd, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("solver", ["ba", "ba-single"])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_the_ba_solvers_pass_gradients_to_their_times_and_sample_as_before(gmm, solver, scale):
    """LD3 through BA: autograd through the schemes and the (float32) SideNet agrees with central differences
    to its float32 noise, and a grid that carries gradients samples exactly as the same grid of floats."""
    solver = get_solver(solver, checkpoint="solvers/ba/checkpoints/gmm64.pt")
    solver.prepare(gmm, sb.PrepareContext(progress=False))
    assert solver.differentiable_times
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 64, generator=g, dtype=torch.float64)
    y = torch.randint(10, (6,), generator=g)
    w = torch.randn(6, 64, generator=g, dtype=torch.float64)
    guidance = Guidance(scale, (0.0, 0.7))
    base = torch.tensor([1.0, 0.8, 0.55, 0.3, 0.12, 0.0], dtype=torch.float64)

    def weighted(times, differentiable=True):
        field = VelocityField(gmm, y, guidance, differentiable=differentiable)
        return (solver.solve(field, x, make_plan(solver, times=times)) * w).sum()

    times = base.clone().requires_grad_(True)
    value = weighted(times)
    value.backward()
    assert value.item() == weighted(base, differentiable=False).item()
    fd = []
    for k in range(1, 5):
        e = torch.zeros(6, dtype=torch.float64)
        e[k] = 1e-4
        fd.append((weighted(base + e) - weighted(base - e)).item() / 2e-4)
    scale_of = max(abs(d) for d in fd)  # the SideNet computes in float32: differences carry its rounding
    assert times.grad[1:5].tolist() == pytest.approx(fd, rel=1e-2, abs=1e-2 * scale_of)


def test_a_plain_field_keeps_no_graph(gmm):
    x = torch.randn(3, 64, requires_grad=True)
    assert not VelocityField(gmm)(x, 0.5).requires_grad
    assert VelocityField(gmm, differentiable=True)(x, torch.tensor(0.5, dtype=torch.float64)).requires_grad


def test_ld3_grid_parametrisation_is_strictly_decreasing_from_one_to_zero():
    xi = torch.tensor([3.0, -4.0, 0.5, 10.0, -20.0], dtype=torch.float64)
    t = grid_of(xi)
    assert t[0] == 1.0 and t[-1] == 0.0 and len(t) == 6 and torch.all(t[1:] < t[:-1])


GMM = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}], "nfe": [4],
       "num_samples": 64, "batch_size": 32, "metrics": ["trajectory_error"], "guidance": {"scale": 2.0}}


@pytest.mark.parametrize("grid, message", [
    ({"solvers": [{"name": "ba-oracle", "schedule": {"name": "ld3"}}]},  # its nodes come from a reference solve
     r"solvers\[0\]\.schedule.*does not pass gradients to its time grid"),
    ({"solvers": ["ba-oracle"], "schedule": [{"name": "ld3"}]}, r"schedule.*does not pass gradients"),
    ({"solvers": ["euler"], "schedule": {"name": "ld3", "epoch": 3}}, r"unknown setting\(s\) epoch"),
    ({"solvers": ["euler"], "schedule": {"name": "gits", "samples": -1}}, "must be a number >= 0"),
    ({"solvers": ["euler"], "schedule": {"name": "ld3", "init": "nonsense"}}, "init must be a closed-form"),
    ({"solvers": [{"name": "reference", "schedule": "gits"}]}, "adaptive and takes no time grid"),
])
def test_bad_learned_schedules_are_refused_when_the_grid_is_read(grid, message):
    with pytest.raises(GridError, match=message):
        parse_grid({**GMM, **grid})


def test_a_learned_schedule_by_name_outside_a_grid_says_how_to_learn_it(gmm):
    with pytest.raises(ValueError, match="learned per .*learn_time_grid"):
        sb.sample(gmm, "euler", torch.randn(2, 64), nfe=3, schedule={"name": "gits"})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep of euler on three schedules and heun on gits, at 5 NFE."""
    results = tmp_path_factory.mktemp("results")
    grid = parse_grid({**GMM, "nfe": [5], "solvers": [
        {"name": "euler", "schedule": ["uniform", SMALL_GITS, SMALL_LD3]},
        {"name": "heun", "schedule": [SMALL_GITS]}]})
    run_grid(grid, results, progress=False)
    return results


def test_a_sweep_samples_on_learned_grids_at_its_budget_and_records_their_cost(swept):
    tmp_path = swept
    table = pd.read_parquet(tmp_path / "g" / "results.parquet")
    assert (table["status"] == "ok").all() and len(table) == 4
    assert (table["nfe_measured"] == 5).all()
    learned = table[table["schedule"] != '"uniform"']
    assert learned["schedule_train_seconds"].notna().all() and (learned["schedule_params"] > 0).all()
    heun = learned[learned["solver"] == "heun"].iloc[0]
    assert len(json.loads(heun["schedule_times"])) == 4  # 5 NFE: 3 intervals, the last an Euler one
    assert table.loc[table["schedule"] == '"uniform"', "schedule_train_seconds"].isna().all()
    cached = list((tmp_path / ".cache" / "schedules").rglob("*.pt"))
    assert len(cached) == 3  # gits for 5 and for 3 intervals, ld3 for euler


def test_the_report_ranks_learned_and_uniform_grids_together_beside_their_cost(swept, tmp_path):
    from solverbench.report import write_report

    write_report(swept, tmp_path / "report")
    folder = tmp_path / "report" / "g"
    table = pd.read_csv(folder / "training_cost.csv")
    gits = "gits(fine_steps=40, samples=16, teacher_rtol=1e-06)"  # canonical (sorted) settings
    ld3 = "ld3(batch_size=24, epochs=4, samples=48, teacher_rtol=1e-06, validation=24)"
    assert set(table["solver"]) == {"euler", f"euler @ {gits}", f"euler @ {ld3}", f"heun @ {gits}"}  # one ranking
    assert table.loc[table["solver"] == "euler", "train_seconds"].item() == 0
    assert (table.loc[table["solver"] != "euler", "train_seconds"] > 0).all()
    assert table.loc[table["solver"] == f"euler @ {ld3}", "trainable_params"].item() == 4
    assert (folder / "training_cost.png").stat().st_size > 10_000
    assert f"euler @ {ld3}" in (folder / "table1.md").read_text()


def test_a_solver_entry_can_run_on_some_backbones_only():
    """A SideNet checkpoint fits one backbone: its entry names it (``backbones: [gmm]``)."""
    from solverbench.studies.sweep import cells

    two = {**GMM, "backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}, "digits"],
           "solvers": ["euler", {"name": "heun", "backbones": "digits"}]}
    grid = parse_grid(two)
    assert sorted((c.backbone.name, c.solver.name) for c in cells(grid)) == [
        ("digits", "euler"), ("digits", "heun"), ("gmm", "euler")]
    with pytest.raises(GridError, match=r"solvers\[1\]\.backbones.*the grid's backbones are: digits, gmm"):
        parse_grid({**two, "solvers": ["euler", {"name": "heun", "backbones": ["sit"]}]})
