"""Every on-disk cache reads back what it stored, and a cache entry that cannot be used (truncated, empty, a
folder, foreign, of another key or shape) is named in one line, moved aside (never over an earlier moved-aside
file) and computed again, to the same result: a damaged cache costs its recomputation, never a cell."""
import os

import pandas as pd
import pytest
import torch
import yaml

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench import register_feature_extractor
from solverbench.cache_entry import read_entry, write_atomically
from solverbench.cli import main
from solverbench.guidance import Guidance
from solverbench.metrics.image.adm_npz import write_batch
from solverbench.metrics.image.extractors import build_extractor
from solverbench.metrics.image.reference import reference_set
from solverbench.metrics.image.reference_batch import batch_reference, open_reference_batch
from solverbench.reference import Tolerance, reference_endpoints
from solverbench.schedules import learn_time_grid
from solvers.ba.cache import cached_sidenet
from solvers.ba.config import SideNetConfig
from solvers.ba.training import train_sidenet


GRID = {"name": "g", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}], "solvers": ["euler", "heun"],
        "nfe": [4], "num_samples": 16, "metrics": ["trajectory_error"]}


def truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def empty(path):
    path.write_bytes(b"")


def foreign(path):
    torch.save({"weights": torch.zeros(3)}, path)


def folder(path):
    path.unlink()
    path.mkdir()


def not_torch(path):
    path.write_text("a note, not a torch file")


DAMAGES = [truncate, empty, foreign, folder, not_torch]


def moved_aside_once(err, path, what):
    """The one warning line in ``err`` (stderr) naming the entry, and the file it was moved to (which exists)."""
    lines = [line for line in err.splitlines() if "cannot be used" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"solverbench: warning: {what} {path} cannot be used (") and "moved it aside to" in line
    aside = line.split("moved it aside to ")[1].split(" and computing")[0]
    assert aside.startswith(f"{path}.damaged") and os.path.lexists(aside)
    return aside


# -- the shared reader ----------------------------------------------------------------------------------------

def test_read_entry_moves_aside_without_overwriting_an_earlier_moved_file(tmp_path, capsys):
    path = tmp_path / "entry.pt"
    for k, expected in enumerate([".damaged", ".damaged.1", ".damaged.2"]):
        path.write_text(f"bad {k}")
        assert read_entry(path, "test entry", lambda p: torch.load(p, weights_only=True)) is None
        assert moved_aside_once(capsys.readouterr().err, path, "test entry") == f"{path}{expected}"
    assert [(tmp_path / f"entry.pt{e}").read_text() for e in (".damaged", ".damaged.1", ".damaged.2")] == \
        ["bad 0", "bad 1", "bad 2"]
    assert not path.exists()
    assert read_entry(path, "test entry", lambda p: pytest.fail("read a missing entry")) is None


def test_read_entry_without_mending_leaves_the_file_and_says_nothing(tmp_path, capsys):
    path = tmp_path / "entry.pt"
    path.write_text("bad")
    assert read_entry(path, "test entry", lambda p: torch.load(p, weights_only=True), mend=False) is None
    assert path.read_text() == "bad" and capsys.readouterr().err == ""


def test_an_atomic_write_that_fails_leaves_neither_file_nor_temporary(tmp_path):
    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "x.pt", broken)
    assert list(tmp_path.iterdir()) == []


# -- reference solves --------------------------------------------------------------------------------------------

def references(tmp_path, inverting=False):
    gmm = GaussianMixture("gmm2d")
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))
    return reference_endpoints(gmm, x, None, seed=0, dtype_name="float32", guidance=Guidance(),
                               tolerance=Tolerance(1e-6, 1e-6), cache_dir=tmp_path, inverting=inverting)


def other_key(path):
    stored = torch.load(path, weights_only=True)
    torch.save({**stored, "key": stored["key"].replace("'seed': 0", "'seed': 1")}, path)


def other_shape(path):
    stored = torch.load(path, weights_only=True)
    torch.save({**stored, "endpoints": stored["endpoints"][:3]}, path)


