"""Guidance conventions other samplers use, each an explicit option checked against its definition,
and with them set, solverbench's Euler and Heun reproduce REPA's and SiT's samplers on random tiny SiTs."""
import runpy
from pathlib import Path

import pandas as pd
import pytest
import torch

import solverbench as sb
from backbones.sit.backbone import SiTBackbone
from solverbench import Guidance, VelocityField
from solverbench.grid import GridError, parse_grid


class Recorder(torch.nn.Module):
    """v = x + y (label added); records (batch size, time) of every call."""

    sample_shape, num_classes, null_label = (4,), 3, 3

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.shape[0], float(t[0])))
        return x + y[:, None].to(x)


@pytest.fixture(scope="module")
def sit():
    return SiTBackbone(size="tiny", resolution=32, random_weights=True, seed=3).double()


# -- each convention against its definition -------------------------------------------------------

@pytest.mark.parametrize("t, project, repa", [(0.4, False, True), (0.55, True, True), (0.7, True, True),
                                              (0.71, False, False)])
def test_the_repa_rule_closes_the_interval(t, project, repa):
    assert Guidance(2.0, (0.4, 0.7)).applies_at(t) is project
    assert Guidance(2.0, (0.4, 0.7), rule="repa").applies_at(t) is repa


def test_the_repa_rule_guides_only_above_scale_one():
    assert Guidance(0.5).on and Guidance(0.5).applies_at(0.5)
    assert not Guidance(0.5, rule="repa").on and not Guidance(1.0, rule="repa").applies_at(0.5)
    assert Guidance(1.5, rule="repa").applies_at(0.5)


def test_the_step_decision_guides_a_step_as_its_start():
    """Heun from t = 0.8 to 0.6 with guidance on (0.7, 1]: the second stage at 0.6 is guided only
    when decided at the step's start."""
    for decision, second_batch in (("evaluation", 2), ("step", 4)):
        backbone = Recorder()
        field = VelocityField(backbone, torch.tensor([0, 1]), Guidance(2.0, (0.7, 1.0), decision=decision))
        plan = sb.make_plan(sb.get_solver("heun"), times=[0.8, 0.6], partial=True)
        sb.get_solver("heun").solve(field, torch.zeros(2, 4, dtype=torch.float64), plan)
        assert backbone.calls == [(4, 0.8), (second_batch, 0.6)]


def test_channels_guides_only_the_first_k_and_keeps_the_conditional_rest():
    field = VelocityField(Recorder(), torch.tensor([0, 2]), Guidance(3.0, channels=3))
    v_c, v_u = torch.randn(2, 4), torch.randn(2, 4)
    out = field.guide(v_c, v_u, 0.5)
    torch.testing.assert_close(out[:, :3], v_u[:, :3] + 3.0 * (v_c - v_u)[:, :3])
    torch.testing.assert_close(out[:, 3:], v_c[:, 3:])


def test_channels_reproduce_sits_forward_with_cfg(sit):
    """SiT's forward_with_cfg: eps, rest = out[:, :3], out[:, 3:]; guided eps; rest of the
    conditional half (stated from its definition, on the velocity, which is linear in the output)."""
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    y = torch.tensor([5, 9])
    t = torch.full((2,), 0.6, dtype=torch.float64)
    cond, uncond = sit(x, t, y), sit(x, t, torch.full_like(y, 1000))
    expected = torch.cat([uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]), cond[:, 3:]], dim=1)
    got = VelocityField(sit, y, Guidance(4.0, channels=3))(x, 0.6)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert (VelocityField(sit, y, Guidance(4.0))(x, 0.6) - got).abs().max() > 1e-3  # it matters


def test_the_single_anchor_ba_step_decision_guides_every_node_as_its_anchor():
    """With guidance on (0.75, 1] and the interval [1, 0.5]: per evaluation, nodes inside the
    interval but below 0.75 go unguided; per step, all follow the anchor at t = 1 (guided)."""
    backbone = Recorder()
    labels = torch.tensor([0, 1])
    x = torch.randn(2, 4, dtype=torch.float64)
    solver = sb.get_solver("ba-single", sidenet="off")
    solver.prepare(backbone)
    out = {}
    for decision in ("evaluation", "step"):
        field = VelocityField(backbone, labels, Guidance(2.0, (0.75, 1.0), decision=decision))
        out[decision] = solver.solve(field, x, sb.make_plan(solver, times=[1.0, 0.5], partial=True))
    v_c = x + labels[:, None]
    v_u = x + 3
    guided = v_u + 2.0 * (v_c - v_u)
    torch.testing.assert_close(out["step"], x - 0.5 * guided)  # sidenet off: every node keeps the anchor's v
    assert not torch.allclose(out["evaluation"], out["step"])


