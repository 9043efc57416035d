"""A grid's dtype (bfloat16/float16 autocast), tf32 and compile (solverbench.precision)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import solverbench as sb
from solverbench.backbone import resolve_backbone
from solverbench.engine import run_grid
from solverbench.errors import GridError
from solverbench.grid import parse_grid
from solverbench.noise import noise_for
from solverbench.precision import Precision

ROOT = Path(__file__).resolve().parents[2]

# bfloat16 keeps 8 bits of mantissa: on digits (Euler, NFE 10, CFG 2) its samples lie within
# 0.004 rms of float32's per sample (0.0005 for float16), against a solver error of about 0.05
# at that NFE and samples of rms 0.85.  The tolerance below leaves room for other CPUs.
BF16_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def digits():
    backbone = resolve_backbone("digits")
    noise = noise_for(0, range(32), backbone.sample_shape)
    labels = torch.arange(32) % 10
    exact = sb.sample(backbone, "euler", noise, labels, nfe=10, cfg_scale=2.0).samples
    return backbone, noise, labels, exact


@pytest.mark.parametrize("dtype", ["bfloat16", pytest.param("float16", marks=pytest.mark.slow)])  # the same path
def test_autocast_stays_near_float32_on_digits_with_a_float32_state(digits, dtype):
    backbone, noise, labels, exact = digits
    result = sb.sample(Precision(dtype).backbone(backbone), "euler", noise, labels, nfe=10, cfg_scale=2.0)
    assert result.samples.dtype == torch.float32 and result.nfe == 10
    per_sample = (result.samples - exact).pow(2).flatten(1).mean(1).sqrt()
    assert 0 < per_sample.max() < BF16_TOLERANCE


def test_the_backbone_under_autocast_is_still_the_backbone(digits):
    backbone = digits[0]
    wrapped = Precision("bfloat16").backbone(backbone)
    assert wrapped.identity() == backbone.identity() and wrapped.sample_shape == backbone.sample_shape
    assert wrapped.num_classes == 10 and wrapped.to_images == backbone.to_images
    assert Precision().backbone(backbone) is backbone  # float32, eager: nothing in between


def grid_text(name: str, extra: str) -> dict:
    import yaml
    return yaml.safe_load(f"""
name: {name}
backbones: [{{name: toy2d, params: {{dataset: moons}}}}]
solvers: [euler, heun]
nfe: [4]
num_samples: 16
metrics: [trajectory_error]
{extra}""")


def test_a_bf16_grid_shares_the_float32_reference_and_has_its_own_cells(tmp_path):
    rows = {}
    for name, extra in (("f32", "dtype: float32"), ("bf16", "dtype: bfloat16\ntf32: true")):
        table = run_grid(parse_grid(grid_text(name, extra)), tmp_path, progress=False)
        rows[name] = table.frame.set_index("solver")
    assert len(list((tmp_path / ".cache" / "references").glob("*.pt"))) == 1
    assert set(rows["f32"]["cell_id"]).isdisjoint(rows["bf16"]["cell_id"])
    assert rows["bf16"]["dtype"].eq("bfloat16").all() and rows["bf16"]["tf32"].all()
    assert not rows["f32"]["tf32"].any() and not rows["bf16"]["compiled"].any()
    pd.testing.assert_series_equal(rows["f32"]["nfe_measured"], rows["bf16"]["nfe_measured"])


@pytest.mark.slow  # torch.compile on a CPU, about 3 s: run with -m slow
def test_compiled_backbone_runs_and_matches_eager():
    backbone = resolve_backbone("toy2d", dataset="moons")
    noise = noise_for(0, range(64), backbone.sample_shape)
    eager = sb.sample(backbone, "heun", noise, nfe=6).samples
    compiled = Precision(compile=True).backbone(backbone)
    first = sb.sample(compiled, "heun", noise, nfe=6).samples
    assert torch.allclose(first, eager, atol=1e-5)
    assert torch.equal(sb.sample(compiled, "heun", noise, nfe=6).samples, first)  # the compiled graph, reused


@pytest.mark.parametrize("extra, message", [
    ("dtype: float8", "grid key 'dtype'"),
    ("tf32: yes please", "grid key 'tf32'"),
    ("compile: 1", "grid key 'compile'"),
])
def test_bad_precision_keys_are_refused_in_one_line(extra, message):
    with pytest.raises(GridError, match=message):
        parse_grid(grid_text("bad", extra))


def test_autocast_on_a_backbone_without_a_network_is_refused():
    raw = grid_text("gmm-bf16", "dtype: float16")
    raw["backbones"] = [{"name": "gmm", "params": {"preset": "gmm2d"}}]
    with pytest.raises(GridError, match="backbone 'gmm' has no network to run in float16"):
        parse_grid(raw)


def test_a_float64_grid_runs_a_network_in_float64(tmp_path):
    table = run_grid(parse_grid(grid_text("f64", "dtype: float64")), tmp_path, progress=False)
    assert table.frame["status"].eq("ok").all() and table.frame["dtype"].eq("float64").all()


def test_the_lte_study_refuses_autocast():
    raw = grid_text("lte-bf16", "dtype: bfloat16")
    for key in ("nfe", "metrics", "num_samples"):
        raw.pop(key, None)
    raw.update(kind="lte", lte={"step_sizes": [0.1, 0.05], "start_times": [0.5]})
    with pytest.raises(GridError, match="LTE study measures one-step errors"):
        parse_grid(raw)


def ba_samples(digits, precision: Precision):
    """BA with the shipped digits SideNet under ``precision``; the dtypes its output layer computed in."""
    backbone, noise, labels, _ = digits
    solver = sb.get_solver("ba", checkpoint=str(ROOT / "solvers" / "ba" / "checkpoints" / "digits.pt"))
    solver.prepare(backbone, sb.PrepareContext())
    solver.use_precision(precision)
    seen = set()
    solver.velocities.sidenet.output.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    result = sb.sample(precision.backbone(backbone), solver, noise, labels, nfe=10, cfg_scale=2.0)
    assert result.nfe == 10 and result.samples.dtype == torch.float32
    return result.samples, seen


def test_the_ba_sidenet_runs_under_the_grid_autocast_too(digits):
    exact, exact_dtypes = ba_samples(digits, Precision())
    half, half_dtypes = ba_samples(digits, Precision("bfloat16"))
    assert exact_dtypes == {torch.float32} and half_dtypes == {torch.bfloat16}
    per_sample = (half - exact).pow(2).flatten(1).mean(1).sqrt()
    assert 0 < per_sample.max() < BF16_TOLERANCE


@pytest.mark.slow
def test_a_compiled_sidenet_gives_the_eager_samples():
    backbone = resolve_backbone("gmm", preset="gmm64")
    noise = noise_for(0, range(64), backbone.sample_shape)
    checkpoint = str(ROOT / "solvers" / "ba" / "checkpoints" / "gmm64.pt")
    runs = []
    for precision in (Precision(), Precision(compile=True)):
        solver = sb.get_solver("ba", checkpoint=checkpoint)
        solver.prepare(backbone, sb.PrepareContext())
        solver.use_precision(precision)
        runs.append(sb.sample(precision.backbone(backbone), solver, noise, nfe=5).samples)
    assert torch.allclose(runs[0], runs[1], atol=1e-5)