@pytest.mark.parametrize("damage", DAMAGES + [other_key, other_shape])
def test_a_damaged_reference_is_moved_aside_and_solved_again_to_the_same_bits(tmp_path, capsys, damage):
    first = references(tmp_path)
    (path,) = tmp_path.glob("*.pt")
    damage(path)
    capsys.readouterr()
    again = references(tmp_path)
    assert torch.equal(again, first)
    moved_aside_once(capsys.readouterr().err, path, "cached reference solve")
    assert torch.equal(torch.load(path, weights_only=True)["endpoints"], first)  # written again, whole
    assert torch.equal(references(tmp_path), first) and "cannot be used" not in capsys.readouterr().err


def test_a_damaged_inversion_reference_is_moved_aside_and_solved_again(tmp_path, capsys):
    first = references(tmp_path, inverting=True)
    (path,) = tmp_path.glob("*.pt")
    truncate(path)
    capsys.readouterr()
    assert torch.equal(references(tmp_path, inverting=True), first)
    moved_aside_once(capsys.readouterr().err, path, "cached reference inversion")


def test_under_torchrun_only_rank_0_reads_and_mends_the_reference_cache(tmp_path, monkeypatch):
    import solverbench.reference as reference

    first = references(tmp_path)

    class Rank1:  # rank 0 said the entry is good; this rank reads rank 0's file without judging it
        main, sharded = False, True

        def decide(self, fn):
            return True

    import solverbench.cache_entry as cache_entry
    import solverbench.distributed as distributed

    for module in (reference, distributed):
        monkeypatch.setattr(module, "world", lambda: Rank1())
    monkeypatch.setattr(cache_entry, "read_entry", lambda *a, **k: pytest.fail("a rank other than 0 judged the cache"))
    assert torch.equal(references(tmp_path), first)


def test_forced_run_over_a_truncated_reference_ends_with_ok_rows(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    results = tmp_path / "results"
    assert main(["run", str(grid), "--results", str(results), "--no-progress"]) == 0
    before = pd.read_parquet(results / "g" / "results.parquet").set_index("cell_id").sort_index()
    (path,) = (results / ".cache" / "references").glob("*.pt")
    truncate(path)
    capsys.readouterr()
    assert main(["run", str(grid), "--results", str(results), "--no-progress", "--force"]) == 0
    moved_aside_once(capsys.readouterr().err, path, "cached reference solve")
    after = pd.read_parquet(results / "g" / "results.parquet").set_index("cell_id").sort_index()
    assert (after["status"] == "ok").all() and len(after) == 2
    pd.testing.assert_series_equal(after["trajectory_error"], before["trajectory_error"])


# -- SideNets and solve banks --------------------------------------------------------------------------------------

TINY_SIDENET = dict(width=32, depth=1, embed_dim=16, batch_size=64, chain_length=4, lr=1e-2, lr_schedule="constant",
                    iterations=2)


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def sidenet_of_another_backbone(path):
    other = cached_sidenet(GaussianMixture("gmm64"), SideNetConfig(**TINY_SIDENET), path.parent.parent / "other",
                           progress=False)
    path.write_bytes(other.path.read_bytes())


def sidenet_of_other_settings(path):
    other = cached_sidenet(GaussianMixture("gmm2d"), SideNetConfig(**{**TINY_SIDENET, "iterations": 1}),
                           path.parent.parent / "other", progress=False)
    path.write_bytes(other.path.read_bytes())


@pytest.mark.parametrize("damage", [truncate, empty, foreign, sidenet_of_another_backbone, sidenet_of_other_settings])
def test_a_damaged_cached_sidenet_is_moved_aside_and_trained_again(tmp_path, capsys, damage):
    backbone, config = GaussianMixture("gmm2d"), SideNetConfig(**TINY_SIDENET)
    first = cached_sidenet(backbone, config, tmp_path, progress=False)
    damage(first.path)
    capsys.readouterr()
    again = cached_sidenet(backbone, config, tmp_path, progress=False)
    moved_aside_once(capsys.readouterr().err, first.path, "cached SideNet")
    assert again.path == first.path and same_weights(again.sidenet, first.sidenet)
    assert cached_sidenet(backbone, config, tmp_path, progress=False).stats == again.stats  # read back as written


BANK = dict(questions="solves", solve_nfe_min=2, solve_nfe_max=4, solve_bank=48, questions_per_solve=4,
            width=16, depth=1, embed_dim=8, batch_size=16, iterations=3)


def bank_of_another_key(path):
    stored = torch.load(path, weights_only=True)
    torch.save({**stored, "key": {**stored["key"], "solve_nfe_max": 9}}, path)


def bank_of_fewer_rows(path):
    stored = torch.load(path, weights_only=True)
    torch.save({**stored, "states": stored["states"][:, :3]}, path)


@pytest.mark.parametrize("damage", [truncate, foreign, bank_of_another_key, bank_of_fewer_rows])
def test_a_damaged_solve_bank_batch_is_moved_aside_and_solved_again(tmp_path, capsys, damage):
    gmm = GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)
    config = SideNetConfig(**BANK)
    _, solved, _ = train_sidenet(gmm, config, progress=False, bank_dir=tmp_path)
    (path,) = tmp_path.glob("*/batch_00001_16.pt")
    damage(path)
    capsys.readouterr()
    _, again, stats = train_sidenet(gmm, config, progress=False, bank_dir=tmp_path)
    moved_aside_once(capsys.readouterr().err, path, "solve bank batch")
    assert stats.bank_batches_read == 2 and same_weights(again, solved)  # batch 1 solved again: the same bits
    assert train_sidenet(gmm, config, progress=False, bank_dir=tmp_path)[2].bank_batches_read == 3


