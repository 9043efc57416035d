"""Chain training, checkpoints and the SideNet cache."""
import shutil
from dataclasses import replace

import pytest
import torch

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench import Backbone
from solvers.ba.cache import cache_path, cached_sidenet
from solvers.ba.chains import chain_start, exact_step, signed_steps
from solvers.ba.checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import sidenet_for
from solvers.ba.training import chain_loss, train_sidenet


TINY = dict(width=32, depth=1, embed_dim=16, batch_size=64, chain_length=4, lr=1e-2, lr_schedule="constant")


def tiny_gmm():
    return GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)


class NoData(Backbone):
    """A backbone that cannot draw data: the tiny gmm's velocity only."""

    sample_shape, num_classes, null_label = (4,), 2, 2

    def __init__(self):
        super().__init__()
        self.gmm = tiny_gmm()

    def forward(self, x, t, y=None):
        return self.gmm(x, t, y)


def held_out_loss(sidenet, backbone, config):
    """The chain loss on one fixed batch of chains (same seed for every SideNet compared)."""
    generator = torch.Generator().manual_seed(1234)
    x, t, y = chain_start(backbone, config, 512, generator, "cpu")
    with torch.no_grad():
        return chain_loss(sidenet, backbone, x, t, y, config, generator).item()


@pytest.mark.parametrize("backbone, data", [(tiny_gmm(), "data"), (NoData(), "auto")], ids=["data", "data-free"])
def test_loss_falls_within_a_few_dozen_iterations(backbone, data):
    config = SideNetConfig(iterations=30, data=data, **TINY)
    raw, ema, stats = train_sidenet(backbone, config, progress=False)
    before = held_out_loss(sidenet_for(backbone, config.network), backbone, config)
    after = held_out_loss(raw, backbone, config)
    assert after < 0.75 * before, (before, after)
    mode = "data" if data == "data" else "noise"
    assert stats.iterations == 30 and len(stats.loss) == 30 and stats.data_mode == mode
    assert stats.backbone_calls == 30 * (4 + 1 + (0 if mode == "data" else 2 * config.noise_steps))


def test_exact_chain_steps_land_on_the_backbones_trajectory_and_train():
    """``chain_steps: exact``: each chain's next point is its own trajectory's at ``t - h`` (RK4 with 400 steps
    per chain as the check), whatever the sign of its step; the loss still falls."""
    gmm = tiny_gmm().double()
    generator = torch.Generator().manual_seed(3)
    x, t, y = chain_start(gmm, SideNetConfig(**TINY), 6, generator, "cpu")
    x, t = x.double(), t.double()
    h = signed_steps(t, 3.0, generator)
    got = exact_step(gmm, x, t, h, y)
    for i in range(6):
        z, s, dt = x[i:i + 1], t[i:i + 1], -h[i:i + 1] / 400
        for _ in range(400):
            k1 = gmm(z, s, y[i:i + 1])
            k2 = gmm(z + dt / 2 * k1, s + dt / 2, y[i:i + 1])
            k3 = gmm(z + dt / 2 * k2, s + dt / 2, y[i:i + 1])
            k4 = gmm(z + dt * k3, s + dt, y[i:i + 1])
            z, s = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), s + dt
        torch.testing.assert_close(got[i:i + 1], z, rtol=1e-5, atol=1e-5)
    backbone = tiny_gmm()
    config = SideNetConfig(iterations=30, chain_steps="exact", **TINY)
    raw, _, stats = train_sidenet(backbone, config, progress=False)
    assert held_out_loss(raw, backbone, config) < 0.75 * held_out_loss(sidenet_for(backbone, config.network),
                                                                       backbone, config)
    assert SideNetConfig(chain_steps="exact").chains.chain_steps == "exact"


def test_steps_are_signed_and_stay_inside_zero_one():
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(20000, generator=generator)
    h = signed_steps(t, 50.0, generator)
    assert ((t - h) >= 0).all() and ((t - h) <= 1).all()
    assert 0.45 < (h > 0).float().mean() < 0.55
    assert abs(h.abs().mean().item() - 1 / 50) < 2e-3  # mostly untruncated: mean 1 / lambda


