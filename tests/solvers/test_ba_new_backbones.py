"""The BA-solver on the ``diffusers`` and ``diffusion`` backbones, on tiny random models built here.

1. ``train-sidenet`` (the command, in this process) on a tiny SD3 transformer with a prompt set and on a
   tiny DDPM U-Net: data-free chains, said in one line; a SideNet conditioned on the prompts' pooled
   embeddings (SD3) or on the U-Net's classes (a label table).
2. The checkpoints through the engine: ``ba`` with the checkpoint and with ``sidenet: off`` at NFE 4,
   trajectory error, then the report.
3. The feature-conditioned SideNet loads and runs beside another prompt set of the same width (prompts it
   never saw), and is refused in one line beside features of another width or none; a class-table
   checkpoint is unaffected.
"""
from pathlib import Path

import pytest
import torch

from backbones.diffusers_flow.backbone import DiffusersFlowBackbone
from backbones.diffusers_flow.prompt_set import write_prompt_set
from backbones.diffusion.backbone import DiffusionBackbone
from solverbench.backbone import label_feature_table, resolve_backbone
from solverbench.cli import main
from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report import write_report
from solvers.ba.checkpoint import CheckpointMismatchError, load_checkpoint

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:.*should be kept in float32.*")

SD3_CONFIG = dict(sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
                  joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4)
TOKENS = 5
TRAINING = ["--iterations", "3", "--batch-size", "4", "--width", "8", "--depth", "1", "--embed-dim", "8",
            "--heads", "2", "--chain-length", "2", "--noise-steps", "1", "--no-progress"]


def prompt_set(path, prompts, seed, pooled=8):
    """An SD3 prompt set of ``prompts``: random embeddings (pooled ones of width ``pooled``), a negative prompt."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in {"prompt_embeds": (TOKENS, 16), "pooled_prompt_embeds": (pooled,)}.items():
        tensors[name] = torch.randn(len(prompts), *shape, generator=g)
        tensors["negative_" + name] = torch.randn(1, *shape, generator=g)
    return write_prompt_set(path, prompts, tensors, negative_prompt="")


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    """A tiny SD3 transformer's folder, two prompt sets of one width, and a transformer and prompt set of another."""
    root = tmp_path_factory.mktemp("sd3")
    torch.manual_seed(0)
    diffusers.SD3Transformer2DModel(**SD3_CONFIG).save_pretrained(root / "transformer")
    diffusers.SD3Transformer2DModel(**{**SD3_CONFIG, "pooled_projection_dim": 12}).save_pretrained(root / "wide")
    return {"model": root / "transformer", "root": root,
            "prompts": prompt_set(root / "prompts.safetensors", ["a red cat", "a blue dog", "a cat"], seed=1),
            "unseen": prompt_set(root / "unseen.safetensors", ["a green bird", "a house"], seed=2),
            "wide": root / "wide", "wide_prompts": prompt_set(root / "wide.safetensors", ["a cat"], seed=3, pooled=12)}


@pytest.fixture(scope="module")
def ddpm(tmp_path_factory):
    """A pipeline folder with a tiny class-conditional DDPM U-Net (3 classes and its null row)."""
    root = tmp_path_factory.mktemp("ddpm")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, num_class_embeds=4)
    unet.save_pretrained(root / "pipe" / "unet")
    diffusers.DDPMScheduler().save_config(root / "pipe" / "scheduler")
    return {"model": root / "pipe", "root": root}


def train(backbone: str, params: str, out, capsys) -> str:
    """``solverbench train-sidenet`` in this process; its stderr."""
    capsys.readouterr()
    assert main(["train-sidenet", backbone, "--backbone-params", params, "--out", str(out), *TRAINING]) == 0
    return capsys.readouterr().err


def sweep(backbone: dict, checkpoint, folder):
    """``ba`` with the checkpoint and with the SideNet off at NFE 4 through the engine, then the report."""
    grid = parse_grid({"name": "ba_new", "backbones": [backbone],
                       "solvers": [{"name": "ba", "params": {"checkpoint": str(checkpoint)}},
                                   {"name": "ba", "params": {"sidenet": "off"}}],
                       "nfe": [4], "num_samples": 4, "batch_size": 4, "metrics": ["trajectory_error"],
                       "reference": {"rtol": 1e-3, "atol": 1e-3}})
    rows = run_grid(grid, folder / "results", progress=False).frame
    assert len(rows) == 2 and (rows["status"] == "ok").all(), rows.to_dict("records")
    assert rows["trajectory_error"].notna().all() and (rows["trajectory_error"] > 0).all()
    index = write_report(folder / "results", folder / "reports")
    assert index.is_file() and (folder / "reports" / "ba_new").is_dir()
    return rows


def test_a_prompt_conditioned_sidenet_trains_samples_and_reports_on_sd3(sd3, tmp_path, capsys):
    out = tmp_path / "sd3.pt"
    err = train("diffusers", f"{{model: {sd3['model']}, prompts: {sd3['prompts']}}}", out, capsys)
    assert "data-free" in err and "start from noise" in err
    backbone = DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"])
    loaded = load_checkpoint(out, backbone)
    spec = loaded.sidenet.spec
    assert spec["label_features"] == 8 and spec["num_classes"] is None and loaded.stats["data_mode"] == "noise"
    assert "conditioning.labels.weight" not in loaded.sidenet.state_dict()
    assert loaded.sidenet.state_dict()["conditioning.features.proj.weight"].shape == (8, 8)
    # the features: each prompt's pooled embedding, then the negative prompt's
    table = label_feature_table(backbone)
    assert torch.equal(table, backbone.condition_pooled_prompt_embeds.float()) and table.shape == (4, 8)
    sweep({"name": "diffusers", "params": {"model": str(sd3["model"]), "prompts": str(sd3["prompts"])}}, out, tmp_path)