# -- learned time grids and Bespoke transformations ------------------------------------------------------------

SMALL_GITS = {"name": "gits", "samples": 16, "fine_steps": 40, "teacher_rtol": 1e-6}


@pytest.mark.parametrize("damage", [truncate, foreign, "other key"])
def test_a_damaged_learned_time_grid_is_moved_aside_and_learned_again(tmp_path, capsys, damage):
    gmm = GaussianMixture("gmm2d")
    first = learn_time_grid(gmm, "euler", 3, SMALL_GITS, cache_dir=tmp_path)
    (path,) = (tmp_path / "schedules").rglob("*.pt")
    if damage == "other key":
        learn_time_grid(gmm, "euler", 4, SMALL_GITS, cache_dir=tmp_path / "other")
        (other_path,) = (tmp_path / "other").rglob("*.pt")
        path.write_bytes(other_path.read_bytes())
    else:
        damage(path)
    capsys.readouterr()
    again = learn_time_grid(gmm, "euler", 3, SMALL_GITS, cache_dir=tmp_path)
    moved_aside_once(capsys.readouterr().err, path, "learned time grid")
    assert torch.equal(again.times, first.times)


BESPOKE = dict(trajectories=16, iterations=2, batch_size=8, reference_times=20)


def prepared_bespoke(backbone, cache_dir, **params):
    solver = sb.get_solver("bespoke", **{**BESPOKE, **params})
    solver.prepare_for(backbone, 4, None, sb.PrepareContext(cache_dir=cache_dir, progress=False))
    return next(iter(solver.held.values()))


@pytest.mark.parametrize("damage", [truncate, foreign, "other settings"])
def test_a_damaged_bespoke_transformation_is_moved_aside_and_trained_again(tmp_path, capsys, damage):
    gmm = GaussianMixture("gmm2d")
    first = prepared_bespoke(gmm, tmp_path)
    if damage == "other settings":
        other = prepared_bespoke(gmm, tmp_path / "other", lipschitz=2.0)
        first.path.write_bytes(other.path.read_bytes())
    else:
        damage(first.path)
    capsys.readouterr()
    again = prepared_bespoke(gmm, tmp_path)
    moved_aside_once(capsys.readouterr().err, first.path, "cached Bespoke transformation")
    assert not again.from_cache and again.nodes == first.nodes
    assert prepared_bespoke(gmm, tmp_path).from_cache


# -- image reference features ------------------------------------------------------------------------------------

PIXELS = "test-damaged-cache-pixels"


