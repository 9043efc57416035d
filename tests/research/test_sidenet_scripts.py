"""The SideNet investigation's scripts (research/sidenet/): the attempts table read from attempts.yaml and rewritten
keeping its hand-written reading, the questions the ceiling SideNet is fitted to, the per-interval error profile, and
the measurements of the last interval, the questions' errors, the reference and the fit to a bank."""
import shlex
from pathlib import Path

import pytest
import torch

from backbones.gmm import GaussianMixture
from research.sidenet import (fit_gap, gpu_sidenet_attempts, last_interval_bound, question_errors, reference_tolerance,
                              scheme_floor, sidenet_attempts, sidenet_ceiling, sidenet_diagnosis, table_setting)
from research.sidenet.attempts import ATTEMPTS, Attempt, load_attempts
from solvers.ba.checkpoint import save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.quadrature import two_interior_node_rule
from solvers.ba.training import train_sidenet

pytestmark = pytest.mark.research
COMMITTED = Path(__file__).resolve().parents[2] / "research" / "sidenet" / "findings" / "sidenet_attempts.md"


def test_ceiling_questions_are_those_of_an_nfe5_bi_anchor_solve():
    a = 0.25
    times, questions = sidenet_ceiling.solve_questions(5, two_interior_node_rule(a))
    assert times[0] == 1 and times[-1] == 0 and all(s > t for s, t in zip(times, times[1:]))
    assert len(times) == 6 + 2 * 5  # the grid and two interior nodes per interval
    assert len(questions) == 5 * 3 + 4  # a forward probe of three per interval, a backward refinement but on the last
    offsets = sorted(round(times[i] - times[j], 9) for i, j in questions)
    assert offsets == sorted([round(c * 0.2, 9) for c in (a, 1 - a, 1.0)] * 5 + [-round(a * 0.2, 9)] * 4)


