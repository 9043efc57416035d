"""The SideNet settings: grouped, written nested or flat, described from one source, keying the cache with
an explicit version; a SideNet file loaded in one pipeline; config.py and training_cli.py without torch."""
import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench.grid import GridError, parse_grid
from solvers.ba import cache, checkpoint
from solvers.ba.checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from solvers.ba.config import GROUPS, SideNetConfig, settings_description
from solvers.ba.samplers import BiAnchor, SingleAnchor
from solvers.ba.sidenet import sidenet_for
from solvers.ba.training_cli import add_training_options, config_from_options

ROOT = Path(__file__).resolve().parents[2]
TINY = {"width": 16, "depth": 1, "embed_dim": 8, "batch_size": 16, "chain_length": 2, "iterations": 2}


def test_nested_and_flat_settings_are_the_same_settings():
    nested = SideNetConfig.from_settings({"network": {"width": 64}, "chains": {"chain_length": 4},
                                          "optimisation": {"lr": 1}, "questions": "both"})
    flat = SideNetConfig.from_settings({"width": 64, "chain_length": 4, "lr": 1.0, "questions": "both"})
    assert nested == flat and nested.network.width == 64 and nested.chains.chain_length == 4
    assert nested.optimisation.lr == 1.0 and isinstance(nested.optimisation.lr, float)
    assert nested.width == 64 and SideNetConfig.width == 128  # a flat name reads the group's value, or the default
    assert SideNetConfig(**nested.as_dict()) == nested
    assert replace(nested, iterations=5).optimisation.iterations == 5  # a group object changed by a flat name
    assert set(nested.nested()) == {"questions", *GROUPS}
    # a solver's own params: nested or flat, one solver (the same label, the same cells)
    assert sb.get_solver("ba", network={"width": 64}).label() == sb.get_solver("ba", width=64).label()


@pytest.mark.parametrize("settings, message", [
    ({"widht": 64}, "unknown SideNet setting(s) 'widht'; known settings: width"),
    ({"network": {"chain_lenght": 4}}, "unknown SideNet setting(s) 'network.chain_lenght'"),
    ({"network": {"chain_length": 4}}, "SideNet setting 'chain_length' belongs under chains, not under network"),
    ({"width": 64, "network": {"width": 32}}, "SideNet setting(s) 'width' given twice, flat and under network"),
    ({"chains": 4}, "SideNet settings group 'chains' must be a mapping of its settings"),
])
def test_a_bad_key_is_one_line_naming_it(settings, message):
    with pytest.raises(ValueError) as err:
        SideNetConfig.from_settings(settings)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_grid_writes_them_nested_or_flat_and_is_refused_naming_a_key_given_twice():
    grid = {"name": "nested", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "nfe": [3],
            "solvers": ["ba", {"name": "ba", "params": {"network": {"width": 8}}}], "num_samples": 8,
            "metrics": ["trajectory_error"], "solver_settings": {"ba": {"network": {"width": 16}, "iterations": 2}}}
    labels = [spec.label for spec in parse_grid(grid).solvers]
    assert labels == ["ba(rule=lobatto, nodes=2)", "ba(rule=lobatto, nodes=2, width=8)"]
    twice = {**grid, "solver_settings": {"ba": {"network": {"width": 16}, "width": 8}}}
    with pytest.raises(GridError, match=r"solver_settings\.ba.*'width' given twice, flat and under network"):
        parse_grid(twice)
    with pytest.raises(GridError, match="unknown parameter.*'network.depht'"):
        parse_grid({**grid, "solvers": [{"name": "ba", "params": {"network": {"depht": 2}}}]})


