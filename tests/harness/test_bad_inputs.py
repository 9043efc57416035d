"""Every bad input is refused before any work, in one line naming what is wrong and what is allowed.

Two tables: grid files (YAML text, run through ``solverbench run``: exit status 2, one line
``solverbench run: error: ...`` on stderr, nothing written to the results folder) and Python
API calls (``sb.sample`` / ``sb.invert``: the exception type and its one-line message).  A case
is one bad input; its id names what is wrong.  In the grid texts ``@ROOT@`` is the repository
and the files of ``bad_files`` lie next to the grid file.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import solverbench as sb
from solverbench import registry
from solverbench.cli import main
from solverbench.solver import IncompleteSolver, Solver

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = "@ROOT@/solvers/ba/checkpoints"

GMM = "backbones: [{name: gmm, params: {preset: gmm2d}}]\nnum_samples: 8\n"
TOY = "backbones: [{name: toy2d, params: {dataset: moons}}]\nnum_samples: 8\n"
EULER = "solvers: [euler]\n"
NFE = "nfe: [4]\n"
BASE = GMM + EULER + NFE


def ba(params: str) -> str:
    return GMM + NFE + f"solvers: [{{name: ba, params: {params}}}]\n"


PLUGIN_WITHOUT_SOLVE = '''
from solverbench import Solver, register_solver

@register_solver("half-done")
class HalfDone(Solver):
    """A solver that never got its solve()."""
'''


def bad_files(folder: Path) -> None:
    """The files the grid texts name: unreadable checkpoints, broken plugins, an untrained SideNet for gmm2d."""
    from solvers.ba.checkpoint import save_checkpoint
    from solvers.ba.config import SideNetConfig
    from solvers.ba.sidenet import sidenet_for

    (folder / "junk.pt").write_bytes(bytes(range(256)) * 4)
    (folder / "empty.pt").write_bytes(b"")
    (folder / "afolder").mkdir()
    torch.save(torch.nn.Linear(2, 2), folder / "module.pt")
    torch.save({"format": "solverbench-sidenet/1", "backbone": {}}, folder / "no_spec.pt")  # the format, half there
    (folder / "syntax.py").write_text("def broken(:\n    pass\n")
    (folder / "raises.py").write_text("x = 1\nraise ZeroDivisionError('plugin says no')\n")
    (folder / "half_done.py").write_text(PLUGIN_WITHOUT_SOLVE)
    gmm2d = sb.resolve_backbone("gmm", preset="gmm2d")
    config = SideNetConfig.from_settings({})
    net = sidenet_for(gmm2d, config.network)
    save_checkpoint(folder / "gmm2d.pt", raw=net, ema=net, config=config, stats={}, backbone=gmm2d)


GRID_CASES = [
    # the file itself
    pytest.param("backbones: [gmm\n", ["is not valid YAML"], id="not-yaml"),
    pytest.param("- gmm\n- euler\n", ["a grid must be a mapping", "got list"], id="a-list-not-a-mapping"),
    pytest.param("", ["a grid must be a mapping", "got NoneType"], id="empty-file"),
    pytest.param(BASE + "nfe: [2]\n", ["key 'nfe' is given twice", "lines 4 and 5"], id="duplicate-top-level-key"),
    pytest.param("backbones: [{name: gmm, params: {preset: gmm2d, preset: gmm64}}]\n" + EULER + NFE,
                 ["key 'preset' is given twice"], id="duplicate-nested-key"),
    pytest.param(BASE + "sampels: 3\n", ["grid key 'sampels'", "unknown key; allowed keys"], id="unknown-key"),
    pytest.param(BASE + "kind: sweeep\n", ["grid key 'kind'", "sweep"], id="unknown-kind"),
    pytest.param(BASE + "name: two words\n", ["grid key 'name'", "letters, digits"], id="bad-grid-name"),
    pytest.param(BASE + "lte: {step_sizes: [0.1]}\n", ["grid key 'lte'", "only a grid of kind lte"],
                 id="lte-settings-in-a-sweep"),
    # backbones
    pytest.param(EULER + NFE, ["grid key 'backbones'", "required"], id="no-backbones"),
    pytest.param("backbones: [gmmm]\n" + EULER + NFE, ["'backbones[0].name'", "known backbones: ", "digits, gmm, sit"],
                 id="misspelled-backbone"),
    pytest.param("backbones: [{params: {}}]\n" + EULER + NFE, ["'backbones[0]'", "a 'name' key"],
                 id="backbone-without-name"),
    pytest.param("backbones: [{name: gmm, params: {preset: gmm3d}}]\n" + EULER + NFE,
                 ["'backbones[0].params'", "unknown gmm preset 'gmm3d'"], id="unknown-backbone-preset"),
    pytest.param("backbones: [{name: gmm, params: {colour: 3}}]\n" + EULER + NFE,
                 ["'backbones[0].params'", "colour"], id="unknown-backbone-param"),
    pytest.param("backbones: [{name: toy2d, params: {checkpoint: nothere.pt}}]\n" + EULER + NFE,
                 ["'backbones[0].params.checkpoint'", "no such file or folder"], id="backbone-checkpoint-missing"),
    pytest.param("backbones: [{name: digits, params: {checkpoint: junk.pt}}]\n" + EULER + NFE,
                 ["'backbones[0].params'", "is not a file torch.save wrote"], id="backbone-checkpoint-junk"),
    pytest.param("backbones: [{name: toy2d, params: {checkpoint: afolder}}]\n" + EULER + NFE,
                 ["'backbones[0].params'", "is a folder"], id="backbone-checkpoint-folder"),
    pytest.param("backbones: [{name: toy2d, params: {checkpoint: empty.pt}}]\n" + EULER + NFE,
                 ["'backbones[0].params'", "is empty (0 bytes)"], id="backbone-checkpoint-empty"),
    pytest.param("backbones: [{name: toy2d, params: {checkpoint: module.pt}}]\n" + EULER + NFE,
                 ["'backbones[0].params'", "holds a pickled module"], id="backbone-checkpoint-pickled-module"),
    # solvers and their budgets
    pytest.param(GMM + NFE, ["grid key 'solvers'", "required"], id="no-solvers"),
    pytest.param(GMM + NFE + "solvers: [eulr]\n", ["'solvers[0].name'", "known solvers"], id="misspelled-solver"),
    pytest.param(GMM + NFE + "solvers: [{name: heun, params: {order: 3}}]\n",
                 ["'solvers[0].params'", "heun accepts the parameters"], id="unknown-solver-param"),
    pytest.param(GMM + NFE + "solvers: [{name: euler, nfee: [3]}]\n", ["'solvers[0]'", "allowed keys"],
                 id="solver-entry-unknown-key"),
    pytest.param(GMM + NFE + "solvers: [{name: euler, backbones: [sit]}]\n",
                 ["'solvers[0].backbones'", "the grid's backbones are: gmm"], id="solver-on-a-backbone-not-in-the-grid"),
    pytest.param(GMM + "nfe: [4]\nsolvers: [{name: diffusers, params: {scheduler: FlowMatchHeunDiscreteScheduler}}]\n",
                 ["grid key 'nfe'", "cannot spend a budget of 4", "give 3 or 5"], id="budget-a-heun-scheduler-cannot-spend"),
    pytest.param(GMM + "solvers: [{name: euler, nfe: [0]}]\n", ["'solvers[0].nfe'"], id="solver-own-nfe-zero"),
    pytest.param(GMM + EULER, ["grid key 'nfe'", "required for solver 'euler'"], id="no-nfe"),
    pytest.param(GMM + EULER + "nfe: [0]\n", ["grid key 'nfe'", "positive integer"], id="nfe-zero"),
    pytest.param(GMM + EULER + "nfe: [2.5]\n", ["grid key 'nfe'", "positive integer"], id="nfe-fraction"),
    pytest.param(GMM + EULER + "nfe: [true]\n", ["grid key 'nfe'", "positive integer"], id="nfe-boolean"),
    pytest.param(GMM + EULER + "nfe: ['5']\n", ["grid key 'nfe'", "positive integer"], id="nfe-string"),
    pytest.param(GMM + EULER + "nfe: []\n", ["grid key 'nfe'", "positive integer"], id="nfe-empty-list"),
    pytest.param(GMM + EULER + "nfe: [1000000000000]\n", ["grid key 'nfe'", "at most 1000000 intervals"],
                 id="nfe-absurd"),
    # seeds, sample counts
    pytest.param(BASE + "seeds: [-1]\n", ["grid key 'seeds'", "non-negative integers"], id="seed-negative"),
    pytest.param(BASE + "seeds: [1.5]\n", ["grid key 'seeds'"], id="seed-fraction"),
    pytest.param(BASE + "seeds: []\n", ["grid key 'seeds'"], id="seeds-empty"),
    pytest.param(BASE + "seeds: [one]\n", ["grid key 'seeds'"], id="seed-word"),
    pytest.param(GMM.replace("8", "0") + EULER + NFE, ["grid key 'num_samples'"], id="num-samples-zero"),
    pytest.param(GMM.replace("8", "[8, 16]") + EULER + NFE, ["grid key 'num_samples'", "a single positive integer"],
                 id="num-samples-list"),
    pytest.param(BASE + "batch_size: -1\n", ["grid key 'batch_size'"], id="batch-size-negative"),
    pytest.param(BASE + "batch_size: 2.5\n", ["grid key 'batch_size'"], id="batch-size-fraction"),
    pytest.param(BASE + "save_samples: -1\n", ["grid key 'save_samples'"], id="save-samples-negative"),
    # guidance and labels
    pytest.param(BASE + "guidance: {scale: -1}\n", ["'guidance.scale'", "non-negative"], id="guidance-scale-negative"),
    pytest.param(BASE + "guidance: {scale: big}\n", ["'guidance.scale'"], id="guidance-scale-word"),
    pytest.param(TOY + EULER + NFE + "guidance: {scale: 2.0}\n", ["'guidance.scale'", "has no null label"],
                 id="guidance-on-an-unconditional-backbone"),
    pytest.param(BASE + "guidance: {scale: 2.0, interval: [0.5, 0.2]}\n", ["'guidance.interval'"],
                 id="guidance-interval-reversed"),
    pytest.param(BASE + "guidance: {scale: 2.0, interval: [0, 1, 2]}\n", ["'guidance.interval'"],
                 id="guidance-interval-three-numbers"),
    pytest.param(BASE + "guidance: {scal: 2.0}\n", ["grid key 'guidance'", "allowed: a mapping with the keys"],
                 id="guidance-unknown-key"),
    pytest.param(BASE + "guidance: {scale: 2.0, rule: nope}\n", ["grid key 'guidance'", "rule must be one of"],
                 id="guidance-unknown-rule"),
    pytest.param(BASE + "guidance: {scale: 2.0, channels: 0}\n", ["grid key 'guidance'", "positive integer"],
                 id="guidance-channels-zero"),
    pytest.param(BASE + "guidance: {scale: 2.0, channels: 5}\n",
                 ["'guidance.channels'", "backbone 'gmm'", "do not fit samples of shape (2,)", "give 1 to 2"],
                 id="guidance-channels-beyond-the-sample-shape"),
    pytest.param(BASE + "guidance: {scale: {2: 1.5}}\n", ["'guidance.scale'", "missing: 4"],
                 id="guidance-scale-per-nfe-missing-a-budget"),
    pytest.param(BASE + "labels: sorted\n", ["grid key 'labels'", "uniform", "balanced"], id="labels-unknown-rule"),
    pytest.param(TOY + EULER + NFE + "labels: balanced\n", ["grid key 'labels'", "unconditional"],
                 id="labels-balanced-on-an-unconditional-backbone"),
    # device and precision
    pytest.param(BASE + "device: gpu\n", ["grid key 'device'", "cpu, cuda"], id="device-unknown"),
    pytest.param(BASE + "device: cuda:x\n", ["grid key 'device'"], id="device-bad-cuda-index"),
    pytest.param(BASE + "dtype: float8\n", ["grid key 'dtype'", "float32, float64, bfloat16, float16"],
                 id="dtype-unknown"),
    pytest.param(BASE + "dtype: float16\n", ["grid key 'dtype'", "backbone 'gmm' has no network to run in float16"],
                 id="dtype-float16-without-a-network"),
    pytest.param(BASE + "dtype: bfloat16\n", ["grid key 'dtype'", "no network to run in bfloat16"],
                 id="dtype-bfloat16-without-a-network"),
    pytest.param(BASE + "tf32: yes please\n", ["grid key 'tf32'", "true or false"], id="tf32-not-a-boolean"),
    pytest.param(BASE + "compile: 1\n", ["grid key 'compile'", "true or false"], id="compile-not-a-boolean"),
    # metrics and the reference
    pytest.param(BASE + "metrics: [trajectory_eror]\n", ["'metrics[0]'", "known metrics"], id="misspelled-metric"),
    pytest.param(BASE + "metrics: [fid]\n", ["'metrics[0]'", "no cell of this grid can compute it"],
                 id="metric-no-cell-can-compute"),
    pytest.param(BASE + "metric_options: {colour: 1}\n", ["'metric_options.colour'"], id="metric-option-unknown"),
    pytest.param(BASE + "reference: {rtol: -1}\n", ["grid key 'reference'", "positive number"],
                 id="reference-tolerance-negative"),
    pytest.param(BASE + "reference: {atol: 0}\n", ["grid key 'reference'"], id="reference-tolerance-zero"),
    pytest.param(BASE + "reference: {rtol: 1e-6, tol: 3}\n", ["grid key 'reference'"], id="reference-unknown-key"),
    # schedules
    pytest.param(BASE + "schedule: linearr\n", ["'schedule[0]'", "known schedules"], id="misspelled-schedule"),
    pytest.param(BASE + "schedule: {name: gits, fine: 3}\n", ["'schedule[0]'", "unknown setting(s) fine"],
                 id="gits-unknown-setting"),
    pytest.param(BASE + "schedule: {name: gits, fine_steps: 2}\n",
                 ["'schedule[0]'", "euler at NFE 4", "4 intervals cannot be chosen from a fine grid of 2"],
                 id="gits-fine-grid-below-the-budget"),
    pytest.param(GMM + NFE + "solvers: [{name: euler, schedule: {name: gits, fine_steps: 3}}]\n",
                 ["'solvers[0].schedule[0]'", "fine grid of 3"], id="gits-fine-grid-below-a-solver-s-budget"),
    pytest.param(GMM + "solvers: [reference]\nschedule: {name: gits}\n", ["'schedule[0]'", "adaptive"],
                 id="learned-schedule-for-an-adaptive-solver"),
    # export
    pytest.param(BASE + "export: {npz: true}\n", ["'export.npz'", "backbone(s) 'gmm' make none (no to_images)"],
                 id="npz-export-without-images"),
    pytest.param(BASE + "export: {npz: yes please}\n", ["'export.npz'", "true or false"], id="npz-export-not-a-boolean"),
    pytest.param(BASE + "export: {zip: true}\n", ["grid key 'export'"], id="export-unknown-key"),
    # plugins
    pytest.param(BASE + "plugins: [nothere.py]\n", ["'plugins[0]'", "no such file"], id="plugin-missing"),
    pytest.param(BASE + "plugins: [afolder]\n", ["'plugins[0]'"], id="plugin-a-folder"),
    pytest.param(BASE + "plugins: [syntax.py]\n", ["syntax.py", "has a syntax error at line 1"], id="plugin-syntax-error"),
    pytest.param(BASE + "plugins: [raises.py]\n", ["raises.py", "raised ZeroDivisionError at line 2", "plugin says no"],
                 id="plugin-raises"),
    pytest.param(GMM + NFE + "plugins: [half_done.py]\nsolvers: [half-done]\n",
                 ["'solvers[0].name'", "'half-done'", "half_done.py", "does not implement solve"],
                 id="plugin-solver-without-solve"),
    # the BA solvers' SideNet files, loaded against each backbone while the grid is read
    pytest.param(ba("{checkpoint: nothere.pt}"), ["'solvers[0].params.checkpoint'", "no such file or folder"],
                 id="sidenet-checkpoint-missing"),
    pytest.param(ba("{checkpoint: junk.pt}"), ["'solvers[0].params.checkpoint'", "is not a file torch.save wrote"],
                 id="sidenet-checkpoint-junk"),
    pytest.param(ba("{checkpoint: afolder}"), ["'solvers[0].params.checkpoint'", "is a folder"],
                 id="sidenet-checkpoint-folder"),
    pytest.param(ba("{checkpoint: empty.pt}"), ["'solvers[0].params.checkpoint'", "is empty"],
                 id="sidenet-checkpoint-empty"),
    pytest.param(ba("{checkpoint: module.pt}"), ["'solvers[0].params.checkpoint'", "holds a pickled module"],
                 id="sidenet-checkpoint-pickled-module"),
    pytest.param(ba("{checkpoint: no_spec.pt}"), ["'solvers[0].params.checkpoint'", "cannot be loaded: KeyError: 'spec'"],
                 id="sidenet-checkpoint-of-the-format-missing-its-network"),
    pytest.param(ba(f"{{checkpoint: {SHIPPED}/gmm64.pt}}"),
                 ["'solvers[0].params.checkpoint'", "on backbone 'gmm'", "trained for another backbone", "dim: 64 != 2"],
                 id="sidenet-checkpoint-for-another-backbone"),
    pytest.param(ba("{checkpoint: gmm2d.pt, architecture: official}"),
                 ["'solvers[0].params.checkpoint'", "holds a SideNet of the project architecture"],
                 id="sidenet-checkpoint-of-another-architecture"),
    pytest.param(ba("{init_from: nothere.pt}"), ["'solvers[0].params.init_from'", "no such file or folder"],
                 id="sidenet-init-from-missing"),
    pytest.param(ba("{init_from: junk.pt}"), ["'solvers[0].params.init_from'", "is not a file torch.save wrote"],
                 id="sidenet-init-from-junk"),
    pytest.param(ba(f"{{init_from: {SHIPPED}/gmm64.pt}}"),
                 ["'solvers[0].params.init_from'", "trained for another backbone"], id="sidenet-init-from-another-backbone"),
    pytest.param(ba("{init_from: gmm2d.pt, width: 48}"),
                 ["'solvers[0].params.init_from'", "holds another SideNet than these settings build", "width"],
                 id="sidenet-init-from-of-other-settings"),
    pytest.param(GMM + NFE + "solvers: [ba]\nsolver_settings: {ba: {init_from: nothere.pt}}\n",
                 ["'solver_settings.ba.init_from'", "no checkpoint at", "nothere.pt"],
                 id="sidenet-init-from-missing-in-the-family-settings"),
    pytest.param(GMM + NFE + "solvers: [ba]\nsolver_settings: {ba: {iteration: 3}}\n",
                 ["'solver_settings.ba'", "'iteration'"], id="sidenet-setting-misspelled"),
    pytest.param(BASE + "solver_settings: {ba: {iterations: 3}}\n",
                 ["'solver_settings.ba'", "no solver of this grid reads 'ba' settings"], id="settings-of-an-absent-family"),
    pytest.param(ba("{iteration: 3}"), ["'solvers[0].params'", "'iteration'"], id="sidenet-param-misspelled"),
    pytest.param(TOY + NFE + "solvers: [{name: ba, params: {questions: solves, solve_guidance: 2.0}}]\n",
                 ["'solvers[0].params.solve_guidance'", "has no null label"],
                 id="sidenet-guided-questions-on-an-unconditional-backbone"),
]


@pytest.fixture(autouse=True)
def own_registries(monkeypatch):
    """What a plugin file registers here is gone after the test (its solver must not reach other tests)."""
    for reg in (registry.SOLVERS, registry.BACKBONES, registry.METRICS, registry.STUDIES, registry.SCHEDULES):
        reg.names()  # the built-in plugins, loaded before the copy
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))


def refused_run(tmp_path: Path, capsys, grid: Path, *options: str) -> str:
    """``solverbench run GRID``: exit status 2, one line on stderr, nothing in the results folder; the line."""
    results = tmp_path / "results"
    status = main(["run", str(grid), "--results", str(results), "--no-progress", *options])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("solverbench run: error: "), err
    written = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert not written, f"work was done: {written}"
    return lines[0]


@pytest.mark.parametrize("text, fragments", GRID_CASES)
def test_a_bad_grid_file_is_one_line_and_no_work(tmp_path, capsys, text, fragments):
    bad_files(tmp_path)
    grid = tmp_path / "g.yaml"
    grid.write_text(text.replace("@ROOT@", str(ROOT)))
    line = refused_run(tmp_path, capsys, grid)
    for fragment in fragments:
        assert fragment in line, line


def test_npz_export_asked_on_the_command_line_without_images_is_one_line_and_no_work(tmp_path, capsys):
    (tmp_path / "g.yaml").write_text(BASE)
    line = refused_run(tmp_path, capsys, tmp_path / "g.yaml", "--export-npz")
    assert "--export-npz" in line and "backbone(s) 'gmm' make none (no to_images)" in line


@pytest.mark.parametrize("path, fragment", [
    pytest.param("nothere.yaml", "does not exist", id="grid-file-missing"),
    pytest.param("afolder", "is a folder; give a grid file", id="grid-file-a-folder"),
])
def test_a_grid_path_that_is_no_grid_file_is_one_line(tmp_path, capsys, path, fragment):
    (tmp_path / "afolder").mkdir()
    assert fragment in refused_run(tmp_path, capsys, tmp_path / path)


def test_the_sidenet_loaded_while_the_grid_is_read_is_the_one_the_cells_use(tmp_path):
    """The check loads the checkpoint once, and ``prepare`` takes that SideNet rather than reading the file again."""
    from solverbench.grid import load_grid
    from solverbench.solver import PrepareContext

    bad_files(tmp_path)
    (tmp_path / "g.yaml").write_text(ba("{checkpoint: gmm2d.pt}"))
    grid = load_grid(tmp_path / "g.yaml")
    solver, backbone = grid.solvers[0].instance, grid.backbones[0].instance
    (checked,) = solver.checked.values()
    solver.prepare(backbone, PrepareContext())
    assert solver.loaded is checked and not solver.checked


# -- the Python API ----------------------------------------------------------------------------------------

class Float32Net(torch.nn.Module):
    """A backbone with a float32 network: v = W x."""

    sample_shape, num_classes, null_label = (2,), None, None

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x, t, y=None):
        return self.lin(x)


class WithoutSolve(Solver):
    """A solver that never got its solve()."""


def gmm():
    return sb.resolve_backbone("gmm", preset="gmm2d")


def noise(n=4, dim=2, dtype=torch.float32):
    return torch.randn(n, dim, dtype=torch.float64).to(dtype)


def with_nan(x, rows=(1,)):
    x = x.clone()
    for r in rows:
        x[r, 0] = float("nan")
    return x


def with_inf(x):
    x = x.clone()
    x[0, 1] = float("inf")
    return x


API_CASES = [
    pytest.param(lambda: sb.sample(gmm(), "euler", with_nan(noise(), (0, 2)), nfe=2), ValueError,
                 ["noise: 2 of 4 samples are not finite"], id="nan-noise"),
    pytest.param(lambda: sb.sample(gmm(), "euler", with_inf(noise()), nfe=2), ValueError,
                 ["noise: 1 of 4 samples are not finite"], id="infinite-noise"),
    pytest.param(lambda: sb.invert(gmm(), "euler", with_nan(noise()), nfe=2), ValueError,
                 ["x0: 1 of 4 samples are not finite"], id="nan-data-to-invert"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise().long(), nfe=2), TypeError,
                 ["noise has dtype int64", "floating-point"], id="integer-noise"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise().bool(), nfe=2), TypeError,
                 ["noise has dtype bool"], id="boolean-noise"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise().to(torch.complex64), nfe=2), TypeError,
                 ["noise has dtype complex64"], id="complex-noise"),
    pytest.param(lambda: sb.sample(Float32Net(), "euler", noise(dtype=torch.float16), nfe=2), TypeError,
                 ["noise has dtype float16", "weights are float32"], id="float16-noise-for-a-float32-network"),
    pytest.param(lambda: sb.sample(Float32Net(), "euler", noise(dtype=torch.float64), nfe=2), TypeError,
                 ["noise has dtype float64", "weights are float32"], id="float64-noise-for-a-float32-network"),
    pytest.param(lambda: sb.invert(Float32Net(), "euler", noise(dtype=torch.bfloat16), nfe=2), TypeError,
                 ["x0 has dtype bfloat16", "weights are float32"], id="bfloat16-data-to-invert"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), nfe=10**12), ValueError,
                 ["budget of 1000000000000 NFE", "at most 1000000 intervals"], id="absurd-nfe"),
    pytest.param(lambda: sb.invert(gmm(), "heun", noise(), nfe=10**9), ValueError,
                 ["at most 1000000 intervals"], id="absurd-nfe-to-invert"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), nfe=0), ValueError, ["at least 1"], id="nfe-zero"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), nfe=2.5), TypeError, ["whole number"], id="nfe-fraction"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), nfe="4"), TypeError, ["whole number"], id="nfe-string"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise()), ValueError, ["give an NFE budget"], id="no-budget"),
    pytest.param(lambda: sb.sample(gmm(), "reference", noise(), nfe=4), ValueError, ["is adaptive"],
                 id="budget-for-an-adaptive-solver"),
    pytest.param(lambda: sb.sample(gmm(), sb.get_solver("diffusers", scheduler="FlowMatchHeunDiscreteScheduler"),
                                   noise(), nfe=4), ValueError, ["cannot spend a budget of 4", "give 3 or 5"],
                 id="budget-a-heun-scheduler-cannot-spend"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), labels=torch.zeros(4, dtype=torch.long), nfe=2,
                                   guidance=sb.Guidance(2.0, channels=5)), ValueError,
                 ["guidance channels 5 do not fit samples of shape (2,)", "give 1 to 2"], id="guidance-channels"),
    pytest.param(lambda: sb.invert(gmm(), "euler", noise(), labels=torch.zeros(4, dtype=torch.long), nfe=2,
                                   guidance=sb.Guidance(2.0, channels=3)), ValueError,
                 ["guidance channels 3 do not fit"], id="guidance-channels-to-invert"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), cfg_scale=-1.0, nfe=2), ValueError,
                 ["cfg_scale must be a number >= 0"], id="negative-cfg-scale"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), cfg_interval=(0.8, 0.2), nfe=2), ValueError,
                 ["cfg_interval must satisfy"], id="reversed-cfg-interval"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), cfg_scale=2.0, guidance=sb.Guidance(2.0), nfe=2),
                 ValueError, ["not both"], id="guidance-given-twice"),
    pytest.param(lambda: sb.sample(Float32Net(), "euler", noise(), torch.zeros(4, dtype=torch.long), nfe=2),
                 ValueError, ["unconditional", "give no labels"], id="labels-for-an-unconditional-backbone"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), torch.zeros(4), nfe=2), TypeError,
                 ["labels must be integer class indices", "float32"], id="float-labels"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), torch.full((4,), 7), nfe=2), ValueError,
                 ["labels must lie in [0, 4)", "got 7"], id="labels-out-of-range"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), torch.zeros(3, dtype=torch.long), nfe=2), ValueError,
                 ["3 labels for 4 noise samples"], id="labels-of-another-count"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(dim=3), nfe=2), ValueError,
                 ["noise has sample shape (3,), the backbone expects (2,)"], id="noise-of-another-shape"),
    pytest.param(lambda: sb.sample(gmm(), "euler", [[0.0, 1.0]], nfe=2), TypeError,
                 ["noise must be a torch.Tensor"], id="noise-not-a-tensor"),
    pytest.param(lambda: sb.sample(gmm(), "eulerr", noise(), nfe=2), KeyError,
                 ["unknown solver 'eulerr'", "Did you mean 'euler'"], id="misspelled-solver"),
    pytest.param(lambda: sb.sample("gmmm", "euler", noise(), nfe=2), KeyError,
                 ["unknown backbone 'gmmm'"], id="misspelled-backbone"),
    pytest.param(lambda: sb.sample(gmm(), WithoutSolve(), noise(), nfe=2), IncompleteSolver,
                 ["solver class WithoutSolve", "test_bad_inputs.py", "does not implement solve"], id="solver-without-solve"),
    pytest.param(lambda: sb.invert(gmm(), "diffusers", noise(), nfe=2), sb.NotInvertible,
                 ["cannot invert"], id="solver-that-cannot-invert"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), time_grid=[1.0, 0.5]), ValueError,
                 ["partial=True"], id="grid-stopping-early-without-partial"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), time_grid=[1.0, 0.2, 0.5, 0.0]), ValueError,
                 ["decreasing"], id="grid-not-decreasing"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), nfe=3, time_grid=[1.0, 0.5, 0.0]), ValueError,
                 ["has 2"], id="grid-with-other-intervals-than-the-budget"),
    pytest.param(lambda: sb.sample(gmm(), "euler", noise(), nfe=2, partial=True), ValueError,
                 ["partial=True applies to an explicit time_grid"], id="partial-without-a-grid"),
]


@pytest.mark.parametrize("call, error, fragments", API_CASES)
def test_a_bad_python_call_is_one_line(call, error, fragments):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_float16_noise_on_a_backbone_without_a_network_is_a_float16_solve():
    """gmm computes its velocity in float64 and hands back the state's dtype: the documented rule."""
    result = sb.sample(gmm(), "euler", noise(dtype=torch.float16), nfe=2)
    assert result.samples.dtype == torch.float16 and torch.isfinite(result.samples).all()


def test_the_reference_solver_takes_any_floating_noise_on_a_network():
    result = sb.sample(Float32Net(), "reference", noise(dtype=torch.float64))
    assert result.samples.dtype == torch.float64 and result.plan.adaptive
