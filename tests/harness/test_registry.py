"""Registries: lookups, helpful errors, `list`, and plugin files loaded by a grid."""
import textwrap

import pandas as pd
import pytest

import solverbench as sb
from solverbench.cli import main
from solverbench.registry import UnknownNameError


def test_builtins_are_registered():
    assert {"euler", "heun", "midpoint", "rk4", "reference"} <= set(sb.SOLVERS.names())
    assert "gmm" in sb.BACKBONES.names()
    assert {"trajectory_error", "sliced_wasserstein", "log_likelihood"} <= set(sb.METRICS.names())


@pytest.mark.parametrize("registry", [sb.SOLVERS, sb.BACKBONES, sb.METRICS])
def test_unknown_name_lists_the_known_ones(registry):
    with pytest.raises(UnknownNameError) as err:
        registry.get("no-such-thing")
    message = str(err.value)
    assert "no-such-thing" in message
    for name in registry.names():
        assert name in message


def test_unknown_solver_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'euler'"):
        sb.get_solver("eulr")


def test_a_declared_name_is_imported_when_first_looked_up():
    from solverbench.registry import Registry

    imported = []

    def load():
        imported.append("late")
        return lambda: "built"

    registry = Registry("thing", load_builtins=lambda: None)
    registry.declare("late", load)
    assert registry.names() == ["late"] and "late" in registry and imported == []
    factory = registry.get("late")
    assert factory() == "built" and registry.get("late") is factory and imported == ["late"]


def test_plugin_commands_are_known_before_their_modules_are_imported():
    from importlib.metadata import entry_points

    from solverbench.registry import COMMAND_ENTRY_POINT_GROUP, COMMANDS

    declared = {ep.name for ep in entry_points(group=COMMAND_ENTRY_POINT_GROUP)}
    assert "train-sidenet" in declared and declared <= set(COMMANDS.names())


def test_name_clash_is_refused():
    @sb.register_solver("test-clash")
    class A(sb.Solver):
        pass

    with pytest.raises(ValueError, match="already registered"):
        @sb.register_solver("test-clash")
        class B(sb.Solver):
            pass


def test_list_command_prints_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("solvers:", "backbones:", "metrics:", "euler", "gmm", "trajectory_error"):
        assert word in out


PLUGIN = textwrap.dedent('''
    import torch
    from solverbench import Backbone, Solver, register_backbone, register_solver

    @register_backbone("plugin-decay")
    class Decay(Backbone):
        """dx/dt = x: x(t) = x(1) e^(t - 1)."""
        sample_shape = (3,)
        num_classes = None
        null_label = None

        def forward(self, x, t, y=None):
            return x

    @register_solver("plugin-euler")
    class PluginEuler(Solver):
        """Euler, written in a plugin file."""
        order = 1

        def solve(self, field, x, plan):
            for t, t_next, _ in plan.steps():
                x = x + (t_next - t) * field(x, t)
            return x
''')