def test_error_profile_charges_each_interval_and_the_oracle_leaves_least(tmp_path):
    gmm = GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)
    config = SideNetConfig(iterations=2, width=16, depth=1, embed_dim=8, batch_size=16, chain_length=2)
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    path = save_checkpoint(tmp_path / "tiny.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(), backbone=gmm)
    table = sidenet_diagnosis.error_profile(gmm, str(path), nfe=3, samples=32)
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    assert [r[0].strip() for r in rows] == ["[1, 0.67]", "[0.67, 0.33]", "[0.33, 0]", "sum of final"]
    for row in rows[:-1]:
        assert float(row[-1]) < 1e-6  # the exact step's floor: two exact solves agree
        local, final, moved = (float(v.strip().rstrip("%")) for v in row[3].split("/"))  # the oracle
        assert local < 1e-2 and final < 1e-2 and moved == 0
    summed = [float(v) for v in rows[-1][1:4]]
    assert summed[2] < summed[1]  # exact node velocities leave less than the SideNet switched off
    shifted = sidenet_diagnosis.error_profile(gmm, str(path), nfe=3, samples=8, oracle=False,
                                              schedule={"name": "shifted", "shift": 0.5})
    assert [line.split("|")[1].strip() for line in shifted.splitlines()[2:-1]] == ["[1, 0.5]", "[0.5, 0.2]", "[0.2, 0]"]


def test_attempts_rewrite_keeps_the_reading(tmp_path):
    out = tmp_path / "attempts.md"
    sidenet_attempts.write(out, "python x.py", "| old table |")
    assert "| old table |" in out.read_text() and "## Reading" not in out.read_text()
    out.write_text(out.read_text() + "\n## Reading (written after the run)\n\n- a finding\n")
    sidenet_attempts.write(out, "python x.py", "| new table |",
                           remark="The gmm64 table is the one this file held before.")
    text = out.read_text()
    assert "    python x.py\n\nThe gmm64 table is the one this file held before.\n\n| new table |" in text
    assert "| new table |" in text and "| old table |" not in text
    assert text.endswith("## Reading (written after the run)\n\n- a finding\n") and text.count("## Reading") == 1
    same = sidenet_attempts.same_schedule
    assert same('"uniform"', None) and same('{"name": "ld3", "epochs": 10}', "ld3") and not same('"uniform"', "ld3")
    shifted = {"name": "shifted", "shift": 1.5}
    assert same('{"name":"shifted","shift":1.5}', shifted) and not same('{"name":"shifted","shift":2.0}', shifted)
    assert not same('{"name":"shifted","shift":1.5}', None)


def test_an_attempt_continues_an_earlier_attempts_sidenet(tmp_path):
    """init naming an earlier attempt: the training starts from that attempt's cache entry under the results
    directory, and the attempt counts as cached only where both SideNets are on disk."""
    earlier = next(a for a in ATTEMPTS if a.backbone == "digits" and a.settings and a.init == "digits.pt")
    later = Attempt("digits", "continued", "why", {**earlier.settings, "iterations": 10}, init=earlier.name)
    path = earlier.sidenet_path(str(tmp_path))
    assert later.params(str(tmp_path))["init_from"] == str(path) and path.parent == tmp_path / ".cache" / "sidenet"
    assert not later.cached(str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")  # the earlier SideNet cached, the later one not yet
    assert not later.cached(str(tmp_path))
    later.sidenet_path(str(tmp_path)).write_bytes(b"stand-in")
    assert later.cached(str(tmp_path))
    # a run trains (and its grid checks the init_from of) an attempt only after the one it continues
    assert sidenet_attempts.stages([later, earlier]) == [[earlier], [later]]
    assert sidenet_attempts.stages([]) == [[]]
    stray = Attempt("digits", "stray", "why", {"width": 64}, init="no such attempt")
    with pytest.raises(ValueError, match="'no such attempt' is neither a file under .* nor an attempt on digits"):
        stray.params(str(tmp_path))


def test_the_attempts_table_lists_each_attempt_once_after_the_one_it_continues(tmp_path):
    """attempts.yaml: names unique per backbone, every init a shipped file or an attempt listed before it (the order a
    run trains them in), floats read as floats; an entry with a misspelt key or no reason is refused, naming it."""
    names = [(a.backbone, a.name) for a in ATTEMPTS]
    assert len(set(names)) == len(names) and {b for b, _ in names} == {"gmm64", "digits"}
    for k, attempt in enumerate(ATTEMPTS):
        before = attempt.continues()
        assert before is None or before in ATTEMPTS[:k]
        assert not any(isinstance(value, str) and value[0].isdigit() for value in attempt.settings.values())
    fine_tuned = next(a for a in ATTEMPTS if a.name == "136k fine-tuned on guided solve questions")
    assert fine_tuned.settings["lr"] == 2e-4 and fine_tuned.params()["init_from"].endswith("digits.pt")
    bad = tmp_path / "attempts.yaml"
    bad.write_text("- {backbone: gmm64, name: a, why: b, setings: {width: 8}}\n")
    with pytest.raises(ValueError, match="entry 1: unknown key 'setings'"):
        load_attempts(bad)
    bad.write_text("- {backbone: gmm64, name: a, why: b}\n- {backbone: gmm64, name: c}\n")
    with pytest.raises(ValueError, match="entry 2: an attempt needs backbone, name and why"):
        load_attempts(bad)


def test_attempts_keep_rows_and_sections_of_the_committed_file(tmp_path):
    """--missing keep and --only: an earlier output's sections and rows are found by backbone and attempt name, and a
    kept row is written back verbatim with a note naming it."""
    committed = COMMITTED.read_text()
    sections = sidenet_attempts.earlier_sections(committed)
    assert set(sections) == {"gmm64", "digits"}
    assert not any("Errors:" in body or "## Reading" in body for body in sections.values())
    rows = {backbone: sidenet_attempts.earlier_rows(body) for backbone, body in sections.items()}
    listed = ATTEMPTS
    assert "136k SideNet (shipped digits.pt)" in rows["digits"] and "step rate 10" in rows["gmm64"]
    assert set(rows["gmm64"]) <= {a.name for a in listed if a.backbone == "gmm64"}
    light = next(a for a in listed if a.name == "light gated, 7k")
    assert not light.cached(str(tmp_path))  # nothing cached there
    assert next(a for a in listed if a.checkpoint).cached(str(tmp_path))  # a shipped file is always there
    goal = {"trajectory_error": 0.006, "trajectory_error_ci_low": 0.0055, "trajectory_error_ci_high": 0.0065}
    text = sidenet_attempts.table("digits", [light], {}, goal, {light.name: rows["digits"][light.name]})
    assert rows["digits"][light.name] in text.splitlines() and "(`--missing keep`): light gated, 7k." in text
    # an attempt with neither a cached SideNet nor an earlier row would be trained: keep refuses it before any work
    assert not set(sidenet_attempts.unmeasurable(sections, str(tmp_path), "digits")) & set(rows["digits"])
    assert sidenet_attempts.unmeasurable({}, str(tmp_path), "digits") == [
        a.name for a in listed if a.backbone == "digits" and not a.checkpoint]
    out = tmp_path / "attempts.md"
    out.write_text("# an earlier run without a digits table\n")
    with pytest.raises(SystemExit):
        sidenet_attempts.main(["--only", "digits", "--missing", "keep", "--results", str(tmp_path), "--out", str(out)])
    assert out.read_text() == "# an earlier run without a digits table\n"


def test_named_attempts_are_measured_with_what_they_continue_and_every_other_row_kept(tmp_path, capsys, monkeypatch):
    """--names: the named attempt and the attempts it continues are measured (trained where not cached), every
    other row of its backbone is copied verbatim from the earlier file, the other backbone's section too; an unknown
    name, a row that could be neither measured nor kept, and --names beside --only are refused before any work."""
    main = sidenet_attempts.main
    listed = ATTEMPTS
    last = next(a for a in reversed(listed) if a.backbone == "digits" and a.continues() is not None)
    chain = [last]
    while chain[-1].continues() is not None:
        chain.append(chain[-1].continues())
    asked = []
    def measure(backbone, chosen, results):  # the engine's measurement, stubbed: which attempts it is asked for
        asked.append((backbone, [a.name for a in chosen]))
        row = {"train_seconds": 1.0, "trainable_params": 7, "trajectory_error": 0.5, "trajectory_error_ci_low": 0.4,
               "trajectory_error_ci_high": 0.6}
        return {a.name: {5: row, 10: row} for a in chosen}, row
    monkeypatch.setattr(sidenet_attempts, "measure", measure)
    committed = COMMITTED
    out = tmp_path / "attempts.md"
    out.write_text(committed.read_text())
    before = sidenet_attempts.earlier_sections(committed.read_text())
    assert main(["--names", last.name, "--results", str(tmp_path), "--out", str(out)]) == 0
    assert asked == [("digits", [a.name for a in listed if a in chain])]  # the chain, in the table's order
    after = sidenet_attempts.earlier_sections(out.read_text())
    assert after["gmm64"] == before["gmm64"]
    rows, old = sidenet_attempts.earlier_rows(after["digits"]), sidenet_attempts.earlier_rows(before["digits"])
    assert list(rows) == [a.name for a in listed if a.backbone == "digits"]
    for name, line in rows.items():
        assert ("| 0.50 ± 0.10 | 0.50 ± 0.10 |" in line) == (name in {a.name for a in chain})
        assert name in {a.name for a in chain} or line == old[name]
    text = out.read_text()
    assert "this run measured digits only" in text
    assert ("Measured by this run (`--names` and the attempts they continue): " + "; ".join(
        a.name for a in listed if a in chain) + ". Every other row is kept") in text
    rerun = f"python -m research.sidenet.sidenet_attempts --names {shlex.quote(last.name)} --results"
    assert rerun in text  # quoted, to be rerun as is
    assert text.endswith(committed.read_text()[committed.read_text().index("\n## Reading"):])
    for bad in (["--names", "no such attempt", "--out", str(out)], ["--names", last.name],
                ["--names", last.name, "--only", "digits", "--out", str(out)]):
        with pytest.raises(SystemExit):
            main([*bad, "--results", str(tmp_path)])
    assert "no attempt named 'no such attempt'" in capsys.readouterr().err
    out.write_text(committed.read_text().replace("\n| light gated, 7k |", "\n| renamed |", 1))
    with pytest.raises(SystemExit):
        main(["--names", last.name, "--results", str(tmp_path), "--out", str(out)])
    assert "light gated, 7k: not named and no row" in capsys.readouterr().err
    assert len(asked) == 1  # nothing measured by the refused runs


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_last_interval_bound_runs_the_real_solve_and_hands_its_state_to_an_exact_one(tmp_path, guidance):
    """last_interval_bound.py: its predictor endpoint is the bi-anchor sampler's own, to the bit (state reuse
    included); the other endpoint is an exact solve from the state at the last interval's start; exact node
    velocities (the oracle's) have no error and leave only the quadrature's; anchored afresh, the predictor differs
    from the solve's but where the anchor is already the state's own."""
    import solverbench as sb
    from solverbench.field import VelocityField
    from solverbench.guidance import Guidance
    from solverbench.reference import Tolerance, reference_trajectory
    from solverbench.solver import PrepareContext
    from solvers.ba.schemes import bi_anchor
    gmm = GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)
    config = SideNetConfig(iterations=2, width=16, depth=1, embed_dim=8, batch_size=16, chain_length=2)
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    path = save_checkpoint(tmp_path / "tiny.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(), backbone=gmm)
    solver = sb.get_solver("ba", checkpoint=str(path))
    solver.prepare(gmm, PrepareContext())
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    field = VelocityField(gmm, torch.arange(32) % 2, Guidance(scale=guidance))
    grid = [1.0, 0.7, 0.45, 0.2, 0.0]
    last = last_interval_bound.last_interval(field, solver.node_velocities(field), solver.rule, x, grid)
    with torch.no_grad():
        assert torch.equal(last.predicted, bi_anchor(field, solver.node_velocities(field), solver.rule, x,
                                                     torch.tensor(grid, dtype=torch.float64)))
        # two intervals: the state at 0.5 is one corrected interval from noise, and an exact solve goes on from it
        two = last_interval_bound.last_interval(field, solver.node_velocities(field), solver.rule, x, [1.0, 0.5, 0.0])
        state = solver.local_step(field, [1.0], [x], 0.5)
        assert torch.allclose(two.exact, reference_trajectory(field, state, [0.5, 0.0], Tolerance(1e-5, 1e-5))[-1].to(
            x.dtype), atol=1e-6)
        # one interval: its anchor at t = 1 is evaluated at its own state, so anchoring afresh changes nothing
        one = last_interval_bound.last_interval(field, solver.node_velocities(field), solver.rule, x, [1.0, 0.0])
        assert torch.equal(one.fresh_anchor, one.predicted)
    assert not torch.allclose(last.fresh_anchor, last.predicted)  # state reuse: v(x_pred), not v(x)
    assert len(last.node_errors) == 3 and all(e.shape == (32,) and (e > 1e-3).all() for e in last.node_errors)
    oracle = sb.get_solver("ba-oracle", rtol=1e-9, atol=1e-9)
    exact = last_interval_bound.last_interval(field, oracle.velocities, oracle.rule, x, grid)
    assert all(e.max() < 1e-4 for e in exact.node_errors)
    assert torch.allclose(exact.exact_nodes, exact.predicted, atol=1e-5)  # the same quadrature of the same velocities


def test_question_errors_split_the_bank_and_measure_against_the_exact_velocities():
    """question_errors.py: a subset of the bank holds those trajectories only; an exact SideNet leaves no loss and no
    question error, a zero one the error of the SideNet switched off, whichever loss is asked for."""
    from solvers.ba.questions import SolveBank
    from test_ba_questions import ExactCorrection
    gmm = GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)
    tiny = dict(questions="solves", solve_nfe_min=5, solve_nfe_max=6, solve_bank=32, width=16, depth=1, embed_dim=8,
                batch_size=16)
    bank = SolveBank(gmm, SideNetConfig(**tiny), 32, torch.Generator().manual_seed(0), "cpu")
    held_out = bank.subset(slice(16, None))
    assert held_out.size == 16 and torch.equal(held_out.states, bank.states[:, 16:]) and bank.size == 32
    assert torch.equal(held_out.branches[0], bank.branches[0][16:])
    zero = torch.nn.Module()
    zero.forward = lambda x, v, t, h, y: torch.zeros_like(x)
    for loss, per in (("nodes", 4), ("endpoints", 2)):
        assert question_errors.mean_loss(ExactCorrection(gmm), held_out, loss, per) < 1e-7
        assert question_errors.mean_loss(zero, held_out, loss, per) > 1e-3
    assert held_out.config.solve_loss == "nodes"  # the loss asked for is the copy's
    questions = [q for qs in question_errors.question_groups(5).values() for q in qs]
    for question in questions:
        exact, off = question_errors.question_error(ExactCorrection(gmm), held_out, question, 1.0)
        assert exact < 1e-4 < off
        assert question_errors.question_error(zero, held_out, question, 1.0) == (off, off)
    guided = SolveBank(gmm, SideNetConfig(**tiny, solve_guidance=2.0), 32, torch.Generator().manual_seed(0), "cpu")
    for question in questions:  # both branches, guided: the SideNet off is the anchor's guided velocity
        _, off = question_errors.question_error(zero, guided, question, 2.0)
        assert off > 1e-3 and question_errors.question_error(zero, guided, question, 2.0) == (off, off)
        (c, u, r), (c0, u0, r0) = question_errors.branch_errors(zero, guided, question)
        assert (c, u, r) == (c0, u0, r0) and c0 > 0 and -1 <= r0 <= 1  # a zero SideNet errs as the SideNet off
        fitted, off_again = question_errors.linear_question_error(guided, guided, question, 2.0, gmm.null_label + 1)
        assert off_again == off and fitted < off  # fitted where it is measured: the linear row beats the anchor's v


def test_gpu_attempts_size_iterations_to_the_time_left():
    sized = gpu_sidenet_attempts.sized_iterations
    # 0.65 of 100 s split two ways: 32.5 s each, at 10 ms (3250, capped at 2500) and 30 ms (1083 -> 1000) an iteration
    assert sized([0.01, 0.03], [2500, 20000], 100.0) == [2500, 1000]
    assert sized([1.0], [5000], 10.0) == [100]  # never fewer than 100


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_gpu_attempts_share_a_bank_and_write_the_cache_entries_the_table_reads(tmp_path, monkeypatch):
    tiny = {"questions": "solves", "solve_bank": 64, "batch_size": 32, "questions_per_solve": 4, "width": 16,
            "depth": 1, "iterations": 200}
    attempts = (Attempt("gmm64", "tiny a", "", tiny), Attempt("gmm64", "tiny b", "", {**tiny, "lr": 5e-4}),
                Attempt("gmm64", "shipped", "", checkpoint="gmm64.pt"))
    main = gpu_sidenet_attempts.main
    monkeypatch.setattr(gpu_sidenet_attempts, "ATTEMPTS", attempts)
    with pytest.raises(SystemExit):
        main(["--names", "shipped", "--budget", "60", "--out", str(tmp_path / "x"), "--device", "cpu"])
    with pytest.raises(SystemExit):
        main(["--names", "nobody", "--budget", "60", "--out", str(tmp_path / "x"), "--device", "cpu"])
    out = tmp_path / "out"
    assert main(["--names", "tiny a", "tiny b", "--budget", "150", "--out", str(out), "--device", "cpu"]) == 0
    banks = [p for p in (tmp_path / "banks").iterdir() if p.is_dir()]
    assert len(banks) == 1 and len(list(banks[0].glob("batch_*.pt"))) == 2  # one bank, solved once, for both
    backbone = gpu_sidenet_attempts.settings_backbone("gmm64")
    for attempt in attempts[:2]:
        config = SideNetConfig.from_settings({**attempt.params(), "iterations": 200})  # the cap: gmm is quick
        name = gpu_sidenet_attempts.cache_path(Path("."), backbone, config).name
        saved = torch.load(out / name, weights_only=False)
        assert saved["stats"]["iterations"] == 200 and saved["stats"]["bank_batches_read"] == 2
    listing = (out / "commands.txt").read_text()
    assert listing.count("NVIDIA_TF32_OVERRIDE=0 python -m solverbench train-sidenet gmm") == 2
    assert "--lr 0.0005" in listing and "--iterations 200" in listing


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_scheme_floor_finds_each_solver_s_rows_on_both_grids(tmp_path, monkeypatch):
    """The floor table through the real engine (cheap solvers in place of the oracle, whose exact solves take minutes
    here): every row is found on the uniform and the shifted grid, with the goal line; bad options are refused."""
    main = scheme_floor.main
    for bad in (["--samples", "1"], ["--oracle-tol", "1e-5"]):
        with pytest.raises(SystemExit):
            main([*bad, "--results", str(tmp_path)])
    monkeypatch.setattr(scheme_floor, "solvers",
                        lambda tol: [("BA, SideNet off", "ba", {"sidenet": "off"}), ("Euler", "euler", {})])
    out = tmp_path / "floor.md"
    assert main(["--samples", "2", "--results", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "python -m research.sidenet.scheme_floor --samples 2" in text and "Goal, Euler at NFE 100" in text
    rows = [line for line in text.splitlines() if line.startswith(("| BA, SideNet off |", "| Euler |"))]
    assert len(rows) == 4 and not any("–" in row for row in rows)  # both grids, both NFEs, every cell found
    assert any("| shifted 0.5 |" in row for row in rows)


def test_question_errors_linear_yardstick_recovers_a_linear_relation():
    """The ridge fit of the linear row: an exactly linear target is recovered, the least penalty chosen."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    W = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    penalty = question_errors.ridge_penalty(features, features @ W)
    assert penalty == min(question_errors.PENALTIES)
    assert torch.allclose(question_errors.ridge_fit(features, features @ W, penalty * 200), W, atol=1e-3)
    onehot = question_errors.linear_features(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.tensor([1, 5]), 3)
    assert onehot.shape == (2, 4 + 4 + 3 + 1) and onehot[0, 9] == 1 and onehot[1, 10] == 1  # 5 clamped: the null


def test_reference_tolerance_measures_each_solve_against_both_references(capsys):
    """reference_tolerance.py: the loose reference's distance to the tight one, each solve's error against both (a
    reference against itself is 0), the paired difference; a --tight no tighter than the tables' is refused first."""
    from solverbench.guidance import Guidance
    from solverbench.metrics.trajectory import per_sample_rms
    from solverbench.reference import Tolerance, solve_reference
    gmm = GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)
    noise = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % 2
    loose, tight = (solve_reference(gmm, noise, labels, Guidance(scale=2.0), Tolerance(r, r), 64)
                    for r in (1e-3, 1e-9))
    gap = per_sample_rms(loose, tight).mean().item()
    assert gap > 1e-5
    lines = reference_tolerance.comparison({"loose": loose, "tight": tight}, loose, tight)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert list(rows) == ["the loose reference", "loose", "tight", "tight minus loose, paired"]
    def value(cell):
        return float(cell.split(" ± ")[0].strip("| "))
    assert value(rows["loose"][0]) == value(rows["tight"][1]) == 0
    for cell in (rows["the loose reference"][1], rows["loose"][1], rows["tight"][0], rows["tight minus loose, paired"][0]):
        assert value(cell) == pytest.approx(gap, rel=0.05)
    with pytest.raises(SystemExit) as refused:
        reference_tolerance.main(["--tight", "1e-4"])
    assert refused.value.code == 2 and "--tight must lie in (0, 1e-05)" in capsys.readouterr().err


def test_fit_gap_measures_ba_on_its_banks_own_trajectories(tmp_path):
    """fit_gap.py: the bank's samples start at its noises with its labels and end where an exact solve from them
    ends; BA's errors there are its per-sample distances from those ends; a SideNet with no bank, or one solved at
    another CFG, is refused in one line."""
    import solverbench as sb
    from solverbench.field import VelocityField
    from solverbench.guidance import Guidance
    from solverbench.reference import Tolerance, reference_trajectory
    from solverbench.solver import PrepareContext
    from solvers.ba.questions import SolveBank
    gmm = GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)
    config = SideNetConfig(width=16, depth=1, embed_dim=8, batch_size=16, iterations=2, questions="solves",
                           solve_nfe_min=2, solve_nfe_max=3, solve_bank=32, solve_guidance=2.0)
    bank = SolveBank(gmm, config, 32, torch.Generator().manual_seed(0), "cpu")
    samples = fit_gap.bank_endpoints(bank, torch.float32)
    assert samples.noise.shape == samples.exact.shape == (32, 4) and samples.noise.dtype == torch.float32
    field = VelocityField(gmm, samples.labels, Guidance(scale=2.0))
    exact = reference_trajectory(field, samples.noise, [1.0, 0.0], Tolerance(1e-8, 1e-8))[-1].to(torch.float32)
    assert torch.allclose(samples.exact, exact, atol=1e-4)  # the bank's end is the guided exact solve's
    raw, ema, stats = train_sidenet(gmm, config, progress=False)
    path = save_checkpoint(tmp_path / "banked.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(),
                           backbone=gmm)
    solver = sb.get_solver("ba", checkpoint=str(path))
    solver.prepare(gmm, PrepareContext())
    errors = fit_gap.ba_errors(solver, gmm, samples, 2.0, "uniform", 4)
    assert errors.shape == (32,) and (errors > 0).all()
    coarse = fit_gap.ba_errors(solver, gmm, samples, 2.0, "uniform", 1)
    assert coarse.mean() > errors.mean()  # one interval is worse than four: the distance is to the exact end
    with pytest.raises(ValueError, match="was not trained on a solve bank"):
        fit_gap.check_banked("chained.pt", SideNetConfig())
    with pytest.raises(ValueError, match="bank was solved at CFG 1, the table samples at CFG 2"):
        fit_gap.check_banked("plain.pt", SideNetConfig(questions="solves", solve_bank=32))
    fit_gap.check_banked("banked.pt", config)  # accepted
    with pytest.raises(SystemExit):
        fit_gap.main(["--checkpoint", str(tmp_path / "missing.pt")])


def test_table_samples_are_seed_0s_first_noises_with_the_guided_reference_ends():
    """table_setting.table_samples, which fit_gap.py and last_interval_bound.py measure against: seed 0's
    noises and labels, a prefix of any longer run's (so 200 samples are the first 200 of the table's 500), ending where
    the exact solve at the table's CFG and tolerance ends."""
    from solverbench.field import VelocityField
    from solverbench.guidance import Guidance
    from solverbench.noise import labels_for, noise_for
    from solverbench.reference import Tolerance, reference_trajectory
    gmm = GaussianMixture(dim=4, num_classes=3, components_per_class=2, std=0.3, mean_scale=1.5)
    few, more = table_setting.table_samples(gmm, 6), table_setting.table_samples(gmm, 16)
    assert torch.equal(few.noise, noise_for(0, range(6), gmm.sample_shape))
    assert torch.equal(few.labels, labels_for(0, range(6), 3)) and len(set(more.labels.tolist())) > 1
    assert torch.equal(more.noise[:6], few.noise) and torch.equal(more.labels[:6], few.labels)
    field = VelocityField(gmm, more.labels, Guidance(scale=2.0))
    tight = reference_trajectory(field, more.noise, [1.0, 0.0], Tolerance(1e-9, 1e-9))[-1].to(torch.float32)
    assert torch.allclose(more.exact, tight, atol=1e-3) and more.exact.dtype == torch.float32
    unguided = reference_trajectory(VelocityField(gmm, more.labels, Guidance(scale=1.0)), more.noise, [1.0, 0.0],
                                    Tolerance(1e-9, 1e-9))[-1].to(torch.float32)
    assert not torch.allclose(more.exact, unguided, atol=1e-2)  # the table's CFG 2, not the plain conditional flow
    noise, labels = table_setting.table_inputs(gmm, 6)
    assert torch.equal(noise, few.noise) and torch.equal(labels, few.labels)