def test_the_description_is_everyday_settings_or_all_of_them_from_one_source():
    everyday = BiAnchor.describe_settings()
    shown = everyday.split("): ", 1)[1].split(";")[0].split(", ")
    assert "width=128" in shown and "questions='chains'" in shown and "\n" not in everyday
    assert everyday.endswith(f"{len(SideNetConfig.keys()) - len(shown)} more SideNet settings: "
                             "solverbench list ba --all")
    assert BiAnchor.describe_settings(full=False) == everyday
    assert SingleAnchor.describe_settings() == everyday  # listed once: "settings: those of ba"
    full = BiAnchor.describe_settings(full=True)
    assert all(f"{name}=" in full for name in SideNetConfig.keys())
    assert all(f"\n  {group}:\n" in full for group in GROUPS)
    assert "    step_rate=50.0: lambda of the truncated exponential step-size law" in full
    # train-sidenet's options read the same meanings
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    step_rate = next(a for a in parser._actions if a.dest == "sidenet_step_rate")
    assert step_rate.help.startswith("lambda of the truncated exponential step-size law")
    assert "solve_bank=0: 0: fresh exact trajectories every iteration" in settings_description(full=True)
    options = parser.parse_args(["--width", "32", "--chain-length", "4"])
    assert config_from_options(options) == SideNetConfig(width=32, chain_length=4)


def test_the_cache_key_is_the_version_the_backbone_and_every_setting_nested(tmp_path, monkeypatch):
    backbone, config = GaussianMixture("gmm2d"), SideNetConfig(**TINY)
    key = cache.cache_key(backbone, config)
    assert key["version"] == cache.CACHE_VERSION and key["sidenet"] == config.nested()
    path = cache.cache_path(tmp_path, backbone, config)
    assert cache.cache_path(tmp_path, backbone, SideNetConfig(**{**TINY, "seed": 1})) != path
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)  # a setting changed meaning
    assert cache.cache_path(tmp_path, backbone, config) != path


def test_flat_settings_in_older_files_are_read_into_the_groups(tmp_path):
    shipped = ROOT / "solvers" / "ba" / "checkpoints" / "gmm64_solves.pt"
    stored = torch.load(shipped, weights_only=True)
    assert "questions" in stored["config"] and "solves" not in stored["config"]  # flat, as written then
    loaded = load_checkpoint(shipped, GaussianMixture("gmm64"))
    assert loaded.config == SideNetConfig.from_settings(stored["config"]) and loaded.config.questions == "solves"
    assert loaded.config.solves.first_interval_weight == stored["config"]["first_interval_weight"]
    # what is written now is nested, and reads back the same
    gmm, config = GaussianMixture("gmm2d"), SideNetConfig(**TINY)
    net = sidenet_for(gmm, config.network)
    path = save_checkpoint(tmp_path / "new.pt", raw=net, ema=net, config=config, stats={}, backbone=gmm)
    assert torch.load(path, weights_only=True)["config"] == config.nested()
    assert load_checkpoint(path, gmm).config == config


def test_a_file_for_another_backbone_is_refused_before_its_network_is_built(tmp_path, monkeypatch):
    gmm, config = GaussianMixture("gmm2d"), SideNetConfig(**TINY)
    net = sidenet_for(gmm, config.network)
    path = save_checkpoint(tmp_path / "gmm2d.pt", raw=net, ema=net, config=config, stats={}, backbone=gmm)

    def no_building(spec):
        raise AssertionError("built before the file was checked")

    monkeypatch.setattr(checkpoint, "build_sidenet", no_building)
    with pytest.raises(CheckpointMismatchError, match="was trained for another backbone"):
        load_checkpoint(path, GaussianMixture("gmm64"))
    with pytest.raises(CheckpointMismatchError, match="not the official architecture; set architecture: project"):
        load_checkpoint(path, gmm, architecture="official")


STUBBED_PARENTS = """
import sys, types
for name in ("solvers", "solvers.ba", "solverbench"):  # their __init__ import torch (registration)
    package = types.ModuleType(name)
    package.__path__ = [sys.argv[1] + "/" + name.replace(".", "/")]
    sys.modules[name] = package
import solvers.ba.config, solvers.ba.training_cli
print("torch" in sys.modules)
"""


def test_the_settings_and_the_command_line_options_import_without_torch():
    """config.py and training_cli.py themselves reach no torch (their parent packages, which register the
    solvers, do: they are left out here)."""
    out = subprocess.run([sys.executable, "-c", STUBBED_PARENTS, str(ROOT)], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