def test_data_mode_needs_a_backbone_with_data():
    with pytest.raises(ValueError, match="NoData cannot draw data samples; use data='noise'"):
        train_sidenet(NoData(), SideNetConfig(iterations=1, data="data", **TINY), progress=False)


def trained(backbone, tmp_path, **settings):
    config = SideNetConfig(iterations=2, **{**TINY, **settings})
    raw, ema, stats = train_sidenet(backbone, config, progress=False)
    path = save_checkpoint(tmp_path / "s.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(),
                           backbone=backbone)
    return raw, ema, config, path


def test_checkpoint_round_trip(tmp_path):
    backbone = GaussianMixture("gmm2d")
    raw, ema, config, path = trained(backbone, tmp_path)
    loaded = load_checkpoint(path, backbone)
    assert loaded.config == config and loaded.stats["iterations"] == 2 and loaded.path == path
    for name, value in ema.state_dict().items():
        assert torch.equal(loaded.sidenet.state_dict()[name], value)
    raw_again = load_checkpoint(path, backbone, weights="raw").sidenet
    for name, value in raw.state_dict().items():
        assert torch.equal(raw_again.state_dict()[name], value)
    assert torch.load(path, weights_only=True)["backbone"] == backbone.identity()


def test_checkpoint_for_another_backbone_fails_naming_file_and_difference(tmp_path):
    *_, path = trained(GaussianMixture("gmm2d"), tmp_path)
    other = GaussianMixture("gmm2d", seed=1)
    with pytest.raises(CheckpointMismatchError, match=rf"{path}.*another backbone.*seed: 0 != 1"):
        load_checkpoint(path, other)


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatchError, match="is not a SideNet checkpoint"):
        load_checkpoint(tmp_path / "x.pt", GaussianMixture("gmm2d"))


def test_cache_trains_once_per_backbone_and_settings(tmp_path):
    backbone = GaussianMixture("gmm2d")
    config = SideNetConfig(iterations=2, **TINY)
    first = cached_sidenet(backbone, config, tmp_path, progress=False)
    assert first.path == cache_path(tmp_path, backbone, config) and first.path.is_file()
    stamp = first.path.stat().st_mtime_ns
    again = cached_sidenet(backbone, config, tmp_path, progress=False)
    assert again.path == first.path and first.path.stat().st_mtime_ns == stamp  # loaded, not retrained
    assert cache_path(tmp_path, backbone, SideNetConfig(iterations=3, **TINY)) != first.path
    assert cache_path(tmp_path, GaussianMixture("gmm64"), config) != first.path
    assert not (tmp_path / "solve_banks").exists()  # chains: no bank to keep


def test_cache_keeps_a_solve_bank_for_the_next_sidenet_trained_on_it(tmp_path):
    """Two cached SideNets on one bank (the second a fine-tuning of the first, as the attempts table chains them):
    the first solves and keeps the bank under the cache, the second reads it back, and trains on the same bits as
    one that solved it again."""
    from solvers.ba.training import train_sidenet
    backbone = GaussianMixture("gmm2d")
    banked = dict({k: v for k, v in TINY.items() if k != "chain_length"}, questions="solves", solve_nfe_min=2,
                  solve_nfe_max=3, solve_bank=32)
    first = cached_sidenet(backbone, SideNetConfig(iterations=2, **banked), tmp_path, progress=False)
    kept = [p for p in (tmp_path / "solve_banks").iterdir() if p.is_dir()]
    assert len(kept) == 1 and first.stats["bank"] == kept[0].name and first.stats["bank_batches_read"] == 0
    config = SideNetConfig(iterations=3, init_from=str(first.path), **banked)
    second = cached_sidenet(backbone, config, tmp_path, progress=False)
    assert second.stats["bank_batches_read"] > 0 and second.stats["bank"] == kept[0].name
    assert second.stats["bank_seconds_counted"] > 0  # the chain pays for its bank once
    _, _, solved_again = train_sidenet(backbone, config, progress=False)
    assert solved_again.loss == second.stats["loss"]


