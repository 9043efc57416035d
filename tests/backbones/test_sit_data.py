"""The sit backbone's data: an ImageFolder center-cropped as ADM does, encoded once by the SD-VAE
(posterior sample x 0.18215) into cached latent shards, drawn by class for the metrics and SideNets.

A tiny ImageFolder of random PNGs and a tiny random AutoencoderKL (4 blocks: 8x downsampling,
as the SD-VAE) stand in for ImageNet and the SD-VAE.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import backbones.sit.latents as latents_module
from backbones.sit.backbone import SiTBackbone
from backbones.sit.imagefolder import center_crop
from backbones.sit.latents import posterior_noise
from backbones.sit.vae import LATENT_SCALE
from solverbench import register_feature_extractor
from solverbench.engine import run_grid
from solverbench.grid import GridError, load_grid, parse_grid

CLASSES = ("cat", "dog", "eel")


def write_images(folder, classes, per_class, seed=0, sizes=(20, 140)):
    """Random RGB PNGs of random sizes (some at least twice the resolution: ADM's BOX halving)."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = (int(s) for s in rng.integers(*sizes, size=2))
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    return folder


def save_vae(folder, seed=0, latent_channels=4, blocks=4):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                        block_out_channels=(8,) * blocks, down_block_types=("DownEncoderBlock2D",) * blocks,
                        up_block_types=("UpDecoderBlock2D",) * blocks, layers_per_block=1, norm_num_groups=4,
                        sample_size=32)
    vae.save_pretrained(folder)
    return vae.eval()


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-vae")
    return folder, save_vae(folder)


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "images", CLASSES, 4)


def sit(data, vae, cache, **kwargs) -> SiTBackbone:
    return SiTBackbone(size="tiny", resolution=32, random_weights=True, vae=vae, data=data, latent_cache=cache,
                       **kwargs)


# -- ADM's center crop ---------------------------------------------------------------------------

