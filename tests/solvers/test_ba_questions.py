"""Solve-question training (``questions: solves``): its questions are those the bi-anchor sampler asks,
sampling and inverting; its targets are exact; its settings are checked; it trains."""
from collections import Counter

import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.inversion import invert
from solverbench.sampling import sample
from solvers.ba.chains import exact_step
from solvers.ba.checkpoint import save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.node_velocities import SideNetVelocities
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.reference import Tolerance, reference_trajectory
from solvers.ba.questions import (SolveBank, SolveQuestions, exact_trajectories, fit_loss, question_loss,
                                  solve_grid, solve_grid_questions, solve_times)
from solvers.ba.training import train_sidenet

TINY = dict(width=16, depth=1, embed_dim=8, batch_size=16)


def held_out(sidenet, backbone, config) -> float:
    """``config``'s question loss of ``sidenet`` on 3 x 64 fresh exact trajectories (not a bank's)."""
    with torch.no_grad():
        return sum(question_loss(sidenet, backbone, config, 64, torch.Generator().manual_seed(100 + k), "cpu")[0]
                   for k in range(3)).item()


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)


def rounded(questions):
    return Counter((round(t, 9), round(h, 9)) for t, h in questions)


@pytest.mark.parametrize("nfe", [1, 3, 5])
def test_questions_are_those_the_sampler_asks_sampling_and_inverting(gmm, tmp_path, monkeypatch, nfe):
    solver, asked = recording_solver(gmm, tmp_path, monkeypatch)
    labels = torch.tensor([0, 1])
    x1 = sample(gmm, solver, torch.randn(2, 4), labels, nfe=nfe).samples
    assert rounded(asked) == rounded(solve_grid_questions(nfe))
    asked.clear()
    invert(gmm, solver, x1, labels, nfe=nfe)
    assert rounded(asked) == rounded(solve_grid_questions(nfe, inverting=True))


@pytest.mark.parametrize("nfe", [3, 5])
def test_shifted_questions_are_those_the_sampler_asks_on_the_shifted_grid(gmm, tmp_path, monkeypatch, nfe):
    solver, asked = recording_solver(gmm, tmp_path, monkeypatch)
    shifted = {"name": "shifted", "shift": 1.5}
    sample(gmm, solver, torch.randn(2, 4), torch.tensor([0, 1]), nfe=nfe, schedule=shifted)
    assert rounded(asked) == rounded(solve_grid_questions(nfe, shift=1.5))
    assert rounded(asked) != rounded(solve_grid_questions(nfe))
    table = SolveQuestions(nfe, nfe, shift=1.5)
    assert set(table.times) == set(solve_times(solve_grid_questions(nfe, shift=1.5)))
    assert SolveQuestions(nfe, nfe).times != table.times