# -- REPA's sampler, reproduced --------------------------------------------------------------------

def repa_euler_sampler(model, latents, y, num_steps, heun, cfg_scale, low, high):
    """REPA's samplers.euler_sampler (sihyun-yu/REPA), restated: float64 state on
    linspace(1, 0, N + 1); guidance where cfg > 1 and low <= t_cur <= high, decided once per step;
    Heun's correction on every step but the last."""
    steps = torch.linspace(1, 0, num_steps + 1, dtype=torch.float64)
    x = latents.to(torch.float64)
    null = torch.full_like(y, 1000)

    def velocity(x_in, t_eval, guided):
        if not guided:
            return model(x_in, torch.full((len(x_in),), float(t_eval), dtype=torch.float64), y)
        both = model(torch.cat([x_in, x_in]), torch.full((2 * len(x_in),), float(t_eval), dtype=torch.float64),
                     torch.cat([y, null]))
        cond, uncond = both.chunk(2)
        return uncond + cfg_scale * (cond - uncond)

    for i, (t_cur, t_next) in enumerate(zip(steps[:-1], steps[1:])):
        guided = cfg_scale > 1.0 and low <= t_cur <= high
        d_cur = velocity(x, t_cur, guided)
        x_next = x + (t_next - t_cur) * d_cur
        if heun and i < num_steps - 1:
            d_prime = velocity(x_next, t_next, guided)
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


REPA = dict(rule="repa", decision="step")


@pytest.mark.parametrize("solver, nfe, heun", [("euler", 10, False), ("heun", 19, True)])
@pytest.mark.parametrize("cfg, interval", [(1.8, (0.0, 0.7)), (4.0, (0.4, 0.7))])
def test_euler_and_heun_equal_repas_sampler_with_its_conventions(sit, solver, nfe, heun, cfg, interval):
    g = torch.Generator().manual_seed(0)
    noise, y = torch.randn(3, 4, 4, 4, generator=g, dtype=torch.float64), torch.tensor([1, 500, 999])
    ours = sb.sample(sit, solver, noise, y, nfe=nfe, guidance=Guidance(cfg, interval, **REPA)).samples
    theirs = repa_euler_sampler(sit, noise, y, 10, heun, cfg, *interval)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver, nfe, heun, cfg, interval, option", [
    ("euler", 10, False, 4.0, (0.4, 0.7), "rule"),  # a grid point falls on t_lo = 0.4
    ("heun", 19, True, 1.8, (0.0, 0.7), "decision"),  # Heun's stage at t_next decided from t_cur
])
def test_the_defaults_differ_from_repa_where_the_issue_says(sit, solver, nfe, heun, cfg, interval, option):
    g = torch.Generator().manual_seed(0)
    noise, y = torch.randn(3, 4, 4, 4, generator=g, dtype=torch.float64), torch.tensor([1, 500, 999])
    theirs = repa_euler_sampler(sit, noise, y, 10, heun, cfg, *interval)
    only_other = {**REPA, option: Guidance.__dataclass_fields__[option].default}
    differs = sb.sample(sit, solver, noise, y, nfe=nfe, guidance=Guidance(cfg, interval, **only_other)).samples
    assert (differs - theirs).abs().max() > 1e-3


# -- SiT's sampler, reproduced ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def sit8():
    """A random tiny SiT of the original code base: 8-channel head, v(x, t) = -net(x, 1 - t, y)[:, :4]."""
    return SiTBackbone(size="tiny", resolution=32, random_weights=True, seed=5, convention="sit").double()