def adm_center_crop_arr(pil_image, image_size):
    """guided-diffusion's image_datasets.center_crop_arr, as written there (the definition checked)."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size]


def test_center_crop_of_known_images():
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)  # shorter side = the resolution: a plain center crop
    assert np.array_equal(center_crop(Image.fromarray(wide), 32), wide[:, 16:48])
    blocks = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)  # 2x2 blocks: BOX halving gives them back exactly
    doubled = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)  # 128 x 64 px
    assert np.array_equal(center_crop(Image.fromarray(doubled), 32), blocks[:, 16:48])
    tall = rng.integers(0, 256, (50, 32, 3), dtype=np.uint8)
    assert np.array_equal(center_crop(Image.fromarray(tall), 32), tall[9:41])


@pytest.mark.parametrize("width, height", [(97, 53), (300, 130), (45, 60), (33, 1000), (256, 256)])
def test_center_crop_is_adms_center_crop_arr(width, height):
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ours = center_crop(Image.fromarray(pixels), 32)
    assert ours.shape == (32, 32, 3) and ours.dtype == np.uint8
    assert np.array_equal(ours, adm_center_crop_arr(Image.fromarray(pixels), 32))


def test_grey_and_palette_images_are_converted_to_rgb(tmp_path, vae_folder):
    folder = tmp_path / "images"
    write_images(folder, CLASSES, 1)
    Image.fromarray(np.full((40, 40), 7, dtype=np.uint8)).save(folder / "cat" / "grey.png")
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).convert("P").save(folder / "dog" / "palette.png")
    b = sit(folder, vae_folder[0], tmp_path / "cache")
    x, y = b.sample_data(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 4, 4, 4) and sorted(y.tolist()) == [0, 0, 1, 1, 2]


# -- encoding and the cache ----------------------------------------------------------------------

def cached_latents(b: SiTBackbone) -> torch.Tensor:
    return b.data.read(torch.arange(len(b.data.listing)))


def test_latents_are_posterior_samples_times_the_scale(images, tmp_path, vae_folder):
    folder, vae = vae_folder
    b = sit(images, folder, tmp_path / "cache")
    b.sample_data(1, torch.Generator().manual_seed(0))
    stored = cached_latents(b)
    files = sorted((images / c / f"{i}.png", label) for label, c in enumerate(CLASSES) for i in range(4))
    assert [str(p.relative_to(images)) for p, _ in files] == list(b.data.listing.files)  # by class, then name
    assert b.data.labels.tolist() == [label for _, label in files]
    for index in (0, 5, 11):
        pixels = torch.from_numpy(center_crop(Image.open(files[index][0]), 32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            posterior = vae.encode(pixels.float() / 127.5 - 1).latent_dist
        noise = posterior_noise(range(index, index + 1), (4, 4, 4))
        torch.testing.assert_close(stored[index:index + 1], (posterior.mean + posterior.std * noise) * LATENT_SCALE)
        assert not torch.allclose(stored[index:index + 1], posterior.mean * LATENT_SCALE, atol=1e-2)  # not the mean


def test_sample_data_draws_latents_of_the_asked_labels(images, tmp_path, vae_folder):
    b = sit(images, vae_folder[0], tmp_path / "cache")
    x, y = b.sample_data(12, torch.Generator().manual_seed(0))
    assert x.shape == (12, 4, 4, 4) and x.dtype == torch.float32 and y.dtype == torch.long
    stored = cached_latents(b)
    rows = [int(torch.nonzero((stored == xi).flatten(1).all(1)).squeeze()) for xi in x]
    assert sorted(rows) == list(range(12))  # 12 draws from 12 images: each once
    assert torch.equal(y, b.data.labels[rows])
    labels = torch.tensor([2, 0, 2, 1, 2, 2, 2])  # class 2 five times: 4 images, then again
    x, y = b.sample_data(7, torch.Generator().manual_seed(1), labels=labels)
    assert torch.equal(y, labels) and x.shape == (7, 4, 4, 4)
    rows = [int(torch.nonzero((stored == xi).flatten(1).all(1)).squeeze()) for xi in x]
    assert all(b.data.labels[r] == label for r, label in zip(rows, labels.tolist()))
    assert len({rows[i] for i in (0, 2, 4, 5)}) == 4  # distinct while the class has images left
    again, _ = b.sample_data(7, torch.Generator().manual_seed(1), labels=labels)
    assert torch.equal(again, x)  # drawn with the generator alone
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]: .* has 3 classes"):
        b.sample_data(2, torch.Generator(), labels=torch.tensor([0, 3]))


def test_encoding_runs_once_then_the_cache_is_read(images, tmp_path, vae_folder, monkeypatch):
    calls = []
    encode = latents_module.encode_posterior
    monkeypatch.setattr(latents_module, "encode_posterior", lambda vae, px, noise: calls.append(len(px)) or
                        encode(vae, px, noise))
    first = sit(images, vae_folder[0], tmp_path / "cache")
    x, _ = first.sample_data(6, torch.Generator().manual_seed(0))
    assert sum(calls) == 12
    first.sample_data(6, torch.Generator().manual_seed(0))
    assert sum(calls) == 12

    def no_vae(folder):
        raise AssertionError("the VAE was loaded although every shard is cached")

    monkeypatch.setattr(latents_module, "load_vae", no_vae)
    again = sit(images, vae_folder[0], tmp_path / "cache", seed=5)  # another network, the same data
    assert torch.equal(again.sample_data(6, torch.Generator().manual_seed(0))[0], x)
    assert sum(calls) == 12
    manifest = json.loads((first.data.cache_dir / "manifest.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["key"]["folder_sha256"] == first.data.listing.digest


def test_a_killed_encoding_resumes_at_the_next_unfinished_shard(images, tmp_path, vae_folder, monkeypatch):
    monkeypatch.setattr(latents_module, "SHARD_SIZE", 4)
    monkeypatch.setattr(latents_module, "ENCODE_BATCH", 2)
    encode = latents_module.encode_posterior
    encoded = []

    def killed_in_the_second_shard(vae, pixels, noise):
        if len(encoded) == 6:  # shard 0 (4 images) and half of shard 1 are done
            raise KeyboardInterrupt
        encoded.extend([None] * len(pixels))
        return encode(vae, pixels, noise)

    monkeypatch.setattr(latents_module, "encode_posterior", killed_in_the_second_shard)
    b = sit(images, vae_folder[0], tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        b.sample_data(3, torch.Generator().manual_seed(0))
    cache = b.data.cache_dir
    assert sorted(p.name for p in cache.iterdir()) == ["manifest.json", "shard-00000.npy"]
    (cache / "shard-00001.999999.partial.npy").write_bytes(b"half a shard")  # a kill while writing
    counted = []
    monkeypatch.setattr(latents_module, "encode_posterior",
                        lambda vae, px, noise: counted.append(len(px)) or encode(vae, px, noise))
    resumed = sit(images, vae_folder[0], tmp_path / "cache")
    resumed.sample_data(3, torch.Generator().manual_seed(0))
    assert sum(counted) == 8  # shards 1 and 2 only
    assert {p.name for p in cache.glob("shard-?????.npy")} == {f"shard-0000{k}.npy" for k in range(3)}
    unbroken = sit(images, vae_folder[0], tmp_path / "another-cache")
    unbroken.sample_data(3, torch.Generator().manual_seed(0))
    assert torch.equal(cached_latents(resumed), cached_latents(unbroken))  # reproducible: seeded per image


def test_a_damaged_shard_is_named(images, tmp_path, vae_folder):
    b = sit(images, vae_folder[0], tmp_path / "cache")
    b.sample_data(1, torch.Generator().manual_seed(0))
    np.save(b.data.shard_path(0), np.zeros((3, 4, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="shard-00000.npy.*delete it"):
        b.sample_data(12, torch.Generator().manual_seed(0))


# -- what names the data -------------------------------------------------------------------------

def test_data_identity_names_the_folder_the_vae_and_the_resolution(images, tmp_path, vae_folder):
    vae = vae_folder[0]
    base = sit(images, vae, tmp_path / "cache").data_identity()
    assert base["images"] == 12 and base["classes"] == 3 and base["resolution"] == 32
    assert sit(images, vae, tmp_path / "cache", seed=9).data_identity() == base  # every network shares it
    copy = tmp_path / "copy"
    shutil.copytree(images, copy)  # copy2: names, sizes and modification times kept
    assert sit(copy, vae, tmp_path / "cache").data_identity() == base
    other_vae = tmp_path / "other-vae"
    save_vae(other_vae, seed=1)
    assert sit(images, other_vae, tmp_path / "cache").data_identity()["vae_sha256"] != base["vae_sha256"]
    assert SiTBackbone(size="tiny", resolution=64, random_weights=True, vae=vae, data=images,
                       latent_cache=tmp_path / "cache").data_identity()["resolution"] == 64
    stat = os.stat(copy / "dog" / "1.png")
    os.utime(copy / "dog" / "1.png", (stat.st_atime, stat.st_mtime + 10))
    assert sit(copy, vae, tmp_path / "cache").data_identity()["folder_sha256"] != base["folder_sha256"]
    write_images(copy, ["dog"], 5, seed=3)
    assert sit(copy, vae, tmp_path / "cache").data_identity()["images"] == 13


def test_identity_carries_the_data_only_where_there_is_data(images, tmp_path, vae_folder):
    plain = SiTBackbone(size="tiny", resolution=32, random_weights=True)
    with_vae = SiTBackbone(size="tiny", resolution=32, random_weights=True, vae=vae_folder[0])
    assert "data" not in plain.identity() and with_vae.identity() == plain.identity()  # earlier caches still match
    assert not plain.has_data and plain.data_identity() == plain.identity()
    b = sit(images, vae_folder[0], tmp_path / "cache")
    assert b.has_data and b.identity() == {**plain.identity(), "data": b.data_identity()}
    with pytest.raises(ValueError, match="data=FOLDER"):
        plain.sample_data(1, torch.Generator())


def test_the_default_latent_cache_is_under_results(images, tmp_path, vae_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = SiTBackbone(size="tiny", resolution=32, random_weights=True, vae=vae_folder[0], data=images)
    assert b.data.cache_dir.parent == tmp_path / "results" / ".cache" / "sit_latents"
    assert not any(p.name.startswith(".") for p in images.iterdir())  # nothing written into the data folder


# -- bad input, refused in one line before any work ------------------------------------------------

def bad_folder(tmp_path, case):
    folder = tmp_path / case
    folder.mkdir()
    if case == "subfolders-without-images":
        (folder / "a").mkdir()
        (folder / "b" / "deeper").mkdir(parents=True)
        (folder / "b" / "notes.txt").write_text("no image")
    elif case == "flat":
        write_images(tmp_path / "tmp", ["x"], 2)
        for p in (tmp_path / "tmp" / "x").iterdir():
            shutil.move(str(p), folder / p.name)
    elif case == "an-empty-class":
        write_images(folder, ["a", "c"], 1)
        (folder / "b").mkdir()
    elif case == "too-many-classes":
        for i in range(1001):
            (folder / f"c{i:04d}").mkdir()
            Image.new("RGB", (4, 4)).save(folder / f"c{i:04d}" / "0.png")
    elif case == "a-file":
        folder.rmdir()
        folder.write_text("not a folder")
    return folder


@pytest.mark.parametrize("case, message", [
    ("empty", r"data folder '.*empty' holds no images \(no class subfolders"),
    ("subfolders-without-images", r"data folder '.*subfolders-without-images' holds no images \(none in its 2 class"),
    ("flat", r"data folder '.*flat' is not a class-subfolder layout: 2 image\(s\) lie directly in it"),
    ("an-empty-class", r"class subfolder 'b' holds no images"),
    ("too-many-classes", r"has 1001 class subfolders; SiT has 1000 classes"),
    ("a-file", r"data folder '.*a-file' is not a folder"),
])
def test_a_bad_data_folder_is_refused(tmp_path, vae_folder, case, message):
    with pytest.raises(ValueError, match=message) as err:
        sit(bad_folder(tmp_path, case), vae_folder[0], tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_a_vae_that_does_not_fit_sit_is_refused(images, tmp_path):
    wide = tmp_path / "vae-8-channels"
    save_vae(wide, latent_channels=8)
    with pytest.raises(ValueError, match=r"vae folder '.*vae-8-channels' holds an AutoencoderKL with 8 latent "
                                         r"channels; SiT's latents have 4"):
        sit(images, wide, tmp_path / "cache")
    shallow = tmp_path / "vae-one-block"
    save_vae(shallow, blocks=1)
    with pytest.raises(ValueError, match=r"vae folder '.*vae-one-block' holds an AutoencoderKL that downsamples by 1"):
        sit(images, shallow, tmp_path / "cache")


def test_data_needs_a_vae_and_a_latent_cache_needs_data(images, tmp_path, vae_folder):
    with pytest.raises(ValueError, match=r"data folder '.*images' is encoded into latents by the SD-VAE: give vae="):
        sit(images, None, None)
    with pytest.raises(ValueError, match="latent_cache .* give data=FOLDER"):
        sit(None, vae_folder[0], tmp_path / "cache")


def test_a_grid_reads_a_relative_data_folder_next_to_it_and_refuses_a_bad_one(tmp_path, vae_folder):
    write_images(tmp_path / "grids" / "images", CLASSES, 1)
    shutil.copytree(vae_folder[0], tmp_path / "grids" / "vae")
    grid = {"backbones": [{"name": "sit", "params": {"size": "tiny", "resolution": 32, "random_weights": True,
                                                      "vae": "vae", "data": "images",
                                                      "latent_cache": str(tmp_path / "cache")}}],
            "solvers": ["euler"], "nfe": [2], "num_samples": 2}
    grid_file = tmp_path / "grids" / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    backbone = load_grid(grid_file).backbones[0].instance
    assert backbone.data.folder == tmp_path / "grids" / "images"
    assert not (tmp_path / "cache").exists()  # reading the grid encodes nothing
    (tmp_path / "grids" / "images" / "loose.png").write_bytes((tmp_path / "grids" / "images" / "cat" / "0.png")
                                                              .read_bytes())
    with pytest.raises(GridError, match="sit refuses them: .*not a class-subfolder layout"):
        load_grid(grid_file)


# -- what the data serves: SideNet chains and the image metrics ----------------------------------

def test_sidenet_chains_start_from_the_data(images, tmp_path, vae_folder):
    from solvers.ba.chains import data_start, resolve_data_mode

    b = sit(images, vae_folder[0], tmp_path / "cache")
    assert resolve_data_mode(b, "auto") == "data"
    assert resolve_data_mode(SiTBackbone(size="tiny", resolution=32, random_weights=True), "auto") == "noise"
    x, t, y = data_start(b, 5, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == (5, 4, 4, 4) and t.shape == (5,) and set(y.tolist()) <= {0, 1, 2}


SIT_PIXELS = "test-sit-pixel-projection"


@register_feature_extractor(SIT_PIXELS)
class SiTPixelProjection(torch.nn.Module):
    """uint8 (N, 3, 32, 32) -> a fixed random projection of the pixels (4 features)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(3 * 32 * 32, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, images):
        return torch.tanh((images.flatten(1).float() / 127.5 - 1) @ self.projection / 32)


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """1000 class subfolders (the harness draws labels 0-999) of one small random image each."""
    return write_images(tmp_path_factory.mktemp("imagenet-like"), [f"n{i:08d}" for i in range(1000)], 1,
                        sizes=(8, 48))