def test_the_prompt_sidenet_serves_unseen_prompts_and_refuses_another_width(sd3, tmp_path, capsys):
    out = tmp_path / "sd3.pt"
    train("diffusers", f"{{model: {sd3['model']}, prompts: {sd3['prompts']}}}", out, capsys)
    unseen = DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["unseen"])
    sidenet = load_checkpoint(out, unseen).sidenet
    x = torch.randn(3, *unseen.sample_shape, generator=torch.Generator().manual_seed(0))
    t, h = torch.full((3,), 0.7), torch.full((3,), 0.2)
    y = torch.tensor([0, 1, unseen.null_label])
    dv = sidenet(x, unseen(x, t, y), t, h, y)
    assert dv.shape == x.shape and torch.isfinite(dv).all()
    # bound to the unseen prompts' pooled embeddings (and the negative prompt's), not to those it was trained with
    assert torch.equal(sidenet.conditioning.features.table, unseen.condition_pooled_prompt_embeds.float())
    wide = DiffusersFlowBackbone(model=sd3["wide"], prompts=sd3["wide_prompts"])
    with pytest.raises(CheckpointMismatchError) as refused:
        load_checkpoint(out, wide)
    message = str(refused.value)
    assert "\n" not in message and str(out) in message and "width 8" in message and "width 12" in message


@pytest.mark.slow  # about 3 s on 2 cores: run with -m slow
def test_a_unet_sidenet_trains_samples_and_reports_and_a_feature_sidenet_is_refused_there(ddpm, sd3, tmp_path,
                                                                                          capsys):
    out = tmp_path / "ddpm.pt"
    err = train("diffusion", f"{{model: {ddpm['model']}, null_label: 3}}", out, capsys)
    assert "data-free" in err
    backbone = DiffusionBackbone(str(ddpm["model"]), null_label=3)
    loaded = load_checkpoint(out, backbone)
    assert loaded.sidenet.spec["num_classes"] == 3 and "label_features" not in loaded.sidenet.spec
    assert loaded.sidenet.state_dict()["conditioning.labels.weight"].shape == (4, 8)
    sweep({"name": "diffusion", "params": {"model": str(ddpm["model"]), "null_label": 3}}, out, tmp_path)
    feature_file = tmp_path / "sd3.pt"
    train("diffusers", f"{{model: {sd3['model']}, prompts: {sd3['prompts']}}}", feature_file, capsys)
    with pytest.raises(CheckpointMismatchError) as refused:
        load_checkpoint(feature_file, backbone)
    message = str(refused.value)
    assert "\n" not in message and str(feature_file) in message and "offers no label features" in message


def test_a_shipped_class_table_checkpoint_loads_as_before():
    """gmm64.pt: a label table of the gmm's classes, no label features; the gmm offers none."""
    backbone = resolve_backbone("gmm", preset="gmm64")
    path = Path(__file__).resolve().parents[2] / "solvers" / "ba" / "checkpoints" / "gmm64.pt"
    sidenet = load_checkpoint(path, backbone).sidenet
    assert "label_features" not in sidenet.spec and sidenet.spec["num_classes"] == backbone.num_classes
    assert sidenet.conditioning.features is None
    assert sidenet.state_dict()["conditioning.labels.weight"].shape[0] == backbone.num_classes + 1


def test_sana_features_are_the_mask_weighted_mean_of_its_prompt_embeddings():
    from backbones.diffusers_flow.architectures.sana import Sana

    embeds = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    features = Sana().label_features({"prompt_embeds": embeds, "prompt_attention_mask": mask})
    assert torch.equal(features, torch.stack([embeds[0, :2].mean(0), embeds[1, 0]]))


def test_the_official_and_mlp_sidenets_take_label_features_too(sd3):
    from solvers.ba.sidenet import build_sidenet

    backbone = DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"])
    x = torch.randn(2, *backbone.sample_shape)
    t, h, y = torch.full((2,), 0.5), torch.full((2,), 0.1), torch.tensor([1, backbone.null_label])
    for spec in ({"kind": "image", "architecture": "official", "sample_shape": list(backbone.sample_shape),
                  "width": 8, "depth": 2, "embed_dim": 8, "heads": 2},
                 {"kind": "mlp", "sample_shape": [4], "width": 8, "depth": 1, "embed_dim": 8, "heads": 1}):
        sidenet = build_sidenet({**spec, "num_classes": None, "null_label": None, "label_features": 8})
        assert sidenet.spec["label_features"] == 8
        z = x if spec["kind"] == "image" else x[:, 0, 0, :4]
        with pytest.raises(RuntimeError, match="bound to no backbone"):
            sidenet(z, z, t, h, y)
        sidenet.bind_labels(backbone)
        assert torch.isfinite(sidenet(z, z, t, h, y)).all()
