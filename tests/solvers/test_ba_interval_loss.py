"""``solve_loss: endpoints``: per interval, the error of the state the bi-anchor scheme builds from the SideNet's
answers: the answers are the ones that state uses, weighted as it weighs them; the residual is the scheme's own
(through ``bi_anchor_interval`` on a last interval); it trains."""
import pytest
import torch

from backbones.gmm import GaussianMixture
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solvers.ba.config import SideNetConfig
from solvers.ba.interval_loss import (DrawnIntervals, SolveIntervals, endpoint_loss, endpoint_residuals,
                                      interval_terms)
from solvers.ba.node_velocities import NodeVelocities, OracleVelocities
from solvers.ba.quadrature import LOBATTO_A, LOBATTO4, gauss_legendre
from solvers.ba.questions import (SolveBank, exact_trajectories, interval_table, question_loss, question_table,
                                  solve_grid, solve_grid_questions)
from solvers.ba.schemes import bi_anchor_interval
from solvers.ba.training import train_sidenet
from test_ba_questions import ExactCorrection, held_out

TINY = dict(width=16, depth=1, embed_dim=8, batch_size=16)


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)


class Wobble(torch.nn.Module):
    """A stand-in SideNet, neither exact nor zero: ``S = h sin(x + t) + 0.3 h^2 v``."""

    def forward(self, x, v, t, h, y):
        return h[:, None] * torch.sin(x + t[:, None]) + 0.3 * h[:, None] ** 2 * v


@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_terms_are_the_answers_the_corrector_and_the_last_predictor_use(shift):
    a = LOBATTO_A
    for nfe in (1, 3, 6):
        grid = solve_grid(nfe, shift)
        intervals = interval_terms(LOBATTO4, grid)
        asked = {(round(t, 9), round(h, 9)) for t, h in solve_grid_questions(nfe, shift=shift)}
        assert len(intervals) == nfe
        for k, terms in enumerate(intervals):
            t, s = grid[k], grid[k + 1]
            H = t - s
            assert {(round(q.t, 9), round(q.h, 9)) for q in terms} <= asked  # questions the sampler asks
            if k < nfe - 1:  # corrector: f_a forward from t, g_b backward from t - H, 5/12 each
                assert [q.t for q in terms] == [t, s] and [q.weight for q in terms] == pytest.approx([5 / 12] * 2)
                assert terms[0].h == pytest.approx(a * H) and terms[1].h == pytest.approx(-a * H)
            else:  # predictor: f_a, f_b, f_end forward from t, 5/12, 5/12, 1/12
                assert [q.t for q in terms] == [t] * 3
                assert [q.weight for q in terms] == pytest.approx([5 / 12, 5 / 12, 1 / 12])
                assert [q.h for q in terms] == pytest.approx([a * H, (1 - a) * H, H])


def test_a_rule_without_end_points_is_refused():
    with pytest.raises(ValueError, match="needs a rule with both end points as nodes, not gauss-legendre3"):
        interval_terms(gauss_legendre(3), solve_grid(3))