def sit_grid(params, tmp_path):
    return parse_grid({"name": "sit-fid", "backbones": [{"name": "sit", "params": params}], "solvers": ["euler"],
                       "nfe": [2], "num_samples": 6, "metrics": ["fid"], "save_samples": 0,
                       "metric_options": {"feature_extractor": SIT_PIXELS, "reference_samples": 12}})


def test_a_sit_grid_computes_fid_from_the_data_folder(imagenet_like, tmp_path, vae_folder):
    params = {"size": "tiny", "resolution": 32, "random_weights": True, "vae": str(vae_folder[0])}
    try:  # without data, as before: refused while the grid is read, or recorded as not applicable
        without = run_grid(sit_grid(params, tmp_path), tmp_path / "without", progress=False).frame.iloc[0]
        assert "cannot draw data samples" in json.loads(without["metrics_not_applicable"])["fid"]
    except GridError as err:
        assert "cannot draw data samples" in str(err)
    params = {**params, "data": str(imagenet_like), "latent_cache": str(tmp_path / "latents")}
    row = run_grid(sit_grid(params, tmp_path), tmp_path / "with", progress=False).frame.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["metrics_not_applicable"] is None and np.isfinite(row["fid"]) and row["fid"] >= 0
    assert np.isfinite(row["fid_floor"])
    assert len(list((tmp_path / "with" / ".cache" / "image_reference").glob("*.pt"))) == 1
    assert len(list((tmp_path / "latents").glob("*/shard-*.npy"))) == 1  # 1000 latents, one shard