def recording_solver(gmm, tmp_path, monkeypatch):
    """A BA solver with a tiny SideNet, and the list of the (t, h) questions it asks (appended as it samples)."""
    config = SideNetConfig(iterations=1, chain_length=1, **TINY)
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    path = save_checkpoint(tmp_path / "tiny.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(), backbone=gmm)
    asked = []
    answer = SideNetVelocities.answer

    def recording(self, field, x, anchor, t, offsets):  # in path time: the mirrored field is translated before
        asked.extend((float(t), float(h)) for h in offsets)
        return answer(self, field, x, anchor, t, offsets)

    monkeypatch.setattr(SideNetVelocities, "answer", recording)
    solver = sb.get_solver("ba", checkpoint=str(path))
    solver.prepare(gmm)
    return solver, asked


def test_solve_times_hold_every_anchor_and_answer_once():
    questions = solve_grid_questions(5)
    times = solve_times(questions)
    assert times[0] == 1 and times[-1] == 0 and len(times) == 6 + 2 * 5 and len(set(times)) == len(times)
    assert all(round(t, 12) in times and round(t - h, 12) in times for t, h in questions)
    assert len(questions) == 5 * 3 + 4  # 3 forward nodes per interval, 1 backward but on the last
    assert sum(h < 0 for _, h in questions) == 4  # the refinements
    inverting = solve_grid_questions(5, inverting=True)
    assert solve_times(inverting) == times and sum(h < 0 for _, h in inverting) == 5 * 3


def test_each_trajectory_draws_questions_of_one_solve_in_the_range():
    table = SolveQuestions(3, 5)
    assert table.times == solve_times([q for nfe in (3, 4, 5) for q in solve_grid_questions(nfe)])
    trajectory, anchor, answer, t, h, first, last = table.draw(3000, 4, torch.Generator().manual_seed(0))
    assert trajectory.tolist() == [i for i in range(3000) for _ in range(4)]
    times = torch.tensor(table.times)
    assert torch.allclose(times[anchor], t) and torch.allclose(times[answer], t - h, atol=1e-6)
    drawn = set(zip(t.view(3000, 4)[:, 0].tolist(), h.view(3000, 4)[:, 0].tolist()))
    every = {(float(torch.tensor(q[0])), float(torch.tensor(q[1]))) for nfe in (3, 4, 5)
             for q in solve_grid_questions(nfe)}
    assert drawn == every  # 3000 draws reach every question of every solve in the range, and nothing else
    for row_t, row_h in zip(t.view(3000, 4)[:50], h.view(3000, 4)[:50]):  # one solve per trajectory
        assert any(set(zip(row_t.tolist(), row_h.tolist())) <= {(float(torch.tensor(a)), float(torch.tensor(b)))
                                                               for a, b in solve_grid_questions(nfe)}
                   for nfe in (3, 4, 5))


class ExactCorrection(torch.nn.Module):
    """A stand-in SideNet answering every question exactly: ``v(x(t - h), t - h) - v``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x, v, t, h, y):
        end = exact_step(self.backbone, x, t, h, y)
        return self.backbone(end, t - h, y) - v


def test_question_targets_are_the_exact_velocities_at_the_asked_times(gmm):
    config = SideNetConfig(questions="solves", solve_nfe_min=2, solve_nfe_max=6, **TINY)
    for seed in range(3):  # three NFEs drawn
        loss, calls = question_loss(ExactCorrection(gmm), gmm, config, 32, torch.Generator().manual_seed(seed), "cpu")
        assert loss.item() < 1e-7 and calls > 2 + 10  # an adaptive solve and two batched calls
    zero = torch.nn.Module()
    zero.forward = lambda x, v, t, h, y: torch.zeros_like(x)
    loss, _ = question_loss(zero, gmm, config, 32, torch.Generator().manual_seed(0), "cpu")
    assert loss.item() > 1e-3  # the velocity does change along the asked offsets


@pytest.mark.slow  # about 5 s on 2 cores: run with -m slow
def test_solve_question_training_runs_and_learns(gmm):
    config = SideNetConfig(iterations=100, lr=1e-2, questions="solves", solve_nfe_min=3, solve_nfe_max=5,
                           **{**TINY, "batch_size": 64})
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    assert stats.data_mode == "solves" and len(stats.loss) == 100 and stats.backbone_calls > 100 * 10
    untrained = SideNetConfig(iterations=1, lr=1e-12, **TINY)  # the same initial weights, kept
    start, _, _ = train_sidenet(gmm, untrained, progress=False)

    assert held_out(raw, gmm, config) < 0.5 * held_out(start, gmm, config)


def test_both_adds_the_chain_loss_to_the_question_loss(gmm):
    config = SideNetConfig(iterations=3, questions="both", chain_length=2, questions_per_solve=4, **TINY)
    _, _, stats = train_sidenet(gmm, config, progress=False)
    _, _, chains = train_sidenet(gmm, SideNetConfig(iterations=3, chain_length=2, **TINY), progress=False)
    assert stats.data_mode == "data and solves" and chains.data_mode == "data"
    assert stats.loss[0] > chains.loss[0]  # the same first chains (one stream), and the questions' loss on top
    assert stats.backbone_calls > chains.backbone_calls + 3 * 10


def test_solve_question_settings_are_checked():
    assert SideNetConfig(questions="solves", solve_bank=8).solves.solve_bank == 8
    with pytest.raises(ValueError, match="'questions' must be one of chains, solves, both, got 'paths'"):
        SideNetConfig(questions="paths")
    with pytest.raises(ValueError, match=r"'solve_nfe_min' \(9\) is above 'solve_nfe_max' \(4\)"):
        SideNetConfig(questions="solves", solve_nfe_min=9, solve_nfe_max=4)
    with pytest.raises(ValueError, match="'solve_nfe_max', 'questions_per_solve' are for questions: solves or both"):
        SideNetConfig(solve_nfe_max=7, questions_per_solve=4)
    assert SideNetConfig(questions="both", step_rate=5.0).step_rate == 5.0  # both keeps the chain knobs
    with pytest.raises(ValueError, match="'noise_starts', 'step_rate' are for chain training"):
        SideNetConfig(questions="solves", step_rate=5.0, noise_starts=0.5)
    for questions in ("solves", "both"):
        with pytest.raises(ValueError, match=f"questions: {questions} is not the official recipe"):
            SideNetConfig.from_settings({"recipe": "official", "questions": questions})
    with pytest.raises(ValueError, match="'solve_nfe_min' must be a positive integer"):
        SideNetConfig(questions="solves", solve_nfe_min=0)
    with pytest.raises(ValueError, match="'solve_bank' must be a non-negative integer"):
        SideNetConfig(questions="solves", solve_bank=-1)
    with pytest.raises(ValueError, match="'solve_guidance' must be a number >= 0"):
        SideNetConfig(questions="solves", solve_guidance=-2.0)
    with pytest.raises(ValueError, match="'solve_bank', 'solve_guidance' are for questions: solves or both"):
        SideNetConfig(solve_bank=64, solve_guidance=2.0)
    with pytest.raises(ValueError, match="'first_interval_weight' must be a positive number"):
        SideNetConfig(questions="solves", first_interval_weight=0.0)
    with pytest.raises(ValueError, match="'first_interval_weight' are for questions: solves or both"):
        SideNetConfig(first_interval_weight=4.0)
    with pytest.raises(ValueError, match="'last_interval_weight' must be a positive number"):
        SideNetConfig(questions="solves", last_interval_weight=-1.0)
    with pytest.raises(ValueError, match="'last_interval_weight' are for questions: solves or both"):
        SideNetConfig(last_interval_weight=4.0)
    with pytest.raises(ValueError, match="'solve_shift' must be a positive number"):
        SideNetConfig(questions="solves", solve_shift=-1.0)
    with pytest.raises(ValueError, match="'solve_shift' are for questions: solves or both"):
        SideNetConfig(solve_shift=2.0)
    assert SideNetConfig.from_settings({"questions": "solves", "solve_guidance": 2}).solve_guidance == 2.0


def test_a_bank_holds_exact_trajectories_and_their_velocities_and_its_questions_are_exact(gmm):
    config = SideNetConfig(questions="solves", solve_nfe_min=2, solve_nfe_max=4, solve_bank=48, **TINY)
    bank = SolveBank(gmm, config, 48, torch.Generator().manual_seed(0), "cpu")
    times = bank.table.times
    fresh, labels, _ = exact_trajectories(gmm, config, 16, torch.Generator().manual_seed(0), "cpu", times)
    assert torch.equal(bank.states[:, :16], fresh) and torch.equal(bank.branches[0][:16], labels)  # the first batch
    assert bank.states.shape == (len(times), 48, 4) and bank.velocities.shape == (1, len(times), 48, 4)
    for k in (0, len(times) // 2, len(times) - 1):
        assert torch.equal(bank.velocities[0, k], gmm(bank.states[k], torch.full((48,), times[k]), bank.branches[0]))
    assert bank.calls > 3 * (len(times) + 10)  # three batches, each an adaptive solve and one call per time
    loss = bank.draw_loss(ExactCorrection(gmm), 64, 8, torch.Generator().manual_seed(1))
    assert loss.item() < 1e-7
    zero = torch.nn.Module()
    zero.forward = lambda x, v, t, h, y: torch.zeros_like(x)
    assert bank.draw_loss(zero, 64, 8, torch.Generator().manual_seed(1)).item() > 1e-3


def test_training_on_a_bank_costs_no_backbone_call_per_iteration_and_learns(gmm):
    config = SideNetConfig(iterations=100, lr=1e-2, questions="solves", solve_nfe_min=3, solve_nfe_max=5,
                           solve_bank=256, **{**TINY, "batch_size": 64})
    raw, _, stats = train_sidenet(gmm, config, progress=False)
    _, _, shorter = train_sidenet(gmm, SideNetConfig(**{**config.as_dict(), "iterations": 10}), progress=False)
    assert stats.backbone_calls == shorter.backbone_calls > 4 * 10  # the bank's four solves, then nothing
    start, _, _ = train_sidenet(gmm, SideNetConfig(iterations=1, lr=1e-12, **TINY), progress=False)

    assert held_out(raw, gmm, config) < 0.5 * held_out(start, gmm, config)


def test_guided_solves_follow_the_guided_trajectory_and_ask_both_branches(gmm):
    config = SideNetConfig(questions="solves", solve_nfe_min=2, solve_nfe_max=3, solve_guidance=2.0,
                           label_dropout=0.5, **TINY)
    bank = SolveBank(gmm, config, 16, torch.Generator().manual_seed(0), "cpu")
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(16, 4, generator=generator)
    labels = torch.randint(gmm.num_classes, (16,), generator=generator)
    guided = VelocityField(gmm, labels, Guidance(scale=2.0))
    expected = reference_trajectory(guided, noise, bank.table.times, Tolerance(1e-6, 1e-6)).float()
    assert torch.equal(bank.branches[0], labels)  # not dropped: the null branch is asked of every question
    assert (bank.branches[1] == gmm.null_label).all()
    assert torch.allclose(bank.states, expected, atol=1e-6)
    k = len(bank.table.times) // 2
    t_k = torch.full((16,), bank.table.times[k])
    assert torch.equal(bank.velocities[1, k], gmm(bank.states[k], t_k, bank.branches[1]))
    asked = []

    def recording(x, v, t, h, y):
        asked.append(y.clone())
        return torch.zeros_like(x)

    zero = torch.nn.Module()
    zero.forward = recording
    _, calls = question_loss(zero, gmm, config, 8, torch.Generator().manual_seed(2), "cpu")
    assert len(asked) == 2 and (asked[1] == gmm.null_label).all() and (asked[0] != gmm.null_label).all()
    assert calls > 4 + 10  # the guided solve, and an anchor and an answer call per branch


def test_guided_solves_need_a_null_label():
    class Unconditional:  # as toy2d: no classes, so no null label; refused before any work
        sample_shape, num_classes, null_label = (2,), None, None

    with pytest.raises(ValueError, match="'solve_guidance' is 2, but the backbone Unconditional has no null label"):
        train_sidenet(Unconditional(), SideNetConfig(questions="solves", solve_guidance=2.0, **TINY), progress=False)


@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_first_interval_questions_are_the_probe_from_noise_and_its_refinement(shift):
    table = SolveQuestions(2, 6, shift=shift)
    for k, nfe in enumerate(range(2, 7)):
        first = [(round(float(t), 6), round(float(h), 6)) for t, h, f in zip(table.t[k], table.h[k], table.first[k])
                 if f]
        questions = solve_grid_questions(nfe, shift=shift)
        probe, refinement = questions[:3], questions[3]
        assert first == [(round(t, 6), round(h, 6)) for t, h in probe + [refinement]]
        second_node = 1 - 1 / nfe if shift == 1 else 2 * (1 - 1 / nfe) / (1 + (1 - 1 / nfe))
        assert all(t == 1 for t, _ in probe) and refinement[0] == pytest.approx(second_node) and refinement[1] < 0


@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_last_interval_questions_are_the_probe_toward_data(shift):
    table = SolveQuestions(2, 6, shift=shift)
    for k, nfe in enumerate(range(2, 7)):
        last = [(round(float(t), 6), round(float(h), 6)) for t, h, f in zip(table.t[k], table.h[k], table.last[k]) if f]
        probe = solve_grid_questions(nfe, shift=shift)[-3:]  # the last interval has no refinement
        assert last == [(round(t, 6), round(h, 6)) for t, h in probe]
        assert all(t == pytest.approx(solve_grid(nfe, shift)[-2]) and h > 0 for t, h in probe)
        assert probe[-1][0] - probe[-1][1] == pytest.approx(0)  # the probe's last node is t = 0
        assert not (table.first[k] & table.last[k]).any()  # two intervals at least: no question is in both


class MissesFromNoise(ExactCorrection):
    """Exact but on the questions asked from pure noise (t = 1), where it is off by 1 in every coordinate."""

    def forward(self, x, v, t, h, y):
        return super().forward(x, v, t, h, y) + (t == 1).to(x.dtype)[:, None]


class MissesData(ExactCorrection):
    """Exact but on the questions about t = 0 (a last interval's end), where it is off by 1 in every coordinate."""

    def forward(self, x, v, t, h, y):
        return super().forward(x, v, t, h, y) + ((t - h).abs() < 1e-6).to(x.dtype)[:, None]


@pytest.mark.parametrize("bank", [0, 64])
@pytest.mark.parametrize("interval", ["first", "last"])
def test_an_interval_weight_is_a_weighted_mean_over_the_drawn_questions(gmm, bank, interval):
    n, per = 64, 8
    S = MissesFromNoise(gmm) if interval == "first" else MissesData(gmm)
    for weight in (1.0, 4.0):
        config = SideNetConfig(questions="solves", solve_nfe_min=2, solve_nfe_max=4, solve_bank=bank,
                               questions_per_solve=per, **{f"{interval}_interval_weight": weight}, **TINY)
        replay = torch.Generator().manual_seed(3)  # the same stream, to see which questions were drawn
        if bank:
            solved = SolveBank(gmm, config, bank, torch.Generator().manual_seed(0), "cpu")
            loss = solved.draw_loss(S, n, per, torch.Generator().manual_seed(3))
            torch.randint(bank, (n,), generator=replay)
            table = solved.table
        else:
            loss, _ = question_loss(S, gmm, config, n, torch.Generator().manual_seed(3), "cpu")
            table = SolveQuestions(2, 4)
            exact_trajectories(gmm, config, n, replay, "cpu", table.times)
        _, _, _, t, h, first, last = table.draw(n, per, replay)
        if interval == "first":
            missed, weighted = int((t == 1).sum()), int(first.sum())
        else:
            missed, weighted = int(((t - h).abs() < 1e-6).sum()), int(last.sum())
        assert 0 < missed < weighted < n * per  # the interval's other questions weigh in, and miss nothing
        expected = weight * missed / (weight * weighted + n * per - weighted)
        assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_unit_weights_are_the_plain_mean():
    x, t, h = torch.randn(6, 3), torch.rand(6), torch.rand(6)
    answers = [(None, torch.randn(6, 3), torch.randn(6, 3))]
    S = lambda x, v, t, h, y: x * t[:, None]  # noqa: E731
    assert torch.allclose(fit_loss(S, x, t, h, answers, torch.ones(6)), fit_loss(S, x, t, h, answers))


def test_a_bank_that_would_not_fit_is_refused_before_any_solving(gmm, monkeypatch):
    import solvers.ba.questions as questions
    monkeypatch.setattr(questions, "available_bytes", lambda device: 3 * 2**20)
    monkeypatch.setattr(questions, "exact_trajectories", lambda *args: pytest.fail("solved before the check"))
    config = SideNetConfig(questions="solves", solve_nfe_min=2, solve_nfe_max=4, solve_guidance=2.0, **TINY)
    times = len(SolveQuestions(2, 4).times)
    needed = 4096 * times * 3 * 4 * 4  # trajectories, times, states and two velocities, 4 coordinates, float32
    with pytest.raises(ValueError, match=rf"'solve_bank' 4096 needs {needed / 2**20:.1f} MiB on cpu \(states and 2 "
                                         rf"velocities at {times} times, NFE 2 to 4\) and 3.0 MiB is free"):
        SolveBank(gmm, config, 4096, torch.Generator().manual_seed(0), "cpu")
    questions.check_bank_fits(gmm, config, 16, times, "cpu")  # 16 fit


@pytest.mark.parametrize("bank", [0, 32])
def test_training_with_solve_shift_asks_the_shifted_grids_questions(gmm, monkeypatch, bank):
    import solvers.ba.questions as questions
    config = SideNetConfig(questions="solves", solve_nfe_min=3, solve_nfe_max=4, solve_shift=1.5, solve_bank=bank,
                           **TINY)
    seen = set()
    fit = questions.fit_loss

    def recording(S, x, t, h, answers, weight=None, guidance=None):
        seen.update(zip(t.tolist(), h.tolist()))
        return fit(S, x, t, h, answers, weight, guidance)

    monkeypatch.setattr(questions, "fit_loss", recording)
    train_sidenet(gmm, SideNetConfig(**{**config.as_dict(), "iterations": 4}), progress=False)
    shifted = {(round(t, 5), round(h, 5)) for nfe in (3, 4) for t, h in solve_grid_questions(nfe, shift=1.5)}
    assert {(round(t, 5), round(h, 5)) for t, h in seen} == shifted  # every one of them, and nothing else


def test_the_guided_target_fits_the_guided_answer_the_sampler_uses(gmm):
    """solve_target: guided weighs the branches' errors as guidance does (w and 1 - w), so that errors that cancel in
    the guided velocity cost nothing; it is checked, and leaves the cache keys of the branch target."""
    x, t, h = torch.randn(5, 4), torch.rand(5), torch.rand(5)
    v_c, v_u, c, u = (torch.randn(5, 4) for _ in range(4))
    answers = [(torch.zeros(5, dtype=torch.long), v_c, c), (torch.ones(5, dtype=torch.long), v_u, u)]
    S = lambda x, v, t, h, y: x * t[:, None] + y[:, None]  # noqa: E731
    e_c, e_u = v_c + S(x, v_c, t, h, answers[0][0]) - c, v_u + S(x, v_u, t, h, answers[1][0]) - u
    assert torch.allclose(fit_loss(S, x, t, h, answers, guidance=3.0), (e_u + 3.0 * (e_c - e_u)).pow(2).mean())
    assert torch.allclose(fit_loss(S, x, t, h, answers), (e_c.pow(2).mean() + e_u.pow(2).mean()) / 2)
    weight = torch.tensor([1.0, 4.0, 1.0, 1.0, 2.0])
    per_question = (e_u + 3.0 * (e_c - e_u)).pow(2).mean(1)
    assert torch.allclose(fit_loss(S, x, t, h, answers, weight, guidance=3.0), (per_question * weight).sum() / 9)
    cancelling = [(None, v_c, v_c + 0.5), (None, v_u, v_u + 1.0)]  # errors -0.5 and -1: u + 2 (c - u) = 0
    assert fit_loss(lambda x, v, t, h, y: torch.zeros_like(x), x, t, h, cancelling, guidance=2.0) < 1e-12
    assert fit_loss(lambda x, v, t, h, y: torch.zeros_like(x), x, t, h, cancelling) > 0.5  # branch by branch: not
    assert SideNetConfig(questions="solves", solve_guidance=2.0, solve_target="guided").solves.solve_target == "guided"
    with pytest.raises(ValueError, match="'solve_target' must be one of branches, guided, got 'cfg'"):
        SideNetConfig(questions="solves", solve_guidance=2.0, solve_target="cfg")
    with pytest.raises(ValueError, match="solve_target: guided fits the guided velocity, and solve_guidance is 1"):
        SideNetConfig(questions="solves", solve_target="guided")
    with pytest.raises(ValueError, match="'solve_target' are for questions: solves or both"):
        SideNetConfig(solve_target="guided")


def test_training_on_the_guided_target_learns_the_guided_velocity(gmm):
    """A bank of guided solves: the guided-target training lowers the guided loss on fresh trajectories."""
    config = SideNetConfig(iterations=100, lr=1e-2, questions="solves", solve_nfe_min=3, solve_nfe_max=5,
                           solve_bank=256, solve_guidance=2.0, solve_target="guided", **{**TINY, "batch_size": 64})
    raw, _, _ = train_sidenet(gmm, config, progress=False)
    start, _, _ = train_sidenet(gmm, SideNetConfig(iterations=1, lr=1e-12, **TINY), progress=False)

    assert held_out(raw, gmm, config) < 0.5 * held_out(start, gmm, config)
