"""Everything a grid file gets wrong is found while it is read, before any work: the key, the
value and what is allowed, not one error row per cell or a silent 'not applicable' everywhere."""
import pytest

from solverbench.grid import GridError, load_grid, parse_grid

GMM = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "nfe": [2],
       "solvers": ["euler"], "num_samples": 8}


def refused(grid, *expected):
    with pytest.raises(GridError) as info:
        parse_grid(grid)
    message = str(info.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, message
    return message


def test_a_missing_sidenet_checkpoint_is_found_while_reading(tmp_path):
    grid = {**GMM, "solvers": [{"name": "ba", "params": {"checkpoint": "nowhere/gmm.pt"}}]}
    (tmp_path / "g.yaml").write_text(repr(grid).replace("'", '"'))
    with pytest.raises(GridError) as info:
        load_grid(tmp_path / "g.yaml")
    assert "solvers[0].params.checkpoint" in str(info.value) and str(tmp_path / "nowhere" / "gmm.pt") in str(info.value)


def sidenet_file(path, backbone, **settings):
    """An untrained SideNet checkpoint for ``backbone`` (``settings``: its SideNet settings)."""
    from solvers.ba.checkpoint import save_checkpoint
    from solvers.ba.config import SideNetConfig
    from solvers.ba.sidenet import sidenet_for

    config = SideNetConfig.from_settings(settings)
    net = sidenet_for(backbone, config.network)
    save_checkpoint(path, raw=net, ema=net, config=config, stats={}, backbone=backbone)
    return path


def test_a_sidenet_s_init_from_is_read_next_to_the_grid_file(tmp_path):
    from solverbench import resolve_backbone

    sidenet_file(tmp_path / "start.pt", resolve_backbone("gmm", preset="gmm2d"))
    grid = {**GMM, "solvers": [{"name": "ba", "params": {"init_from": "start.pt"}}]}
    (tmp_path / "g.yaml").write_text(repr(grid).replace("'", '"'))
    spec = load_grid(tmp_path / "g.yaml").solvers[0]
    assert spec.resolved["init_from"] == str(tmp_path / "start.pt") and "init_from" in spec.files  # hashed
    grid["solvers"][0]["params"]["init_from"] = "nowhere.pt"
    (tmp_path / "g.yaml").write_text(repr(grid).replace("'", '"'))
    with pytest.raises(GridError, match=r"solvers\[0\]\.params\.init_from"):
        load_grid(tmp_path / "g.yaml")


def test_a_misspelled_family_setting_is_found_while_reading():
    refused({**GMM, "solvers": ["ba"], "solver_settings": {"ba": {"iteration": 10}}}, "'solver_settings.ba'",
            "'iteration'", "iterations")
    refused({**GMM, "solvers": ["ba"], "solver_settings": {"ba": {"lr": -1.0}}}, "'solver_settings.ba'", "lr")


def test_family_settings_without_a_solver_that_reads_them_are_refused():
    refused({**GMM, "solver_settings": {"ba": {"iterations": 10}}}, "'solver_settings.ba'",
            "no solver of this grid reads 'ba' settings")
    refused({**GMM, "solvers": ["ba"], "solver_settings": {"bespoke": {}}}, "'solver_settings.bespoke'",
            "the families of its solvers: ba")


def test_the_older_sidenet_key_is_read_with_a_deprecation_line(capsys):
    grid = parse_grid({**GMM, "solvers": ["ba"], "sidenet": {"iterations": 10}})
    assert grid.solver_settings == {"ba": {"iterations": 10}}
    assert "grid key 'sidenet' is deprecated; write its settings as solver_settings: {ba: {...}}" in \
        capsys.readouterr().err
    refused({**GMM, "solvers": ["ba"], "sidenet": {"iteration": 10}}, "'sidenet'", "'iteration'")
    refused({**GMM, "solvers": ["ba"], "sidenet": {}, "solver_settings": {"ba": {}}}, "given twice")


def test_a_metric_no_cell_can_compute_is_refused_with_the_reason():
    refused({**GMM, "metrics": ["fid"]}, "'metrics[0]'", "'fid'", "no cell of this grid can compute it",
            "does not make images")
    refused({**GMM, "metrics": ["log_likelihood"], "guidance": {"scale": 2.0}}, "log_likelihood",
            "only without guidance")


def test_a_metric_some_cells_can_compute_is_kept():
    grid = parse_grid({**GMM, "metrics": ["log_likelihood"], "guidance": {"scale": [1.0, 2.0]}})
    assert grid.metrics == ("log_likelihood",)


def test_a_missing_sit_vae_folder_is_found_while_reading(tmp_path):
    refused({**GMM, "backbones": [{"name": "sit", "params": {"size": "tiny", "resolution": 32,
                                                             "random_weights": True, "vae": str(tmp_path / "vae")}}]},
            "backbones[0].params.vae", "no such file or folder")


def test_run_on_a_folder_says_it_is_a_folder(tmp_path):
    (tmp_path / "quick.yaml").write_text("name: q\n")
    with pytest.raises(GridError, match="is a folder; give a grid file .*quick.yaml"):
        load_grid(tmp_path)


def test_bootstrap_resamples_is_a_harness_option_checked_while_reading():
    assert parse_grid({**GMM, "metric_options": {"bootstrap_resamples": 100}}).metric_options == {
        "bootstrap_resamples": 100}
    refused({**GMM, "metric_options": {"bootstrap_resamples": 5}}, "bootstrap_resamples", ">= 20")


def test_a_sit_vae_folder_without_an_autoencoder_is_found_while_reading(tmp_path):
    (tmp_path / "vae").mkdir()
    refused({**GMM, "backbones": [{"name": "sit", "params": {"size": "tiny", "resolution": 32,
                                                             "random_weights": True, "vae": str(tmp_path / "vae")}}]},
            "backbones[0].params", "no config.json")