def sit_ode_sampler(net, z, y, num_steps, method, cfg_scale):
    """SiT's sample_ddp.py with its ODE sampler (willisma/SiT), restated: torchdiffeq's fixed-grid ``method``
    on s = linspace(0, 1, num_steps + 1) (noise at s = 0, data at 1; Linear path, a velocity model, so the
    drift is the model's output), the model ``forward_with_cfg`` on the doubled batch [z, z] with labels
    [y, null] when cfg > 1: its first 3 output channels guided, uncond + cfg (cond - uncond), at every
    evaluation; the samples are the first half."""
    from torchdiffeq import odeint

    def forward(x, s, labels):  # SiT.forward with learn_sigma: the first 4 of the 8 channels
        return net(x, s, labels)[:, :4]

    def forward_with_cfg(x, s, labels):
        half = x[: len(x) // 2]
        out = forward(torch.cat([half, half]), s, labels)
        eps, rest = out[:, :3], out[:, 3:]
        cond, uncond = torch.split(eps, len(eps) // 2)
        half_eps = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)

    s = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)
    x = torch.cat([z, z])
    labels = torch.cat([y, torch.full_like(y, 1000)])
    drift = lambda s_now, x_now: forward_with_cfg(x_now, torch.full((len(x_now),), float(s_now),  # noqa: E731
                                                                    dtype=torch.float64), labels)
    return odeint(drift, x, s, method=method)[-1].chunk(2)[0]


@pytest.mark.parametrize("solver, nfe, method", [("euler", 6, "euler"), ("heun", 12, "heun2"),
                                                 ("midpoint", 12, "midpoint")])
def test_the_sit_sampler_option_equals_sits_own_sampler(sit8, solver, nfe, method):
    """Heun at an even NFE evaluates at t = 0, where SiT guides and the default rule does not."""
    g = torch.Generator().manual_seed(1)
    noise, y = torch.randn(3, 4, 4, 4, generator=g, dtype=torch.float64), torch.tensor([3, 400, 998])
    theirs = sit_ode_sampler(sit8.net, noise, y, 6, method, 4.0)
    ours = sb.sample(sit8, solver, noise, y, nfe=nfe, guidance=Guidance.like("sit", 4.0)).samples
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    if solver == "heun":
        default = sb.sample(sit8, solver, noise, y, nfe=nfe, guidance=Guidance(4.0, channels=3)).samples
        assert (default - theirs).abs().max() > 1e-3


def test_a_sampler_is_one_option_and_refuses_what_contradicts_it():
    assert Guidance.like("sit", 4.0) == Guidance(4.0, rule="repa", channels=3)
    assert Guidance.like("repa", 1.8, (0.0, 0.7)) == Guidance(1.8, (0.0, 0.7), rule="repa", decision="step")
    gmm64 = {**GMM, "backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}]}
    grid = parse_grid({**gmm64, "guidance": {"scale": 2.0, "sampler": "sit", "channels": 3}})
    assert grid.guidances == (Guidance(2.0, rule="repa", channels=3),)
    with pytest.raises(GridError, match="sampler sit sets rule: repa, channels: 3.*leave out decision: step"):
        parse_grid({**gmm64, "guidance": {"scale": 2.0, "sampler": "sit", "decision": "step"}})
    with pytest.raises(GridError, match="sampler must be one of repa, sit"):
        parse_grid({**GMM, "guidance": {"scale": 2.0, "sampler": "dit"}})


# -- past the end of the path -----------------------------------------------------------------------

# the benchmark's two variants (benchmarks/guided_reference_cost.py): a counting backbone, and guidance stopped
# at the ends of the path (as it was before it went on past them)
COST = runpy.run_path(str(Path(__file__).resolve().parents[2] / "benchmarks" / "guided_reference_cost.py"))
Counting, StoppingAtTheEnd = COST["CountingBackbone"], COST["StoppingAtTheEnd"]


@pytest.mark.parametrize("rule", ["project", "repa"])
def test_guidance_that_reaches_t0_goes_on_past_it_so_the_reference_costs_what_an_unguided_one_does(sit, rule):
    """dopri5 steps past t = 0 and interpolates back: a field that turned unguided there would be
    discontinuous, and the solve would spend its evaluations beyond the end finding the jump (on this
    random tiny SiT at CFG 4: 188 evaluations, 116 of them beyond t = 0, against 38 going on and 32 unguided)."""
    from solverbench.reference import Tolerance, reference_trajectory

    g = torch.Generator().manual_seed(0)
    noise, labels = torch.randn(4, 4, 4, 4, generator=g, dtype=torch.float64), torch.tensor([1, 500, 999, 7])
    counted = {}
    for name, guidance in {"unguided": Guidance(1.0, rule=rule), "stopping": StoppingAtTheEnd(4.0, rule=rule),
                           "going on": Guidance(4.0, rule=rule)}.items():
        backbone = Counting(sit)
        reference_trajectory(VelocityField(backbone, labels, guidance), noise, [1.0, 0.0], Tolerance(1e-6, 1e-6))
        counted[name] = (len(backbone.times), sum(t < 0 for t in backbone.times))
    assert counted == {"unguided": (32, 4), "stopping": (188, 116), "going on": (38, 4)}


def test_past_the_ends_guidance_continues_only_an_interval_that_reaches_the_end():
    for rule in ("project", "repa"):
        assert Guidance(2.0, (0.0, 0.7), rule=rule).applies_at(-0.01)
        assert not Guidance(2.0, (0.2, 0.7), rule=rule).applies_at(-0.01)
        assert Guidance(2.0, (0.2, 1.0), rule=rule).applies_at(1.01)
        assert not Guidance(2.0, (0.2, 0.9), rule=rule).applies_at(1.01)
    assert not Guidance(2.0, (0.0, 0.7)).applies_at(0.0)  # the project rule: t = 0 itself stays unguided
    assert not Guidance(1.0).applies_at(-0.01)  # no scale that guides


# -- in a grid -------------------------------------------------------------------------------------

GMM = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "solvers": ["heun"], "nfe": [4],
       "num_samples": 8, "save_samples": 0}