def test_each_trajectory_draws_intervals_of_one_solve_and_every_one_is_reached():
    table = interval_table(3, 5)
    drawn = table.draw(2000, 2, torch.Generator().manual_seed(0))
    assert len(drawn.first) == len(drawn.last) == 4000
    rows_per_interval = torch.bincount(drawn.interval, minlength=4000)
    assert torch.equal(rows_per_interval, torch.where(drawn.last, 3, 2))  # the predictor's 3, the corrector's 2
    assert torch.equal(drawn.trajectory, drawn.interval // 2)
    times = torch.tensor(question_times(3, 5))
    assert torch.allclose(times[drawn.anchor], drawn.t) and torch.allclose(times[drawn.answer], drawn.t - drawn.h,
                                                                           atol=1e-6)
    every = {(round(q.t, 6), round(q.h, 6)) for nfe in (3, 4, 5) for terms in interval_terms(LOBATTO4, solve_grid(nfe))
             for q in terms}
    assert {(round(t, 6), round(h, 6)) for t, h in zip(drawn.t.tolist(), drawn.h.tolist())} == every
    assert 0 < drawn.first.float().mean() < 0.5 and 0 < drawn.last.float().mean() < 0.5


def question_times(low, high):
    return question_table(low, high).times


def one_interval(table: SolveIntervals, j: int, n: int) -> DrawnIntervals:
    """Every one of ``n`` trajectories asked interval ``j`` of the table's first solve."""
    used = table.weight[0, j] > 0
    rows = int(used.sum())

    def tiled(field):
        return field[0, j][used].repeat(n)
    interval = torch.arange(n).repeat_interleave(rows)
    return DrawnIntervals(interval, tiled(table.anchor), tiled(table.answer), tiled(table.t), tiled(table.h),
                          tiled(table.weight), interval, table.first[0, j].repeat(n), table.last[0, j].repeat(n))


def residuals(gmm, nfe, j, n=8):
    """The endpoint residuals of ``Wobble`` on interval ``j`` of ``n`` exact trajectories' ``nfe`` solve, the states
    there and the grid."""
    config = SideNetConfig(questions="solves", solve_nfe_min=nfe, solve_nfe_max=nfe, solve_loss="endpoints", **TINY)
    times = question_times(nfe, nfe)
    states, labels, _ = exact_trajectories(gmm, config, n, torch.Generator().manual_seed(0), "cpu", times)
    drawn = one_interval(interval_table(nfe, nfe), j, n)
    x, y = states[drawn.anchor, drawn.trajectory], labels[drawn.trajectory]
    v, target = gmm(x, drawn.t, y), gmm(states[drawn.answer, drawn.trajectory], drawn.t - drawn.h, y)
    return endpoint_residuals(Wobble(), x, drawn, v, target, y), states, labels, times, solve_grid(nfe)


class WobbleVelocities(NodeVelocities):
    """``Wobble`` as the scheme's node source: ``v + S(x, v, t, h)`` from the anchor's (unguided) velocity."""

    def answer(self, field, x, anchor, t, offsets):
        v = field.guide(*anchor, t)
        return [v + Wobble()(x, v, torch.full((len(x),), t), torch.full((len(x),), h), None) for h in offsets]


def test_the_last_residual_is_the_predictor_error_the_scheme_makes(gmm):
    nfe = 3
    r, states, labels, times, grid = residuals(gmm, nfe, nfe - 1)
    t, H = grid[-2], grid[-2] - grid[-1]
    x = states[times.index(round(t, 12))]
    field = VelocityField(gmm, labels, Guidance(scale=1.0))
    anchor = field.raw(x, t)
    with torch.no_grad():
        wobbled, _ = bi_anchor_interval(field, WobbleVelocities(), LOBATTO4, x, anchor, t, H, last=True)
        exact, _ = bi_anchor_interval(field, OracleVelocities(1e-10, 1e-10), LOBATTO4, x, anchor, t, H, last=True)
    assert torch.allclose(r, (wobbled - exact) / -H, atol=1e-5)
    assert r.abs().max() > 1e-2  # a residual to compare, not two zeros


def test_an_inner_residual_is_the_corrector_error_from_exact_anchors(gmm):
    nfe, j = 3, 1
    r, states, labels, times, grid = residuals(gmm, nfe, j)
    t, s = grid[j], grid[j + 1]
    H = t - s
    x0, x1 = states[times.index(round(t, 12))], states[times.index(round(s, 12))]
    v0, v1 = gmm(x0, torch.full((8,), t), labels), gmm(x1, torch.full((8,), s), labels)
    f_a = WobbleVelocities().answer(VelocityField(gmm, labels, Guidance(1.0)), x0, (v0, None), t, [LOBATTO_A * H])[0]
    g_b = WobbleVelocities().answer(VelocityField(gmm, labels, Guidance(1.0)), x1, (v1, None), s,
                                    [-(1 - (1 - LOBATTO_A)) * H])[0]
    oracle = OracleVelocities(1e-10, 1e-10)
    field = VelocityField(gmm, labels, Guidance(1.0))
    u_a = oracle.answer(field, x0, (v0, None), t, [LOBATTO_A * H])[0]
    u_b = oracle.answer(field, x1, (v1, None), s, [-LOBATTO_A * H])[0]
    corrector = LOBATTO4.combine([v0, f_a, g_b, v1])  # x <- x - H (w0 v0 + w1 f_a + w2 g_b + w3 v1)
    # the loss's exact states are solved at rtol = atol = 1e-6 from noise, the oracle's at 1e-10 from x0 and x1
    assert torch.allclose(r, corrector - LOBATTO4.combine([v0, u_a, u_b, v1]), atol=1e-4)
    assert r.abs().max() > 1e-3


@pytest.mark.parametrize("bank", [0, 64])
def test_an_exact_sidenet_leaves_no_endpoint_error(gmm, bank):
    config = SideNetConfig(questions="solves", solve_nfe_min=2, solve_nfe_max=5, solve_loss="endpoints",
                           questions_per_solve=3, solve_bank=bank, **TINY)
    zero = torch.nn.Module()
    zero.forward = lambda x, v, t, h, y: torch.zeros_like(x)
    for S, check in ((ExactCorrection(gmm), lambda loss: loss < 1e-7), (zero, lambda loss: loss > 1e-3)):
        if bank:
            loss = SolveBank(gmm, config, bank, torch.Generator().manual_seed(0), "cpu").draw_loss(
                S, 32, 3, torch.Generator().manual_seed(1))
        else:
            loss, _ = question_loss(S, gmm, config, 32, torch.Generator().manual_seed(1), "cpu")
        assert check(loss.item())


@pytest.mark.slow  # about 5 s on 2 cores: run with -m slow
def test_endpoint_training_runs_and_learns_its_loss(gmm):
    config = SideNetConfig(iterations=100, lr=1e-2, questions="solves", solve_nfe_min=3, solve_nfe_max=5,
                           solve_loss="endpoints", questions_per_solve=4, **{**TINY, "batch_size": 64})
    raw, _, stats = train_sidenet(gmm, config, progress=False)
    assert stats.data_mode == "solves" and len(stats.loss) == 100
    start, _, _ = train_sidenet(gmm, SideNetConfig(iterations=1, lr=1e-12, **TINY), progress=False)

    assert held_out(raw, gmm, config) < 0.5 * held_out(start, gmm, config)


def test_the_guided_endpoint_loss_is_the_residual_of_the_guided_answers(gmm):
    """With solve_target: guided, an interval's residual is the one of the state built from the guided answers
    ``u + w (c - u)``: the branches' residuals weighed w and 1 - w, so that branch errors that cancel in the guided
    answers cost nothing; the training draws it from guided solves and learns it."""
    drawn = SolveIntervals([solve_grid(3)], question_table(3, 3).times, LOBATTO4).draw(
        4, 2, torch.Generator().manual_seed(0))
    rows = len(drawn.t)
    x, v_c, v_u, c, u = (torch.randn(rows, 4) for _ in range(5))
    answers = [(torch.zeros(rows, dtype=torch.long), v_c, c), (torch.ones(rows, dtype=torch.long), v_u, u)]
    S = Wobble()
    r_c, r_u = (endpoint_residuals(S, x, drawn, v, target, y) for y, v, target in answers)
    assert torch.allclose(endpoint_loss(S, x, drawn, answers, guidance=2.0), (2 * r_c - r_u).pow(2).mean())
    assert torch.allclose(endpoint_loss(S, x, drawn, answers), (r_c.pow(2).mean() + r_u.pow(2).mean()) / 2)
    weight = torch.arange(1.0, 9.0)
    per_interval = (r_u + 3.0 * (r_c - r_u)).pow(2).mean(1)
    assert torch.allclose(endpoint_loss(S, x, drawn, answers, weight, guidance=3.0),
                          (per_interval * weight).sum() / weight.sum())
    zero = lambda x, v, t, h, y: torch.zeros_like(x)  # noqa: E731
    cancelling = [(None, v_c, v_c + 0.5), (None, v_u, v_u + 1.0)]  # errors -0.5 and -1: u + 2 (c - u) = 0
    assert endpoint_loss(zero, x, drawn, cancelling, guidance=2.0) < 1e-12
    assert endpoint_loss(zero, x, drawn, cancelling) > 0.1  # branch by branch: not

    config = SideNetConfig(iterations=100, lr=1e-2, questions="solves", solve_nfe_min=3, solve_nfe_max=5,
                           solve_bank=256, solve_guidance=2.0, solve_target="guided", solve_loss="endpoints",
                           questions_per_solve=4, **{**TINY, "batch_size": 64})
    assert config.solves.solve_target == "guided" and config.solves.solve_loss == "endpoints"
    raw, _, _ = train_sidenet(gmm, config, progress=False)
    start, _, _ = train_sidenet(gmm, SideNetConfig(iterations=1, lr=1e-12, **TINY), progress=False)

    assert held_out(raw, gmm, config) < 0.5 * held_out(start, gmm, config)


def test_the_setting_is_checked():
    assert SideNetConfig(questions="solves").solves.solve_loss == "nodes"
    assert SideNetConfig(questions="solves", solve_loss="endpoints").solves.solve_loss == "endpoints"
    with pytest.raises(ValueError, match="'solve_loss' must be one of nodes, endpoints, got 'states'"):
        SideNetConfig(questions="solves", solve_loss="states")
    with pytest.raises(ValueError, match="'solve_loss' are for questions: solves or both"):
        SideNetConfig(solve_loss="endpoints")
