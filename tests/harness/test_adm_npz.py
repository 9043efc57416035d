"""ADM evaluation files, both directions: a reference batch (.npz: arr_0, mu, sigma, mu_s, sigma_s) as the
image metrics' reference, and each sweep cell's samples exported as an ADM batch (arr_0, arr_1).

A tiny class-conditional 8x8 image backbone and a channel-blind pixel-projection extractor stand in for
image models; inception-tf runs on a few tiny images for sFID (no download).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from solverbench import register_backbone, register_feature_extractor
from solverbench.cli import main
from solverbench.engine import run_grid
from solverbench.grid import GridError, load_grid, parse_grid
from solverbench.guidance import Guidance
from solverbench.metrics.context import MetricContext
from solverbench.metrics.image.adm_npz import (
    STATISTICS,
    BatchWriter,
    npz_arrays,
    read_images,
    write_batch,
)
from solverbench.metrics.image.extractors import build_extractor, extract_features, metric_layers
from solverbench.metrics.image.frechet import frechet_statistics
from solverbench.metrics.image.reference import REFERENCE_SEED
from solverbench.registry import METRICS
from solverbench.hashing import spec_hash
from solverbench.studies.sweep import Sweep, cells

PIXELS = "test-adm-pixel-projection"


class PixelProjection(torch.nn.Module):
    """uint8 (N, C, 8, 8) -> {"pool": tanh of a fixed projection of the first channel (16-D), "spatial": the
    4 x 4 average-pooled first channel (16-D), sFID's stand-in}: gray and RGB-from-gray images give the same."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(64, 16, generator=torch.Generator().manual_seed(0)) / 8)

    def forward(self, images):
        x = images[:, :1].float() / 127.5 - 1
        return {"pool": torch.tanh(x.flatten(1) @ self.projection * 4),
                "spatial": torch.nn.functional.avg_pool2d(x, 2).flatten(1)}


register_feature_extractor(PIXELS)(PixelProjection)
PixelProjection.metric_layers = {"fid": "pool", "kid": "pool", "prc": "pool", "sfid": "spatial"}


@register_backbone("test-adm-pixels")
class ClassPixels(torch.nn.Module):
    """8x8 grayscale gradients, 3 classes (the label shifts the brightness)."""

    sample_shape, num_classes, null_label = (1, 8, 8), 3, 3
    default_feature_extractor = PIXELS

    def forward(self, x, t, y=None):
        return x * 0.1

    def identity(self):
        return {"class": "test-adm-pixels"}

    def sample_data(self, n, generator, labels=None):
        labels = torch.randint(3, (n,), generator=generator) if labels is None else labels
        c = torch.rand(n, 3, generator=generator) - 0.5
        ramp = torch.linspace(-1, 1, 8)
        x0 = c[:, 0, None, None] + c[:, 1, None, None] * ramp[None, :, None] + c[:, 2, None, None] * ramp[None, None]
        return (x0 + 0.2 * (labels.float() - 1)[:, None, None])[:, None], labels

    def to_images(self, samples):
        return ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@register_backbone("test-adm-pixels-no-data")
class NoDataPixels(torch.nn.Module):
    """The same images, unconditional, and no data to compare with (as an ImageNet model without ImageNet)."""

    sample_shape, num_classes, null_label = (1, 8, 8), None, None
    default_feature_extractor = PIXELS
    forward, identity, to_images = ClassPixels.forward, ClassPixels.identity, ClassPixels.to_images


def images_of_data(n, seed=REFERENCE_SEED):
    backbone = ClassPixels()
    x0, labels = backbone.sample_data(n, torch.Generator().manual_seed(seed))
    return backbone.to_images(x0), labels


def statistics_of(images, extractor=PIXELS):
    """ADM's statistics keys for the images' features, as the project computes FID statistics."""
    features = extract_features(build_extractor(extractor, None, "cpu"), images.split(16), "cpu")
    layers = metric_layers(extractor, None, "cpu")
    out = {}
    for metric, (mu, sigma) in STATISTICS.items():
        if metric in layers:
            stats = frechet_statistics(features[layers[metric]])
            out.update({mu: stats["mu"].numpy(), sigma: stats["sigma"].numpy()})
    return out


def reference_batch(path, images, stats_images=None, extractor=PIXELS, labels=None):
    """An ADM reference batch: ``images`` as arr_0 and the statistics of ``stats_images`` (default: the same)."""
    stats = statistics_of(images if stats_images is None else stats_images, extractor)
    return write_batch(path, images, len(images), labels=labels, **stats)


def context(samples, tmp_path, labels=None, **options):
    backbone = ClassPixels()
    return MetricContext(samples=samples, labels=labels, backbone=backbone, guidance=Guidance(), seed=0,
                         reference_fn=None, data_fn=lambda n, draw=0: backbone.sample_data(
                             n, torch.Generator().manual_seed(1000 + draw), labels=labels),
                         extras={"cache_dir": tmp_path / "cache", "metric_options": options})


def x_of(images):
    return images.float()[:, :1] / 127.5 - 1  # samples whose to_images are ``images``


# -- the file format ----------------------------------------------------------------------------

def test_batch_round_trip_streams_nhwc_rgb_and_labels_readable_by_numpy(tmp_path):
    images, labels = images_of_data(37)
    path = write_batch(tmp_path / "b.npz", images.split(10), 37, labels=labels)
    arrays = npz_arrays(path)
    assert arrays["arr_0"].shape == (37, 8, 8, 3) and arrays["arr_0"].dtype == np.uint8
    assert arrays["arr_1"].shape == (37,) and arrays["arr_1"].dtype == np.int64
    with np.load(path) as plain:  # as ADM's evaluator and generate.py's readers load it
        assert np.array_equal(plain["arr_0"], images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy())
        assert np.array_equal(plain["arr_1"], labels.numpy())
    back = torch.cat(list(read_images(path, batch_size=8)))
    assert torch.equal(back, images.expand(-1, 3, -1, -1))


def test_an_interrupted_batch_leaves_no_file(tmp_path):
    images, _ = images_of_data(10)
    with pytest.raises(RuntimeError):
        with BatchWriter(tmp_path / "b.npz", 10) as writer:
            writer.add(images[:5])
            raise RuntimeError("killed")
    with pytest.raises(ValueError, match="5 images written of 10"):
        with BatchWriter(tmp_path / "c.npz", 10) as writer:
            writer.add(images[:5])
    assert not list(tmp_path.iterdir())


# -- a reference batch as the metrics' reference ------------------------------------------------

def test_fid_and_pr_from_a_reference_batch_equal_the_usual_reference_of_the_same_images(tmp_path):
    images, _ = images_of_data(300)
    batch = reference_batch(tmp_path / "ref.npz", images)
    samples = torch.randn(120, 1, 8, 8) * 0.4
    usual = context(samples, tmp_path, reference_samples=300)
    adm = context(samples, tmp_path, reference_batch=str(batch))
    for metric in ("fid", "sfid", "precision_recall", "kid"):
        a, b = METRICS.get(metric)(usual), METRICS.get(metric)(adm)
        for column in (c for c in a if not c.endswith("floor") and "_floor_" not in c):
            assert b[column] == pytest.approx(a[column], rel=1e-5, abs=1e-9), column


def test_fid_of_a_set_against_its_own_statistics_is_zero_and_has_no_floor(tmp_path):
    images, _ = images_of_data(200)
    batch = reference_batch(tmp_path / "ref.npz", images)
    out = METRICS.get("fid")(context(x_of(images), tmp_path, reference_batch=str(batch)))
    assert abs(out["fid"]) < 1e-5
    assert "fid_floor" not in out  # the statistics are arr_0's own: no independent draw
    pr = METRICS.get("precision_recall")(context(x_of(images), tmp_path, reference_batch=str(batch)))
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0


def test_noise_floor_from_the_batch_images_where_they_can_stand_for_a_data_draw(tmp_path):
    """Statistics of a large data set, 300 other images as arr_0: FID's floor from 100 of them; none for
    precision/recall (they compare with arr_0 itself), none where arr_0 is smaller than the cell."""
    images, _ = images_of_data(300)
    whole, _ = images_of_data(3000, seed=7)
    batch = reference_batch(tmp_path / "ref.npz", images, stats_images=whole)
    samples = torch.randn(100, 1, 8, 8) * 0.4
    fid = METRICS.get("fid")(context(samples, tmp_path, reference_batch=str(batch)))
    assert 0 < fid["fid_floor"] < 0.2 * fid["fid"]
    assert fid["fid_floor_ci_low"] <= fid["fid_floor"] <= fid["fid_floor_ci_high"]
    assert fid["fid_ci_low"] < fid["fid"] < fid["fid_ci_high"]  # the bootstrap over the samples, unchanged
    pr = METRICS.get("precision_recall")(context(samples, tmp_path, reference_batch=str(batch)))
    assert "precision" in pr and not [c for c in pr if "floor" in c]
    more = METRICS.get("fid")(context(torch.randn(400, 1, 8, 8) * 0.4, tmp_path, reference_batch=str(batch)))
    assert "fid" in more and "fid_floor" not in more


def test_reference_batch_features_are_cached_by_the_file_digest(tmp_path):
    images, _ = images_of_data(120)
    batch = reference_batch(tmp_path / "ref.npz", images)
    samples = torch.randn(50, 1, 8, 8) * 0.4
    first = METRICS.get("precision_recall")(context(samples, tmp_path, reference_batch=str(batch)))
    cached = list((tmp_path / "cache" / "image_reference").glob("*.pt"))
    assert len(cached) == 1
    moved = batch.rename(tmp_path / "moved.npz")  # the same bytes elsewhere: the same cache entry
    assert METRICS.get("precision_recall")(context(samples, tmp_path, reference_batch=str(moved))) == first
    assert list((tmp_path / "cache" / "image_reference").glob("*.pt")) == cached


@pytest.mark.slow
def test_sfid_and_fid_from_a_reference_batch_equal_the_usual_way_with_inception_tf(tmp_path):
    """ADM's layout with the project's TF-Inception features: mu/sigma (2048-D) and mu_s/sigma_s (2023-D)."""
    images, _ = images_of_data(12)
    batch = reference_batch(tmp_path / "ref.npz", images, extractor="inception-tf")
    arrays = npz_arrays(batch)
    assert arrays["mu"].shape == (2048,) and arrays["sigma_s"].shape == (2023, 2023)
    samples = torch.randn(12, 1, 8, 8) * 0.4
    options = {"feature_extractor": "inception-tf", "feature_batch_size": 12,
               "bootstrap_resamples": 2}  # each draw is an eigendecomposition of 2048 x 2048: a few, not 200
    usual = context(samples, tmp_path, reference_samples=12, **options)
    adm = context(samples, tmp_path, reference_batch=str(batch), **options)
    for metric in ("fid", "sfid"):
        assert METRICS.get(metric)(adm)[metric] == pytest.approx(METRICS.get(metric)(usual)[metric], rel=1e-5)


# -- bad reference batches: one line, before any work ----------------------------------------------

def grid(**extra):
    return {"backbones": ["test-adm-pixels"], "solvers": ["euler"], "nfe": [2], "num_samples": 24,
            "metrics": ["fid", "precision_recall"], "save_samples": 0, **extra}


def refused(tmp_path, options, metrics=("fid", "precision_recall")) -> str:
    with pytest.raises(GridError) as err:
        parse_grid(grid(metric_options=options, metrics=list(metrics)), path=tmp_path / "grid.yaml")
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_reference_batches_are_refused_with_one_line(tmp_path):
    images, _ = images_of_data(20)
    (tmp_path / "notes.npz").write_text("not a zip")
    assert "notes.npz is not an .npz file" in refused(tmp_path, {"reference_batch": "notes.npz"})
    assert "absent.npz does not exist" in refused(tmp_path, {"reference_batch": "absent.npz"})

    write_batch(tmp_path / "samples.npz", images, 20)  # a sample batch: images only
    message = refused(tmp_path, {"reference_batch": "samples.npz"})
    assert "samples.npz has no mu, sigma (its arrays: arr_0)" in message
    stats = statistics_of(images)
    write_batch(tmp_path / "fid_only.npz", images, 20, mu=stats["mu"], sigma=stats["sigma"])
    message = refused(tmp_path, {"reference_batch": "fid_only.npz"}, ["fid", "sfid"])
    assert "fid_only.npz has no mu_s, sigma_s (its arrays: arr_0, mu, sigma)" in message

    np.savez(tmp_path / "stats.npz", **statistics_of(images))  # statistics only: FID yes, precision/recall no
    parse_grid(grid(metric_options={"reference_batch": "stats.npz"}, metrics=["fid"]), path=tmp_path / "grid.yaml")
    assert "stats.npz has no arr_0 images" in refused(tmp_path, {"reference_batch": "stats.npz"})

    np.savez(tmp_path / "images.npz", arr_0=np.zeros((4, 8, 8), np.float32), mu=np.zeros(3), sigma=np.eye(3))
    assert "arr_0 is float32 (4, 8, 8)" in refused(tmp_path, {"reference_batch": "images.npz"})

    # statistics of another dimension than the extractor's features (16-D pixels vs inception-tf's 2048)
    message = refused(tmp_path, {"reference_batch": "stats.npz", "feature_extractor": "inception-tf"}, ["fid"])
    assert "are 16-D but the fid features of feature extractor 'inception-tf' are 2048-D" in message

    assert "reference_samples has no use" in refused(tmp_path, {"reference_batch": "stats.npz",
                                                                "reference_samples": 100})


def test_a_backbone_without_data_is_measured_against_a_reference_batch(tmp_path):
    images, _ = images_of_data(60)
    reference_batch(tmp_path / "ref.npz", images)
    no_data = {"backbones": ["test-adm-pixels-no-data"], "metrics": ["fid"]}
    with pytest.raises(GridError, match="no cell of this grid can compute fid: the backbone cannot draw data "
                                        "samples .*; name an ADM reference batch"):
        parse_grid(grid(**no_data))
    parsed = parse_grid(grid(**no_data, metric_options={"reference_batch": "ref.npz"}), path=tmp_path / "g.yaml")
    row = run_grid(parsed, tmp_path / "results", progress=False).frame.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["fid"] > 0


# -- exporting a sweep's samples ----------------------------------------------------------------

def write_grid(folder, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "adm.yaml"
    path.write_text(yaml.safe_dump(grid(**extra)))
    return path


def cell_ids(parsed):
    return [spec_hash(cell.identity(parsed)) for cell in cells(parsed)]


def test_sweep_exports_each_cell_as_an_adm_batch_that_reads_back_as_a_reference(tmp_path, monkeypatch):
    """Relative reference batch read next to the grid file; arr_0/arr_1 are the cell's images and labels;
    the exported file, used as the reference of precision/recall, finds the same samples: 1 and 1."""
    grids = tmp_path / "grids"
    grids.mkdir()
    images, _ = images_of_data(200)
    reference_batch(grids / "ref.npz", images)
    path = write_grid(grids, metric_options={"reference_batch": "ref.npz"}, export={"npz": True}, save_samples=24)
    monkeypatch.chdir(tmp_path)  # not the grid's folder
    parsed = load_grid(path)
    table = run_grid(parsed, tmp_path / "results", progress=False)
    row = table.frame.iloc[0]
    assert row["status"] == "ok", row["error"]
    exported = tmp_path / "results" / "adm" / "npz" / f"{row['cell_id']}.npz"
    saved = torch.load(tmp_path / "results" / "adm" / "samples" / f"{row['cell_id']}.pt")
    with np.load(exported) as batch:
        rgb = ClassPixels().to_images(saved["samples"]).expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
        assert np.array_equal(batch["arr_0"], rgb.numpy())
        assert np.array_equal(batch["arr_1"], saved["labels"].numpy())

    back = write_grid(tmp_path / "again", metrics=["precision_recall"],
                      metric_options={"reference_batch": str(exported)})
    again = run_grid(load_grid(back), tmp_path / "results2", progress=False).frame.iloc[0]
    assert again["status"] == "ok", again["error"]
    assert again["precision"] == 1.0 and again["recall"] == 1.0


def test_export_keeps_cell_ids_and_a_cell_done_before_gets_its_file_on_the_next_run(tmp_path, capsys):
    plain = parse_grid(grid(metrics=["trajectory_error"]))
    exporting = parse_grid(grid(metrics=["trajectory_error"], export={"npz": True}))
    assert cell_ids(plain) == cell_ids(exporting) == cell_ids(Sweep.with_npz_export(plain))
    results = tmp_path / "results"
    (cell_id,) = cell_ids(plain)
    before = run_grid(plain, results, progress=False).frame
    npz = results / "grid" / "npz" / f"{cell_id}.npz"  # a grid given in Python is named grid
    after = run_grid(exporting, results, progress=False).frame  # no image metric: the export makes the images
    assert "export: 1 cell(s) finished before export was asked have no .npz" in capsys.readouterr().err
    assert npz_arrays(npz)["arr_0"].shape == (24, 8, 8, 3) and npz_arrays(npz)["arr_1"].shape == (24,)
    assert after["trajectory_error"].tolist() == before["trajectory_error"].tolist()  # the same noise, same row
    run_grid(exporting, results, progress=False)
    assert "0 run now" in capsys.readouterr().err  # the file is there: nothing owed


def test_reference_batch_bytes_are_part_of_the_cell_id(tmp_path):
    images, _ = images_of_data(50)
    reference_batch(tmp_path / "ref.npz", images)
    parse = lambda: parse_grid(grid(metrics=["fid"], metric_options={"reference_batch": "ref.npz"}),  # noqa: E731
                               path=tmp_path / "g.yaml")
    before = cell_ids(parse())
    reference_batch(tmp_path / "ref.npz", images[:40])
    assert cell_ids(parse()) != before


def test_bad_export_settings_and_the_cli_flag(tmp_path, capsys):
    with pytest.raises(GridError, match="grid key 'export'"):
        parse_grid(grid(export={"png": True}))
    with pytest.raises(GridError, match="grid key 'export.npz'"):
        parse_grid(grid(export={"npz": "yes"}))
    path = write_grid(tmp_path, metrics=["trajectory_error"])
    assert main(["run", str(path), "--results", str(tmp_path / "results"), "--export-npz", "--no-progress"]) == 0
    assert len(list((tmp_path / "results" / "adm" / "npz").glob("*.npz"))) == 1
    lte = tmp_path / "lte.yaml"
    lte.write_text(yaml.safe_dump({"kind": "lte", "backbones": ["test-adm-pixels"], "solvers": ["euler"],
                                   "lte": {"step_sizes": [0.1, 0.05], "start_times": [0.5]}, "num_samples": 4}))
    capsys.readouterr()
    assert main(["run", str(lte), "--results", str(tmp_path / "results"), "--export-npz", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--export-npz: a grid of kind lte has no samples to export" in err


# -- a folder of images as a reference batch ------------------------------------------------------

def image_folder(folder, images):
    """``images`` (uint8 (N, 1, H, W)) as grayscale PNGs in two subfolders, named so that sorting keeps their order."""
    from PIL import Image

    for i, image in enumerate(images):
        path = folder / ("a" if i % 2 else "b") / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(path)
    return sorted(folder.rglob("*.png"))


def test_a_folder_of_images_becomes_the_reference_batch_of_those_images(tmp_path):
    images, _ = images_of_data(40)
    files = image_folder(tmp_path / "imgs", images)
    order = torch.tensor([int(f.stem) for f in files])  # the batch holds the images in path order
    out = tmp_path / "ref.npz"
    assert main(["reference-batch", str(tmp_path / "imgs"), "--out", str(out), "--feature-extractor", PIXELS]) == 0
    arrays = npz_arrays(out)
    assert arrays["arr_0"].shape == (40, 8, 8, 3) and {"mu", "sigma", "mu_s", "sigma_s"} <= set(arrays)
    expected = statistics_of(images[order])
    with np.load(out) as stored:
        assert np.array_equal(stored["arr_0"][..., 0], images[order, 0].numpy())
        for key, value in expected.items():
            np.testing.assert_allclose(stored[key], value, rtol=1e-12, atol=1e-12)
    fid = METRICS.get("fid")(context(x_of(images), tmp_path, reference_batch=str(out)))
    assert abs(fid["fid"]) < 1e-5  # the same images against their own statistics


def test_a_folder_that_cannot_be_a_reference_batch_is_one_line(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    assert main(["reference-batch", str(tmp_path / "empty"), "--out", str(tmp_path / "r.npz")]) == 2
    assert "holds no images" in capsys.readouterr().err
    images, _ = images_of_data(3)
    image_folder(tmp_path / "mixed", images)
    Image.new("L", (16, 16)).save(tmp_path / "mixed" / "b" / "9999.png")
    args = ["reference-batch", str(tmp_path / "mixed"), "--out", str(tmp_path / "r.npz"), "--feature-extractor", PIXELS]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "9999.png' is 16x16" in err and "one size" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.npz").exists()