def test_a_grid_sets_the_conventions_and_rows_and_cells_carry_them(tmp_path):
    from solverbench.engine import run_grid

    grid = parse_grid({**GMM, "guidance": {"scale": 2.0, "interval": [0.2, 0.8], "rule": "repa",
                                           "decision": "step", "channels": 1}})
    assert grid.guidances == (Guidance(2.0, (0.2, 0.8), rule="repa", decision="step", channels=1),)
    rows = run_grid(grid, tmp_path, progress=False).frame
    assert rows["cfg_convention"].tolist() == ["rule=repa; decision=step; channels=1"]
    plain = run_grid(parse_grid({**GMM, "name": "h", "guidance": {"scale": 2.0, "interval": [0.2, 0.8]}}), tmp_path,
                     progress=False).frame
    assert plain["cfg_convention"].isna().all() and plain["cell_id"].tolist() != rows["cell_id"].tolist()


@pytest.mark.parametrize("section, message", [({"scale": 2.0, "rule": "closed"}, "rule must be one of"),
                                              ({"scale": 2.0, "decision": "once"}, "decision must be one of"),
                                              ({"scale": 2.0, "channels": 0}, "channels must be a positive"),
                                              ({"scale": 2.0, "mode": "x"}, "allowed: a mapping with the keys")])
def test_bad_conventions_are_refused_while_reading(section, message):
    with pytest.raises(GridError, match=message):
        parse_grid({**GMM, "guidance": section})


def test_a_scale_per_nfe_budget_gives_each_budget_its_own_guidance(tmp_path):
    """A paper's table: one CFG scale per NFE (BA's Table 5), not every scale at every NFE."""
    from solverbench.engine import run_grid

    grid = parse_grid({**GMM, "solvers": ["euler", {"name": "reference", "params": {"rtol": 1e-4, "atol": 1e-4}}],
                       "nfe": [2, 4], "guidance": {"scale": {2: 3.0, 4: 2.0, "default": 1.5}, "interval": [0, 0.7]}})
    rows = run_grid(grid, tmp_path, progress=False).frame
    scales = {("adaptive" if pd.isna(r.nfe) else int(r.nfe)): r.cfg_scale for r in rows.itertuples()}
    assert scales == {2: 3.0, 4: 2.0, "adaptive": 1.5} and len(rows) == 3
    with pytest.raises(GridError, match="missing: 4"):
        parse_grid({**GMM, "nfe": [2, 4], "guidance": {"scale": {2: 3.0}}})
    with pytest.raises(GridError, match="NFE budgets"):
        parse_grid({**GMM, "guidance": {"scale": {"five": 3.0}}})