@pytest.mark.parametrize("settings, message", [
    ({"iterations": 0}, "'iterations' must be a positive integer"),
    ({"data": "images"}, "'data' must be one of auto, data, noise"),
    ({"step_rate": -1.0}, "'step_rate' must be a positive number"),
    ({"chain": 3}, "unknown SideNet setting"),
    ({"chain_steps": "rk4"}, "'chain_steps' must be one of sidenet, exact"),
])
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        SideNetConfig.from_settings(settings)


class TinyImageFlow(Backbone):
    """An image-shaped backbone without data: v = x - 2 tanh(conv(x)) (2 x 6 x 6 samples, 3 classes)."""

    sample_shape, num_classes, null_label = (2, 6, 6), 3, 3

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, t, y=None):
        return x - 2 * torch.tanh(self.conv(x)) * t.reshape(-1, 1, 1, 1)


def test_image_backbone_trains_data_free_and_samples(tmp_path):
    backbone = TinyImageFlow()
    solver = sb.get_solver("ba", iterations=3, width=8, depth=2, embed_dim=8, heads=2, batch_size=4, chain_length=2)
    solver.prepare(backbone, sb.PrepareContext(cache_dir=tmp_path, progress=False))
    assert solver.loaded.sidenet.spec["kind"] == "image" and solver.loaded.stats["data_mode"] == "noise"
    assert solver.row_fields()["sidenet_param_ratio"] == solver.loaded.sidenet.parameter_count() / 38
    result = sb.sample(backbone, solver, torch.randn(3, 2, 6, 6), torch.tensor([0, 1, 3]), nfe=3, cfg_scale=2.0)
    assert result.nfe == 3 and torch.isfinite(result.samples).all()


def test_auto_data_mode_says_when_it_trains_data_free(tmp_path, capsys):
    """data: auto never falls back to data-free chains silently: one stderr line, and the row says it."""
    free = sb.get_solver("ba", iterations=1, **TINY)
    free.prepare(NoData(), sb.PrepareContext(cache_dir=tmp_path, progress=False))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "data-free" in lines[0] and "NoData has no sample_data" in lines[0], lines
    assert free.row_fields()["sidenet_data_mode"] == "noise"
    with_data = sb.get_solver("ba", iterations=1, **TINY)
    with_data.prepare(tiny_gmm(), sb.PrepareContext(cache_dir=tmp_path, progress=False))
    assert "data-free" not in capsys.readouterr().err and with_data.row_fields()["sidenet_data_mode"] == "data"
    explicit = sb.get_solver("ba", iterations=1, data="noise", **TINY)  # chosen, so nothing to announce
    explicit.prepare(NoData(), sb.PrepareContext(cache_dir=tmp_path, progress=False))
    assert "data-free" not in capsys.readouterr().err and explicit.row_fields()["sidenet_data_mode"] == "noise"


def test_noise_starts_put_a_share_of_chains_at_pure_noise_stepping_toward_data():
    """``noise_starts``: that share of chains starts at t = 1 from standard normal noise, and their first step goes
    toward data; 0 leaves the chains, their random stream and the cache key as they were."""
    gmm = tiny_gmm()
    x, t, y = chain_start(gmm, SideNetConfig(noise_starts=0.5, **TINY), 4000, torch.Generator().manual_seed(0), "cpu")
    at_noise = t == 1
    assert 0.45 < at_noise.float().mean() < 0.55
    assert abs(x[at_noise].std().item() - 1) < 0.05 and abs(x[at_noise].mean().item()) < 0.05
    h = signed_steps(t, 50.0, torch.Generator().manual_seed(1), inward_at_noise=True)
    assert (h[at_noise] > 0).all() and ((t - h) >= 0).all()
    assert 0.45 < (h[~at_noise] > 0).float().mean() < 0.55
    plain = chain_start(gmm, SideNetConfig(**TINY), 64, torch.Generator().manual_seed(2), "cpu")
    zero = chain_start(gmm, SideNetConfig(noise_starts=0.0, **TINY), 64, torch.Generator().manual_seed(2), "cpu")
    for a, b in zip(plain, zero):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert SideNetConfig.from_settings({"noise_starts": 1}).noise_starts == 1.0
    with pytest.raises(ValueError, match=r"'noise_starts' must lie in \[0, 1\], got 1.5"):
        SideNetConfig(noise_starts=1.5)
    raw, _, _ = train_sidenet(gmm, SideNetConfig(iterations=2, noise_starts=0.25, **TINY), progress=False)
    assert all(torch.isfinite(p).all() for p in raw.parameters())


