"""Issue 9: the command line explains itself, and every bad input or Ctrl-C is one line."""
import re
import textwrap

import pytest

from solverbench.cli import COMMANDS, constructor_parameters, main, settings_text


def stderr_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# -- (11) help and list -----------------------------------------------------------------------------


def test_top_level_help_lists_every_command_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert set(COMMANDS.names()) == {"run", "report", "list", "compare", "train-backbone", "train-sidenet", "reference-batch",
                                     "encode-prompts", "status"}
    for name in COMMANDS.names():
        entry = re.search(rf"^    {re.escape(name)}\s+(\S.*)$", out, re.MULTILINE) or re.search(
            rf"^    {re.escape(name)}\n\s+(\S.*)$", out, re.MULTILINE)
        assert entry, f"{name} is not listed with a description:\n{out}"


def test_module_docstring_names_every_harness_command():
    import solverbench.cli

    for name in COMMANDS.names():
        if COMMANDS.get(name).__module__ == "solverbench.cli":  # the others come from plugins (train-sidenet: ba)
            assert f"``{name}" in solverbench.cli.__doc__


def test_list_shows_descriptions_and_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in ("euler", "heun", "midpoint", "rk4", "reference", "ba", "gmm", "toy2d", "trajectory_error"):
        line = next(line for line in lines if line.split()[:1] == [name])
        assert len(line.split()) > 1 and "(no description)" not in line, line
    assert "params: rtol=1e-09, atol=1e-09, dtype='float64'" in out
    assert "params: dataset=None, checkpoint=None" in out
    assert "params: rule=None, nodes=2, a=None, sidenet=True, checkpoint=None\n" in out
    assert re.search(r"\n  ba-single .*\n +params: nodes=3, sidenet=True, checkpoint=None\n +settings: those of ba\n", out)
    assert "grid kind: lte; its settings: the grid's lte: section" in out
    assert "grid kind: inversion; its settings: the grid's inversion: section" in out
    assert "inverts (sb.invert, kind: inversion): yes" in out
    assert re.search(r"inverts \(sb.invert, kind: inversion\): no: a diffusers scheduler samples", out)
    assert "metric options:" in out


def test_parameters_follow_kwargs_up_the_class_tree():
    class Base:
        def __init__(self, *, b=2, **rest):
            pass

    class Child(Base):
        def __init__(self, a, c=3, **kwargs):
            super().__init__(**kwargs)

    class Described(Child):
        @classmethod
        def describe_settings(cls, full=False):
            return "x=1, y=2" if full else "x=1 (1 more: --all)"

    class DescribedOnce(Child):
        @staticmethod
        def describe_settings():
            return "anything else: x=1"

    assert constructor_parameters(Child) == (["a", "c=3", "b=2"], "rest")
    assert constructor_parameters(lambda ctx, scale=1.0: None) == (["ctx", "scale=1.0"], None)
    assert settings_text(Child, full=True) is None
    assert (settings_text(Described, full=False), settings_text(Described, full=True)) == ("x=1 (1 more: --all)",
                                                                                           "x=1, y=2")
    assert settings_text(DescribedOnce, full=True) == "anything else: x=1"


LISTED_PLUGIN = textwrap.dedent('''
    from solverbench import Solver, register_solver


    class Settled(Solver):
        """A solver with many settings."""

        def __init__(self, nodes=2, **settings):
            super().__init__()

        @classmethod
        def describe_settings(cls, full=False):
            if not full:
                return "width=8 (2 more: solverbench list NAME --all)"
            return "network:\\n  width=8: hidden width\\n  depth=3: blocks\\noptimisation:\\n  lr=0.001: learning rate"


    @register_solver("test-settled")
    class First(Settled):
        """The first of two solvers that share their settings."""


    @register_solver("test-settled-too")
    class Second(Settled):
        """The second of them."""
''')


