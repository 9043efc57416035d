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

        def solve(self, field, x, grid, *, nfe=None):
            for t, t_next in zip(grid[:-1], grid[1:]):
                x = x + (t_next - t).item() * field(x, t)
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