def test_init_from_starts_the_training_from_a_checkpoints_ema_weights(tmp_path):
    backbone = GaussianMixture("gmm2d")
    _, ema, _, path = trained(backbone, tmp_path)
    before = load_checkpoint(path, backbone).stats
    # the first update moves each weight by about lr (Adam), so at lr 1e-12 the raw weights are where it started
    config = SideNetConfig(iterations=1, init_from=str(path), **{**TINY, "lr": 1e-12})
    raw, _, stats = train_sidenet(backbone, config, progress=False)
    for name, value in ema.state_dict().items():
        assert torch.allclose(raw.state_dict()[name], value, atol=1e-9, rtol=0), name
    fresh, _, _ = train_sidenet(backbone, SideNetConfig(iterations=1, **{**TINY, "lr": 1e-12}), progress=False)
    assert not all(torch.allclose(fresh.state_dict()[k], v, atol=1e-6) for k, v in ema.state_dict().items())
    assert stats.init_seconds == pytest.approx(before["seconds"]) and stats.init_seconds > 0
    # its rows count the training it started from
    fine = save_checkpoint(tmp_path / "fine.pt", raw=raw, ema=raw, config=config, stats=stats.as_dict(),
                           backbone=backbone)
    solver = sb.get_solver("ba", checkpoint=str(fine))
    solver.prepare(backbone)
    assert solver.row_fields()["train_seconds"] == pytest.approx(stats.seconds + before["seconds"])
    from solvers.ba.training_cli import train_to_file
    summary = train_to_file(backbone, replace(config, iterations=1), out=tmp_path / "cli.pt",
                            cache_dir=tmp_path, progress=False)
    assert f"started from {path} (its training: {before['seconds']:.1f} s)" in summary


def test_init_from_is_checked_before_any_work(tmp_path, monkeypatch):
    import solvers.ba.training as training
    backbone = GaussianMixture("gmm2d")
    *_, path = trained(backbone, tmp_path)
    monkeypatch.setattr(training, "chain_start", lambda *args: pytest.fail("trained before the check"))
    with pytest.raises(CheckpointMismatchError, match=rf"'init_from': {path} holds another SideNet than these "
                                                      r"settings build, in width: 32 != 48 \(checkpoint != settings\)"):
        train_sidenet(backbone, SideNetConfig(iterations=1, init_from=str(path), **{**TINY, "width": 48}),
                      progress=False)
    with pytest.raises(FileNotFoundError, match=f"'init_from': no checkpoint at {tmp_path / 'none.pt'}"):
        train_sidenet(backbone, SideNetConfig(iterations=1, init_from=str(tmp_path / "none.pt"), **TINY),
                      progress=False)
    with pytest.raises(CheckpointMismatchError, match="another backbone"):
        train_sidenet(GaussianMixture("gmm2d", seed=1), SideNetConfig(iterations=1, init_from=str(path), **TINY),
                      progress=False)
    with pytest.raises(ValueError, match="'init_from' must be the path of a SideNet checkpoint"):
        SideNetConfig(init_from=3)


def test_init_from_keys_the_cache_by_the_files_bytes(tmp_path):
    backbone = GaussianMixture("gmm2d")
    *_, path = trained(backbone, tmp_path)
    config = SideNetConfig(iterations=2, init_from=str(path), **TINY)
    first = cache_path(tmp_path, backbone, config)
    assert first != cache_path(tmp_path, backbone, SideNetConfig(iterations=2, **TINY))
    (tmp_path / "elsewhere").mkdir()
    moved = shutil.copy(path, tmp_path / "elsewhere" / "copy.pt")  # the same bytes under another name
    assert cache_path(tmp_path, backbone, SideNetConfig(iterations=2, init_from=str(moved), **TINY)) == first
    trained(backbone, tmp_path, seed=1)  # another SideNet under the first name
    assert cache_path(tmp_path, backbone, config) != first