def test_list_names_entries_and_shows_every_setting_with_all(tmp_path, capsys):
    plugin = tmp_path / "settled.py"
    plugin.write_text(LISTED_PLUGIN)
    assert main(["list", "test-settled", "test-settled-too", "gmm", "--plugins", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "solvers:" and "backbones:" in out and "metrics:" not in out and "euler" not in out
    assert re.search(r"\n  test-settled +The first of two.*\n +params: nodes=2\n +settings: width=8 \(2 more: "
                     r"solverbench list NAME --all\)\n", out)
    assert re.search(r"\n  test-settled-too +The second of them\.\n +params: nodes=2\n +settings: those of "
                     r"test-settled\n", out)
    assert out.splitlines()[-1] == "every setting of test-settled, test-settled-too: solverbench list NAME --all"
    assert main(["list", "test-settled", "test-settled-too", "--all", "--plugins", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\n +settings:\n +network:\n +width=8: hidden width\n +depth=3: blocks\n +optimisation:\n"
                     r" +lr=0.001: learning rate\n", out)
    assert "settings: those of test-settled" in out and "solverbench list NAME --all" not in out


def test_list_of_an_unknown_name_is_one_line_with_a_suggestion(capsys):
    assert main(["list", "eulr"]) == 2
    printed = capsys.readouterr()
    assert printed.err == "solverbench list: error: nothing registered is named 'eulr'; did you mean 'euler'?\n"
    assert printed.out == ""  # checked before anything is listed


def test_train_sidenet_help_shows_the_allowed_values(capsys):
    with pytest.raises(SystemExit):
        main(["train-sidenet", "gmm", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--output-head {gated,plain,poly}", "--data {auto,data,noise}", "--lr-schedule {constant,cosine}",
                   "--sim-nodes {1,2,3,4,5}"):
        assert option in out
    assert "chain_length" not in out and "K steps per chain" in out


def test_train_backbone_help_shows_choices_and_constraints(capsys):
    with pytest.raises(SystemExit):
        main(["train-backbone", "toy2d", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--dataset {checkerboard,moons,eight-gaussians,spirals}" in out
    assert "(default: 0.999; a number in [0, 1))" in out


# -- (6) meaningless training options are refused before any work ----------------------------------


@pytest.mark.parametrize("backbone, option, message", [
    ("digits", ["--steps", "-1"], r"training option 'steps' \(--steps\) must be an integer >= 1, got -1"),
    ("digits", ["--lr", "-5"], r"'lr' \(--lr\) must be a number > 0, got -5\.0"),
    ("digits", ["--width", "12"], r"'width' \(--width\) must be a positive multiple of 8"),
    ("toy2d", ["--ema-decay", "7"], r"'ema_decay' \(--ema-decay\) must be a number in \[0, 1\), got 7\.0"),
    ("toy2d", ["--batch-size", "0"], r"'batch_size' \(--batch-size\) must be an integer >= 1, got 0"),
    ("toy2d", ["--seed", "-2"], r"'seed' \(--seed\) must be an integer >= 0"),
    ("toy2d", ["--depth", "0"], r"'depth' \(--depth\) must be an integer >= 1"),
])
def test_train_backbone_refuses_meaningless_options(backbone, option, message, capsys, monkeypatch, tmp_path):
    from solverbench.registry import BACKBONES

    cls = BACKBONES.get(backbone)
    monkeypatch.setattr(cls, "train_backbone", classmethod(lambda *a, **k: pytest.fail("trained")))
    assert main(["train-backbone", backbone, *option, "--results", str(tmp_path)]) == 2
    line = stderr_line(capsys)
    assert line.startswith("solverbench train-backbone: error: ") and re.search(message, line), line


def test_training_configs_check_their_fields():
    from backbones.digits.backbone import DigitsTrainingConfig
    from backbones.flow_training import FlowTrainingConfig
    from backbones.toy2d.backbone import Toy2DTrainingConfig

    for cls in (FlowTrainingConfig, DigitsTrainingConfig, Toy2DTrainingConfig):
        cls()  # the defaults are valid
        with pytest.raises(ValueError, match="'steps'"):
            cls(steps=0)  # checked in the subclasses too, which redefine steps
        with pytest.raises(ValueError, match="'lr'"):
            cls(lr=float("nan"))
        with pytest.raises(ValueError, match="'steps'"):
            cls(steps=2.5)
    with pytest.raises(ValueError, match="'dataset' .* must be one of checkerboard, moons"):
        Toy2DTrainingConfig(dataset="circles")


@pytest.mark.parametrize("option, message", [
    (["--iterations", "-1"], "SideNet setting 'iterations' must be a positive integer, got -1"),
    (["--lr", "-5"], "SideNet setting 'lr' must be a positive number, got -5.0"),
    (["--ema-decay", "7"], r"SideNet setting 'ema_decay' must lie in \[0.0, 1.0\), got 7.0"),
    (["--batch-size", "0"], "SideNet setting 'batch_size' must be a positive integer, got 0"),
])
def test_train_sidenet_refuses_meaningless_settings_before_any_work(option, message, capsys, monkeypatch):
    import solverbench.backbone

    monkeypatch.setattr(solverbench.backbone, "resolve_backbone", lambda *a, **k: pytest.fail("built a backbone"))
    assert main(["train-sidenet", "gmm", *option]) == 2
    line = stderr_line(capsys)
    assert line.startswith("solverbench train-sidenet: error: ") and re.search(message, line), line


@pytest.mark.parametrize("argv, start", [
    (["train-sidenet", "gmm", "--data", "foo"], "solverbench train-sidenet gmm: error: argument --data: invalid choice"),
    (["train-sidenet", "gmm", "--output-head", "big"], "solverbench train-sidenet gmm: error: argument --output-head"),
    (["train-sidenet", "gmm", "--lr-schedule", "step"], "solverbench train-sidenet gmm: error: argument --lr-schedule"),
    (["train-backbone", "toy2d", "--dataset", "circles"], "solverbench train-backbone toy2d: error: argument --dataset"),
    (["train-backbone", "toy2d", "--steps", "many"], "solverbench train-backbone toy2d: error: argument --steps"),
    (["frobnicate"], "solverbench: error: argument COMMAND: invalid choice: 'frobnicate'"),
    (["run"], "solverbench run: error: the following arguments are required: grid"),
])
def test_bad_options_are_one_line(argv, start, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    line = stderr_line(capsys)
    assert line.startswith(start) and line.endswith("--help)"), line


def test_train_sidenet_bad_backbone_params(capsys):
    assert main(["train-sidenet", "gmm", "--backbone-params", "{preset: [", "--iterations", "3"]) == 2
    assert stderr_line(capsys).startswith("solverbench train-sidenet: error: --backbone-params is not YAML")


# -- (3) Ctrl-C and (7) errors out of run: one line ------------------------------------------------


def interrupt_run(monkeypatch, *args):
    import solverbench.grid
    import solverbench.engine

    def run_grid(*a, **k):
        raise KeyboardInterrupt(*args)

    monkeypatch.setattr(solverbench.grid, "load_grid", lambda path: object())
    monkeypatch.setattr(solverbench.engine, "run_grid", run_grid)


def test_ctrl_c_with_the_runner_message(capsys, monkeypatch):
    interrupt_run(monkeypatch, "interrupted: 12 finished cells kept in results/quick/results.parquet")
    assert main(["run", "configs/quick.yaml"]) == 130
    assert stderr_line(capsys) == ("solverbench run: interrupted: 12 finished cells kept in "
                                   "results/quick/results.parquet")


def test_ctrl_c_without_a_message(capsys, monkeypatch):
    interrupt_run(monkeypatch)
    assert main(["run", "configs/quick.yaml"]) == 130
    assert stderr_line(capsys) == "solverbench run: interrupted"


@pytest.mark.parametrize("error", [ValueError("checkpoint file 'x.pt' is empty (0 bytes)"),
                                   IsADirectoryError("results is a folder")])
def test_errors_out_of_run_are_one_line(error, capsys, monkeypatch):
    import solverbench.grid
    import solverbench.engine

    def run_grid(*a, **k):
        raise error

    monkeypatch.setattr(solverbench.grid, "load_grid", lambda path: object())
    monkeypatch.setattr(solverbench.engine, "run_grid", run_grid)
    assert main(["run", "configs/quick.yaml"]) == 2
    assert stderr_line(capsys) == f"solverbench run: error: {error}"
    monkeypatch.setenv("SOLVERBENCH_TRACEBACK", "1")
    with pytest.raises(type(error)):
        main(["run", "configs/quick.yaml"])


def test_a_bad_checkpoint_in_a_command_is_one_line(tmp_path, capsys):
    folder = tmp_path / "weights.pt"
    folder.mkdir()
    assert main(["train-sidenet", "toy2d", "--backbone-params", f"{{checkpoint: {folder}}}"]) == 2
    line = stderr_line(capsys)
    assert line == f"solverbench train-sidenet: error: checkpoint file {str(folder)!r} is a folder, not a file; " \
                   "give the checkpoint file inside it"


def test_the_process_entry_point_freezes_what_the_command_made_and_exits_with_its_status(monkeypatch, capsys):
    """``python -m solverbench`` ends by freezing the garbage collector's objects (so the interpreter's last
    collections skip them) and then exits with the command's status; ``main`` itself, which programs and
    these tests call, freezes nothing at its end."""
    import gc
    import runpy
    import sys

    import solverbench.cli as cli

    events = []
    monkeypatch.setattr(cli, "main", lambda: events.append("main") or 2)
    monkeypatch.setattr(gc, "freeze", lambda: events.append("freeze"))
    monkeypatch.setattr(sys, "argv", ["solverbench", "list"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("solverbench", run_name="__main__")
    assert exit_.value.code == 2 and events == ["main", "freeze"]
