"""The sit backbone: a tiny random SiT, its conventions, checkpoint layouts, and SD-VAE decoding."""
import argparse
import runpy
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import solverbench as sb
from backbones.checkpoints import CheckpointError
from backbones.sit.backbone import SiTBackbone
from backbones.sit.vae import LATENT_SCALE
from solverbench.grid import GridError, load_grid

TINY = dict(size="tiny", resolution=32)  # latents (4, 4, 4): 4 tokens of patch 2


def tiny(**kwargs) -> SiTBackbone:
    return SiTBackbone(**TINY, **kwargs)


def inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 4, 4, generator=g), torch.rand(batch, generator=g), torch.tensor([0, 7, 999])[:batch]


@pytest.fixture(scope="module")
def random_sit():
    return tiny(random_weights=True, seed=1)


def test_tiny_forward_shapes(random_sit):
    assert random_sit.sample_shape == (4, 4, 4)
    assert (random_sit.num_classes, random_sit.null_label) == (1000, 1000)
    x, t, y = inputs()
    v = random_sit(x, t, y)
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert SiTBackbone(size="tiny", resolution=64, random_weights=True).sample_shape == (4, 8, 8)


def test_repa_convention_is_the_project_convention(random_sit):
    """REPA trains on x_t = (1 - t) x0 + t eps with target eps - x0: v(x, t) = net(x, t, y).
    Random weights with the default convention (auto) are a REPA network."""
    x, t, y = inputs()
    torch.testing.assert_close(random_sit(x, t, y), random_sit.net(x, t, y))
    assert random_sit.net.out_channels == 4
    assert (random_sit.identity()["convention"], random_sit.identity()["learn_sigma"]) == ("repa", False)


def test_sit_convention_flips_time_and_sign():
    """SiT runs s = 1 - t from noise to data with target x0 - eps, and has a learned-variance head."""
    b = tiny(random_weights=True, seed=1, convention="sit")
    assert b.net.out_channels == 8
    x, t, y = inputs()
    torch.testing.assert_close(b(x, t, y), -b.net(x, 1 - t, y)[:, :4])


def test_time_and_label_change_the_velocity(random_sit):
    x, t, y = inputs()
    v = random_sit(x, t, y)
    assert not torch.allclose(v, random_sit(x, 1 - t, y))
    assert not torch.allclose(v, random_sit(x, t, torch.tensor([1, 2, 3])))


def test_no_label_is_the_null_label(random_sit):
    x, t, _ = inputs()
    torch.testing.assert_close(random_sit(x, t, None), random_sit(x, t, torch.full((3,), 1000)))
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        random_sit(x, t, torch.tensor([0, 1, 1001]))


def test_samples_through_the_harness_with_guidance(random_sit):
    noise, _, labels = inputs()
    result = sb.sample(random_sit, "heun", noise, labels, nfe=4, cfg_scale=1.5)
    assert result.samples.shape == noise.shape and result.nfe == 4


def test_weights_are_required():
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        tiny()
    with pytest.raises(ValueError, match="unknown SiT size"):
        SiTBackbone(size="XXL", random_weights=True)


def _layouts(state):
    ddp = {f"module.{k}": v for k, v in state.items()}
    projector = {"projectors.0.0.weight": torch.zeros(8, 64), "projectors.0.0.bias": torch.zeros(8)}
    return {
        "plain": state,
        "model": {"model": state, "args": argparse.Namespace(model="SiT-XL/2"), "steps": 10},
        "ema": {"ema": state, "opt": {}, "args": argparse.Namespace(model="SiT-XL/2")},
        "module-prefix": {"model": ddp},
        "repa-projectors": {"ema": {**state, **projector}},
    }