@register_feature_extractor(PIXELS)
class PixelProjection(torch.nn.Module):
    """uint8 (N, C, 8, 8) -> tanh of a fixed random projection of the first channel (16-D)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(64, 16, generator=torch.Generator().manual_seed(0)) / 8)

    def forward(self, images):
        return torch.tanh((images[:, :1].flatten(1).float() / 127.5 - 1) @ self.projection * 4)


class PixelImages:
    """8x8 grayscale gradients (data only: what a reference set is made of)."""

    def data_identity(self):
        return {"class": "test-damaged-cache-pixels"}

    def sample_data(self, n, generator, labels=None):
        c = torch.rand(n, 3, generator=generator) - 0.5
        ramp = torch.linspace(-1, 1, 8)
        return (c[:, 0, None, None] + c[:, 1, None, None] * ramp[None, :, None]
                + c[:, 2, None, None] * ramp[None, None])[:, None], None

    def to_images(self, samples):
        return ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_reference(cache_dir):
    return reference_set(PixelImages(), extractor_name=PIXELS, extractor=build_extractor(PIXELS, None, "cpu"),
                         weights_digest="d", n=64, frechet_layers=("features",), batch_size=32, device="cpu",
                         cache_dir=cache_dir)


@pytest.mark.parametrize("damage", [truncate, empty, foreign])
def test_damaged_image_reference_features_are_moved_aside_and_computed_again(tmp_path, capsys, damage):
    first = image_reference(tmp_path)
    damage(first.path)
    capsys.readouterr()
    again = image_reference(tmp_path)
    moved_aside_once(capsys.readouterr().err, first.path, "cached image reference")
    assert torch.equal(again.features["features"], first.features["features"])
    assert torch.equal(again.statistics["features"]["sigma"], first.statistics["features"]["sigma"])


def test_an_image_reference_without_a_features_statistics_gets_them_from_its_features(tmp_path, capsys):
    first = image_reference(tmp_path)
    stored = torch.load(first.path, weights_only=True)
    torch.save({**stored, "statistics": {}}, first.path)
    again = image_reference(tmp_path)
    assert "cannot be used" not in capsys.readouterr().err
    assert torch.equal(again.statistics["features"]["mu"], first.statistics["features"]["mu"])
    assert "features" in torch.load(first.path, weights_only=True)["statistics"]  # and stored


def test_damaged_reference_batch_features_are_moved_aside_and_extracted_again(tmp_path, capsys):
    images = PixelImages().to_images(PixelImages().sample_data(40, torch.Generator().manual_seed(0))[0])
    batch = open_reference_batch(write_batch(tmp_path / "ref.npz", images, len(images)))

    def features():
        return batch_reference(batch, metric_layers={"kid": "features"}, extractor_name=PIXELS,
                               extractor=build_extractor(PIXELS, None, "cpu"), weights_digest="d", batch_size=16,
                               device="cpu", cache_dir=tmp_path / "cache").features["features"]

    first = features()
    (path,) = (tmp_path / "cache" / "image_reference").glob("*.pt")
    truncate(path)
    capsys.readouterr()
    assert torch.equal(features(), first)
    moved_aside_once(capsys.readouterr().err, path, "cached reference batch features")


# -- trained backbones (train-backbone's cache) ---------------------------------------------------------------------

TOY = ["--steps", "3", "--batch-size", "16", "--hidden", "8", "--depth", "1"]


def trained_toy(tmp_path, capsys):
    assert main(["train-backbone", "toy2d", *TOY, "--results", str(tmp_path), "--no-progress"]) == 0
    return capsys.readouterr()


@pytest.mark.parametrize("damage", [truncate, empty, foreign, "other options"])
def test_a_damaged_trained_backbone_is_moved_aside_and_trained_again(tmp_path, capsys, damage):
    trained_toy(tmp_path, capsys)
    (path,) = (tmp_path / ".cache" / "backbones").glob("*.pt")
    weights = torch.load(path, weights_only=True)
    assert "exists (trained with these options)" in trained_toy(tmp_path, capsys).out  # a good one is reused
    if damage == "other options":
        torch.save({**weights, "config": {**weights["config"], "seed": 7}}, path)
    else:
        damage(path)
    captured = trained_toy(tmp_path, capsys)
    assert f"wrote {path}" in captured.out
    moved_aside_once(captured.err, path, "cached toy2d checkpoint")
    again = torch.load(path, weights_only=True)
    assert again["config"] == weights["config"]
    assert all(torch.equal(again["state_dict"][k], v) for k, v in weights["state_dict"].items())