def test_plugin_file_adds_solver_and_backbone_to_a_run(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    (tmp_path / "grid.yaml").write_text(textwrap.dedent('''
        name: plugged
        plugins: [my_plugin.py]
        backbones: [plugin-decay]
        solvers: [plugin-euler, euler]
        nfe: [4, 8]
        num_samples: 16
        metrics: [trajectory_error]
    '''))
    results = tmp_path / "results"
    assert main(["run", str(tmp_path / "grid.yaml"), "--results", str(results), "--no-progress"]) == 0
    rows = pd.read_parquet(results / "plugged" / "results.parquet")
    assert set(rows["solver"]) == {"plugin-euler", "euler"}
    assert (rows["status"] == "ok").all()
    assert (rows["nfe_measured"] == rows["nfe"]).all()
    # the plugin solver is Euler: identical numbers
    by = rows.set_index(["solver", "nfe"])["trajectory_error"]
    assert by["plugin-euler", 8] == pytest.approx(by["euler", 8], rel=1e-6)
    assert "plugin-euler" in sb.SOLVERS.names()


# -- issue 9 (7): a bad plugin file is one line naming the file and the line -----------------------


def load_error(tmp_path, name, source):
    from solverbench.registry import PluginError, load_plugin_file

    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    with pytest.raises(PluginError) as err:
        load_plugin_file(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"plugin file {str(path.resolve())!r}"), message
    return message


def test_plugin_with_a_syntax_error(tmp_path):
    message = load_error(tmp_path, "broken.py", """\
        import torch

        def velocity(:
            pass
    """)
    assert message.endswith("has a syntax error at line 3: invalid syntax")


def test_plugin_that_raises_while_imported(tmp_path):
    message = load_error(tmp_path, "raises.py", """\
        import torch

        GPU = None
        if GPU is None:
            raise RuntimeError("this plugin needs a GPU,\\n sorry")
    """)
    assert message.endswith("raised RuntimeError at line 5 while being imported: this plugin needs a GPU, sorry")


def test_plugin_failing_in_a_library_names_both_lines(tmp_path):
    message = load_error(tmp_path, "decodes.py", """\
        import json

        SETTINGS = json.loads("{")
    """)
    assert "raised JSONDecodeError at line 3 while being imported (in " in message and "json" in message


def test_a_failed_plugin_can_be_loaded_again_once_fixed(tmp_path):
    load_error(tmp_path, "later.py", "raise ValueError('not yet')\n")
    (tmp_path / "later.py").write_text(PLUGIN.replace("plugin-decay", "plugin-decay-2").replace("plugin-euler",
                                                                                                 "plugin-euler-2"))
    sb.registry.load_plugin_file(tmp_path / "later.py")
    assert "plugin-euler-2" in sb.SOLVERS.names()


def test_plugin_taking_a_registered_name_names_both_definitions(tmp_path):
    import solvers.euler

    message = load_error(tmp_path, "clash.py", """\
        from solverbench import Solver, register_solver


        @register_solver("euler")
        class MyEuler(Solver):
            '''Mine.'''
    """)
    path = str((tmp_path / "clash.py").resolve())
    assert message.startswith(f"plugin file {path!r}, line 4: solver name 'euler' is already registered by "
                              f"solvers.euler.Euler ({solvers.euler.__file__}, line ")
    assert message.endswith(f"MyEuler ({path}, line 4) cannot take it: register it under another name")
    assert sb.SOLVERS.get("euler") is solvers.euler.Euler


def test_two_plugins_taking_one_name(tmp_path):
    from solverbench.registry import load_plugin_file

    source = textwrap.dedent('''
        from solverbench import Solver, register_solver

        @register_solver("test-plugin-twice")
        class Twice(Solver):
            """One of two."""
    ''')
    (tmp_path / "one.py").write_text(source)
    load_plugin_file(tmp_path / "one.py")
    message = load_error(tmp_path, "two.py", source)
    one, two = (str((tmp_path / f).resolve()) for f in ("one.py", "two.py"))
    assert f"already registered by Twice ({one}, line 4); Twice ({two}, line 4) cannot take it" in message


def test_grid_and_list_with_a_bad_plugin_print_one_line(tmp_path, capsys):
    (tmp_path / "bad.py").write_text("x = 1\nraise ImportError('needs the flux package')\n")
    (tmp_path / "grid.yaml").write_text("name: g\nplugins: [bad.py]\nbackbones: [gmm]\nsolvers: [euler]\nnfe: [2]\n")
    assert main(["run", str(tmp_path / "grid.yaml"), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("solverbench run: error: plugin file ") and "\n" not in err
    assert err.endswith("raised ImportError at line 2 while being imported: needs the flux package")
    assert main(["list", "--plugins", str(tmp_path / "bad.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("solverbench list: error: plugin file ") and "\n" not in err