@pytest.mark.parametrize("layout", ["plain", "model", "ema", "module-prefix", "repa-projectors"])
def test_checkpoint_layouts_load(tmp_path, random_sit, layout):
    path = tmp_path / "sit.pt"
    torch.save(_layouts(random_sit.net.state_dict())[layout], path)
    loaded = tiny(checkpoint=path, convention="repa")  # without projectors, a 4-channel file needs it said
    x, t, y = inputs()
    torch.testing.assert_close(loaded(x, t, y), random_sit(x, t, y))
    assert loaded.identity()["checkpoint_sha256"] != tiny(random_weights=True).identity().get("checkpoint_sha256")


def test_ema_is_preferred_and_weights_key_chooses(tmp_path, random_sit):
    other = tiny(random_weights=True, seed=2)
    path = tmp_path / "sit.pt"
    torch.save({"model": other.net.state_dict(), "ema": random_sit.net.state_dict()}, path)
    x, t, y = inputs()
    torch.testing.assert_close(tiny(checkpoint=path, convention="repa")(x, t, y), random_sit(x, t, y))
    torch.testing.assert_close(tiny(checkpoint=path, convention="repa", weights_key="model")(x, t, y), other(x, t, y))


def test_mismatched_checkpoint_names_the_file_and_keys(tmp_path, random_sit):
    state = dict(random_sit.net.state_dict())
    path = tmp_path / "wrong-size.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:  # 64 px: 16 tokens, not 4
        SiTBackbone(size="tiny", resolution=64, checkpoint=path, convention="repa")
    assert str(path) in str(err.value) and "pos_embed (file (1, 4, 64), model (1, 16, 64))" in str(err.value)
    with pytest.raises(CheckpointError, match=r"final_layer\.linear\.weight.*check size, resolution and patch_size"):
        tiny(checkpoint=path, patch_size=4)  # 16 outputs are no head of patch 4 (64 or 128)
    del state["blocks.1.mlp.fc2.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    missing_and_unexpected = r"missing keys: blocks\.1\.mlp\.fc2\.weight; unexpected keys: extra\.weight"
    with pytest.raises(CheckpointError, match=missing_and_unexpected):
        tiny(checkpoint=path, convention="repa")
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny(checkpoint=tmp_path / "nowhere.pt")


# Which convention a checkpoint is loaded with (issue 9, item 8): read from the file by
# default, and never a combination that gives a wrong velocity.

PROJECTORS = {"projectors.0.0.weight": torch.zeros(8, 64), "projectors.0.0.bias": torch.zeros(8)}


@pytest.fixture(scope="module")
def random_sit_sigma():
    """An original-SiT network: 8 output channels, the last 4 its learned variance."""
    return tiny(random_weights=True, seed=3, convention="sit")


@pytest.fixture(scope="module")
def convention_files(tmp_path_factory, random_sit, random_sit_sigma):
    folder = tmp_path_factory.mktemp("conventions")
    contents = {
        "sit-file": random_sit_sigma.net.state_dict(),  # the public SiT-XL-2-256x256.pt layout
        "repa-file": {"ema": {**random_sit.net.state_dict(), **PROJECTORS}, "steps": 10,
                      "args": argparse.Namespace(path_type="linear", prediction="v", enc_type="dinov2-vit-b")},
        "stripped-file": random_sit.net.state_dict(),  # 4 channels, no projectors: either code base
        "both-file": {**random_sit_sigma.net.state_dict(), **PROJECTORS},
    }
    paths = {}
    for name, content in contents.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(content, paths[name])
    return paths


def test_a_sit_layout_file_loads_with_the_sit_convention_by_default(convention_files, random_sit_sigma):
    loaded = tiny(checkpoint=convention_files["sit-file"])
    x, t, y = inputs()
    v = loaded(x, t, y)
    assert torch.equal(v, -random_sit_sigma.net(x, 1 - t, y)[:, :4])
    assert not torch.allclose(v, random_sit_sigma.net(x, t, y)[:, :4], atol=0.1)  # what repa would have given
    assert loaded.net.out_channels == 8
    assert (loaded.identity()["convention"], loaded.identity()["learn_sigma"]) == ("sit", True)
    assert loaded.identity() == tiny(checkpoint=convention_files["sit-file"], convention="sit").identity()


def test_a_repa_layout_file_loads_with_the_repa_convention_by_default(convention_files, random_sit):
    loaded = tiny(checkpoint=convention_files["repa-file"])
    x, t, y = inputs()
    assert torch.equal(loaded(x, t, y), random_sit.net(x, t, y))
    assert loaded.net.out_channels == 4
    assert (loaded.identity()["convention"], loaded.identity()["learn_sigma"]) == ("repa", False)
    assert loaded.identity() == tiny(checkpoint=convention_files["repa-file"], convention="repa").identity()


def test_an_ambiguous_file_loads_with_an_explicit_convention(convention_files, random_sit):
    """4 channels and no projectors: a stripped REPA file, or SiT trained with learn_sigma=False."""
    path = convention_files["stripped-file"]
    x, t, y = inputs()
    assert torch.equal(tiny(checkpoint=path, convention="repa")(x, t, y), random_sit.net(x, t, y))
    as_sit = tiny(checkpoint=path, convention="sit", learn_sigma=False)
    assert torch.equal(as_sit(x, t, y), -random_sit.net(x, 1 - t, y))
    assert (as_sit.identity()["convention"], as_sit.identity()["learn_sigma"]) == ("sit", False)


@pytest.mark.parametrize("file, convention, learn_sigma, advice", [
    ("sit-file", "repa", None, "convention: repa would give a wrong velocity: set convention: sit"),
    ("sit-file", "repa", True, "convention: repa would give a wrong velocity: set convention: sit"),  # the old hint
    ("repa-file", "sit", None, "convention: sit would give a wrong velocity: set convention: repa"),
    ("repa-file", "sit", True, "convention: sit would give a wrong velocity: set convention: repa"),
    ("stripped-file", "auto", None, "set convention: repa for REPA's code base .* or convention: sit for the original"),
    ("stripped-file", "auto", True, "set convention: repa for REPA's code base .* or convention: sit for the original"),
    ("both-file", "auto", None, "neither convention: sit nor convention: repa"),
    ("both-file", "repa", None, "neither convention: sit nor convention: repa"),
    ("both-file", "sit", None, "neither convention: sit nor convention: repa"),
    ("repa-file", "repa", True, "learn_sigma: true asks for an 8-channel head: leave learn_sigma out .* "
                                "keep convention: repa"),
    ("repa-file", "auto", True, "learn_sigma: true .* keep convention: repa"),
    ("stripped-file", "repa", True, "learn_sigma: true .* keep convention: repa"),
    ("stripped-file", "sit", True, "learn_sigma: true .* keep convention: sit"),
    ("sit-file", "sit", False, "learn_sigma: false asks for a 4-channel head: .* keep convention: sit"),
    ("sit-file", "auto", False, "learn_sigma: false .* keep convention: sit"),
])
def test_a_convention_that_would_give_a_wrong_velocity_is_refused(convention_files, file, convention, learn_sigma,
                                                                  advice):
    path = convention_files[file]
    with pytest.raises(CheckpointError, match=advice) as err:
        tiny(checkpoint=path, convention=convention, learn_sigma=learn_sigma)
    message = str(err.value)
    assert repr(str(path)) in message and "\n" not in message
    assert "learned-variance head" in message or "4-channel head" in message  # what it found


@pytest.mark.parametrize("args, problem", [
    (argparse.Namespace(path_type="cosine", prediction="v"), "path_type 'cosine'"),  # REPA's other path
    (argparse.Namespace(path_type="GVP", prediction="velocity"), "path_type 'GVP'"),  # SiT's other paths
    (argparse.Namespace(path_type="Linear", prediction="noise"), "prediction 'noise'"),
])
def test_a_file_trained_on_another_path_or_target_is_refused(tmp_path, random_sit, args, problem):
    path = tmp_path / "other-path.pt"
    torch.save({"ema": {**random_sit.net.state_dict(), **PROJECTORS}, "args": args}, path)
    for convention in ("auto", "repa"):
        with pytest.raises(CheckpointError, match=problem) as err:
            tiny(checkpoint=path, convention=convention)
        assert repr(str(path)) in str(err.value) and "convention: repa and convention: sit" in str(err.value)


def test_random_weights_conventions():
    assert tiny(random_weights=True, convention="sit", learn_sigma=False).net.out_channels == 4
    for convention in ("auto", "repa"):
        with pytest.raises(ValueError, match="set convention: sit"):
            tiny(random_weights=True, convention=convention, learn_sigma=True)
    with pytest.raises(ValueError, match="learn_sigma must be true or false"):
        tiny(random_weights=True, convention="sit", learn_sigma="false")
    with pytest.raises(ValueError, match="unknown SiT convention 'SiT'; known: auto, repa, sit"):
        tiny(random_weights=True, convention="SiT")


def test_a_grid_naming_a_wrong_convention_fails_while_read(tmp_path, convention_files):
    grid = {"backbones": [{"name": "sit", "params": {**TINY, "checkpoint": str(convention_files["sit-file"]),
                                                      "convention": "repa", "learn_sigma": True}}],
            "solvers": ["euler"], "nfe": [2], "num_samples": 2}
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(GridError, match="sit refuses them: .*set convention: sit"):
        load_grid(grid_file)
    grid["backbones"][0]["params"] = {**TINY, "checkpoint": str(convention_files["sit-file"])}
    grid_file.write_text(yaml.safe_dump(grid))
    assert [(b.name, b.params) for b in load_grid(grid_file).backbones] == [("sit", grid["backbones"][0]["params"])]


@pytest.fixture(scope="module")
def tiny_vae_folder(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4, sample_size=32)
    folder = tmp_path_factory.mktemp("tiny-vae")
    vae.save_pretrained(folder)
    return folder, vae.eval()


def test_to_images_decodes_with_the_local_vae(tiny_vae_folder):
    folder, vae = tiny_vae_folder
    b = tiny(random_weights=True, vae=folder)
    latents, _, _ = inputs(2)
    images = b.to_images(latents)
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.clamp(127.5 * vae.decode(latents / LATENT_SCALE).sample + 128, 0, 255).to(torch.uint8)
    assert (images.int() - expected.int()).abs().max() <= 1


def test_to_images_needs_a_vae_folder(tmp_path):
    latents, _, _ = inputs(1)
    with pytest.raises(ValueError, match="vae=FOLDER"):
        tiny(random_weights=True).to_images(latents)
    with pytest.raises(ValueError, match="no config.json"):  # found when the backbone is built, before any work
        tiny(random_weights=True, vae=tmp_path)


def test_throughput_benchmark_runs_on_cpu(capsys, tmp_path):
    main = runpy.run_path(str(Path(__file__).parents[2] / "benchmarks" / "sit_throughput.py"))["main"]
    csv = tmp_path / "times.csv"
    assert main(["--size", "tiny", "--resolution", "32", "--batch-size", "2", "--nfe", "2", "3", "--repeats", "1",
                 "--solvers", "euler", "heun", "ba", "reference", "--device", "cpu", "--csv", str(csv),
                 "--sidenet-width", "8", "16"]) == 0
    out = capsys.readouterr().out
    assert "left out: reference" in out and "heun" in out and "ms/NFE" in out and "SideNet" in out
    times = pd.read_csv(csv)
    assert list(times["nfe"]) == [2, 3] * 4  # every sampler at every budget (ba at two widths), not the adaptive one
    assert (times["seconds"] > 0).all()
    # the SideNet is timed apart, inside the solve's time; only the BA-solver has one
    is_ba = times["solver"].str.startswith("ba(")
    assert (times.loc[is_ba, "sidenet_seconds"] > 0).all() and (times.loc[~is_ba, "sidenet_seconds"] == 0).all()
    assert (times["sidenet_seconds"] < times["seconds"]).all()
    assert times.loc[is_ba, "sidenet_width"].tolist() == [8, 8, 16, 16]
    assert times.loc[is_ba, "sidenet_params"].is_monotonic_increasing
