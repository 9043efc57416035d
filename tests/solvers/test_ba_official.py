"""The authors' SideNet (architecture: official), their checkpoint files, their training recipe.

The reference is HKUST-LongGroup/BA-solver: models/side_net.py (BASideNet), train_BA_side.py
(checkpoint layout, EMA, recipe), generate.py (which weights it samples with) and
BA_utils_side.py (how the sampler calls the SideNet: ``side_model(x, v, t, h, y)`` with ``h > 0``
toward the data, the output already multiplied by ``h``, default ``node_alpha = 0.2763932``).
"""
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch.nn import functional as F

import solverbench as sb
from backbones.gmm import GaussianMixture
from solverbench import Backbone
from solverbench.cli import main
from solvers.ba import quadrature as q
from solvers.ba.cache import train_checkpoint
from solvers.ba.chains import signed_steps
from solvers.ba.checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import OfficialImageSideNet, build_sidenet, sidenet_for
from solvers.ba.training import EMA, train_sidenet

ROOT = Path(__file__).parents[2]
TINY = dict(width=8, depth=2, embed_dim=8)  # 2 layers: one residual block, then the attention block


class Shaped:
    """Just the backbone attributes a SideNet is built from (null label = num_classes, as SiT's 1000)."""

    def __init__(self, shape, num_classes=3):
        self.sample_shape, self.num_classes, self.null_label = shape, num_classes, num_classes


class TinyImage(Backbone):
    """An image backbone with data: v = x - 2 tanh(conv(x)) t on 2 x 6 x 6 samples, 3 classes.
    It notes whether each call ran under autocast."""

    sample_shape, num_classes, null_label = (2, 6, 6), 3, 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.autocast_seen = []

    def forward(self, x, t, y=None):
        self.autocast_seen.append(torch.is_autocast_enabled(x.device.type))
        return x - 2 * torch.tanh(self.conv(x)) * t.reshape(-1, 1, 1, 1)

    def sample_data(self, n, generator, labels=None):
        x0 = 0.5 * torch.randn(n, *self.sample_shape, generator=generator)
        return x0, torch.randint(3, (n,), generator=generator) if labels is None else labels


def authors_forward(p, x, v, t, h, y, heads=4):
    """BASideNet.forward of models/side_net.py, restated line by line with its weights by name
    (``y`` already in its table's rows: the null label is the last row)."""
    def timestep(prefix, s):  # FastTimestepEmbedder: 256 frequencies, max period 1e4, raw s
        freqs = torch.exp(-math.log(10000.0) * torch.arange(0, 128, dtype=torch.float32) / 128)
        args = s.view(-1, 1).float() * freqs.view(1, -1)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        emb = F.silu(F.linear(emb, p[f"{prefix}.mlp.0.weight"], p[f"{prefix}.mlp.0.bias"]))
        return F.linear(emb, p[f"{prefix}.mlp.2.weight"], p[f"{prefix}.mlp.2.bias"])

    def rms(z):  # FastChannelRMSNorm
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-5)

    def scale_shift(block, emb, c):
        style = F.linear(emb, p[f"{block}.emb_proj.weight"], p[f"{block}.emb_proj.bias"]).view(-1, 2 * c, 1, 1)
        return style.chunk(2, dim=1)

    emb = torch.cat([timestep("t_embedder", t), timestep("h_embedder", h), p["y_embedder.embedding_table.weight"][y]],
                    dim=-1)
    emb = F.linear(F.silu(F.linear(emb, p["emb_fusion.0.weight"], p["emb_fusion.0.bias"])),
                   p["emb_fusion.2.weight"], p["emb_fusion.2.bias"])
    feat = F.conv2d(torch.cat([x, v], dim=1), p["input_conv.weight"], padding=1)
    depth = len({k.split(".")[1] for k in p if k.startswith("blocks.")})
    for i in range(depth):
        b, (B, C, H, W) = f"blocks.{i}", feat.shape
        if i == depth // 2:  # FastFlashAttention
            scale, shift = scale_shift(b, emb, C)
            qkv = F.conv2d(torch.addcmul(shift, rms(feat), scale + 1.0), p[f"{b}.qkv.weight"])
            qq, kk, vv = qkv.view(B, 3, heads, C // heads, H * W).permute(1, 0, 2, 4, 3).unbind(dim=0)
            out = F.scaled_dot_product_attention(qq, kk, vv).transpose(2, 3).reshape(B, C, H, W)
            feat = feat + F.conv2d(out, p[f"{b}.proj.weight"])
        else:  # NanoResBlock
            z = F.conv2d(F.conv2d(rms(feat), p[f"{b}.conv1_dw.weight"], padding=1, groups=C), p[f"{b}.conv1_pw.weight"])
            scale, shift = scale_shift(b, emb, C)
            z = F.silu(torch.addcmul(shift, rms(z), scale + 1.0))
            z = F.conv2d(F.conv2d(z, p[f"{b}.conv2_dw.weight"], padding=1, groups=C), p[f"{b}.conv2_pw.weight"],
                         p[f"{b}.conv2_pw.bias"])
            feat = feat + z
    delta_v = F.conv2d(F.silu(rms(feat)), p["output_conv.weight"], p["output_conv.bias"], padding=1)
    return delta_v * h.view(-1, 1, 1, 1)


# models/side_net.py's parameters for in_channels=2, base_channels=8, h_emb_dim=8, num_layers=2, num_classes=3
AUTHORS_SHAPES = {
    **{f"{e}_embedder.mlp.{i}.{w}": s for e in "ht" for i, w, s in
       [(0, "weight", (8, 256)), (0, "bias", (8,)), (2, "weight", (8, 8)), (2, "bias", (8,))]},
    "y_embedder.embedding_table.weight": (4, 8),
    "emb_fusion.0.weight": (8, 24), "emb_fusion.0.bias": (8,), "emb_fusion.2.weight": (8, 8), "emb_fusion.2.bias": (8,),
    "input_conv.weight": (8, 4, 3, 3),
    "blocks.0.conv1_dw.weight": (8, 1, 3, 3), "blocks.0.conv1_pw.weight": (8, 8, 1, 1),
    "blocks.0.conv2_dw.weight": (8, 1, 3, 3), "blocks.0.conv2_pw.weight": (8, 8, 1, 1), "blocks.0.conv2_pw.bias": (8,),
    "blocks.0.emb_proj.weight": (16, 8), "blocks.0.emb_proj.bias": (16,),
    "blocks.1.emb_proj.weight": (16, 8), "blocks.1.emb_proj.bias": (16,),
    "blocks.1.qkv.weight": (24, 8, 1, 1), "blocks.1.proj.weight": (8, 8, 1, 1),
    "output_conv.weight": (2, 8, 3, 3), "output_conv.bias": (2,),
}


def official(shape=(2, 6, 6), num_classes=3, **sizes):
    return sidenet_for(Shaped(shape, num_classes), {"architecture": "official", **TINY, **sizes})


def randomised(sidenet, seed=0, std=0.3):
    """Every weight random, the zero-initialised output conv included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sidenet.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return sidenet


def inputs(n=5, shape=(2, 6, 6), seed=1):
    g = torch.Generator().manual_seed(seed)
    x, v = torch.randn(n, *shape, generator=g), torch.randn(n, *shape, generator=g)
    t, h = torch.rand(n, generator=g), torch.rand(n, generator=g) - 0.5
    return x, v, t, h, torch.tensor([0, 1, 2, 3, 1])[:n]  # 3 is the null label


def test_parameter_names_and_shapes_are_the_authors():
    sidenet = official()
    assert isinstance(sidenet, OfficialImageSideNet)
    assert {k: tuple(v.shape) for k, v in sidenet.state_dict().items()} == AUTHORS_SHAPES


def test_two_million_parameters_at_the_authors_defaults():
    """width 256, 4 layers, embed 256, 4 x 32 x 32 latents, 1000 classes: 2,006,020 parameters
    (docs/ba-solver.md, "The SideNet")."""
    network = SideNetConfig.from_settings({"architecture": "official"}).network
    with torch.device("meta"):
        sidenet = sidenet_for(Shaped((4, 32, 32), 1000), network)
    assert sidenet.parameter_count() == 2_006_020
    assert [type(b).__name__ for b in sidenet.blocks] == ["ResidualBlock"] * 2 + ["AttentionBlock", "ResidualBlock"]


@pytest.mark.parametrize("depth", [2, 4, 5])
def test_same_output_as_the_authors_forward(depth):
    sidenet = randomised(official(depth=depth))
    x, v, t, h, y = inputs()
    p = dict(sidenet.state_dict())
    assert torch.equal(sidenet(x, v, t, h, y), authors_forward(p, x, v, t, h, y))  # the same operations: to the bit
    # the contract: v_hat(t - h) = v + S, batched offsets as single calls
    torch.testing.assert_close(sidenet.velocity(x, v, t, h, y), v + authors_forward(p, x, v, t, h, y),
                               rtol=1e-6, atol=1e-6)
    batched = sidenet.velocities_at(x, v, 0.6, [0.1, -0.05], y)
    for offset, v_hat in zip([0.1, -0.05], batched):
        torch.testing.assert_close(v_hat, v + authors_forward(p, x, v, torch.full((5,), 0.6), torch.full((5,), offset),
                                                              y), rtol=1e-6, atol=1e-6)


def test_zero_at_h_zero_and_untrained_it_leaves_velocities_alone():
    x, v, t, h, y = inputs()
    assert torch.equal(official().velocity(x, v, t, h, y), v)  # the output conv starts at zero
    dv = randomised(official())(x, v, t, torch.zeros(5), y)
    assert torch.equal(dv, torch.zeros_like(dv))


def test_unconditional_backbone_uses_the_null_row():
    sidenet = randomised(official(num_classes=None))
    assert sidenet.y_embedder.embedding_table.weight.shape == (1, 8)
    x, v, t, h, _ = inputs()
    out = authors_forward(dict(sidenet.state_dict()), x, v, t, h, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(sidenet(x, v, t, h), out, rtol=1e-6, atol=1e-6)


def test_only_for_images_and_only_with_the_plain_head():
    with pytest.raises(ValueError, match=r"image samples \(C, H, W\) only.*use architecture: project"):
        sidenet_for(Shaped((6,)), {"architecture": "official", **TINY})
    with pytest.raises(ValueError, match="official architecture has the authors' plain head only"):
        SideNetConfig.from_settings({"architecture": "official", "output_head": "gated"})


# -- the authors' checkpoint files -----------------------------------------------------------------


def authors_file(path, backbone=None, layout="wrapper", prefix="", seed=0):
    """A file as train_BA_side.py writes it ({side_model, ema_side_model, optimizer, step}) or a bare
    state dict; keys with ``prefix``. Returns (path, EMA weights, raw weights)."""
    shape, classes = ((2, 6, 6), 3) if backbone is None else (backbone.sample_shape, backbone.num_classes)
    raw, ema = randomised(official(shape, classes), seed), randomised(official(shape, classes), seed + 1)
    named = {k: {prefix + n: w for n, w in m.state_dict().items()} for k, m in (("raw", raw), ("ema", ema))}
    if layout == "wrapper":
        optimizer = torch.optim.AdamW(raw.parameters(), lr=1e-4)
        raw(*inputs()).sum().backward()
        optimizer.step()
        named["raw"] = {prefix + n: w for n, w in raw.state_dict().items()}
        stored = {"side_model": named["raw"], "ema_side_model": named["ema"], "optimizer": optimizer.state_dict(),
                  "step": 2000}
    else:
        stored = named["ema"]
    torch.save(stored, path)
    return path, ema.state_dict(), raw.state_dict()


@pytest.mark.parametrize("layout, prefix", [("wrapper", ""), ("wrapper", "module."), ("state dict", ""),
                                            ("state dict", "module.")])
def test_an_authors_file_loads_with_their_weights(tmp_path, layout, prefix):
    path, ema, raw = authors_file(tmp_path / "BA_side_002000.pt", layout=layout, prefix=prefix)
    loaded = load_checkpoint(path, TinyImage())
    assert isinstance(loaded.sidenet, OfficialImageSideNet) and loaded.config.architecture == "official"
    x, v, t, h, y = inputs()
    torch.testing.assert_close(loaded.sidenet(x, v, t, h, y), authors_forward(ema, x, v, t, h, y), rtol=1e-6, atol=1e-6)
    assert loaded.stats["iterations"] == (2000 if layout == "wrapper" else None)
    assert loaded.stats["weights"] == ("ema_side_model" if layout == "wrapper" else "state dict")
    if layout == "wrapper":  # the raw weights on request
        again = load_checkpoint(path, TinyImage(), weights="raw").sidenet
        assert all(torch.equal(again.state_dict()[k], w) for k, w in raw.items())


def one_line(err, path):
    text = str(err.value)
    assert "\n" not in text and str(path) in text, text
    return text


def test_wrong_architecture_names_the_file_and_the_setting(tmp_path):
    path, *_ = authors_file(tmp_path / "theirs.pt")
    with pytest.raises(CheckpointMismatchError, match="holds the authors' SideNet.*set architecture: official") as err:
        load_checkpoint(path, TinyImage(), architecture="project")
    one_line(err, path)
    backbone = TinyImage()
    ours = sidenet_for(backbone, SideNetConfig(width=8, depth=1, embed_dim=8, heads=2).network)
    mine = save_checkpoint(tmp_path / "ours.pt", raw=ours, ema=ours, config=SideNetConfig(), stats={},
                           backbone=backbone)
    with pytest.raises(CheckpointMismatchError, match="of the project architecture.*set architecture: project") as err:
        load_checkpoint(mine, backbone, architecture="official")
    one_line(err, mine)
    torch.save(ours.state_dict(), tmp_path / "bare.pt")  # the project's weights without their spec
    with pytest.raises(CheckpointMismatchError, match="bare weights of this project's SideNet") as err:
        load_checkpoint(tmp_path / "bare.pt", backbone)
    one_line(err, tmp_path / "bare.pt")


def test_a_file_that_does_not_fit_names_the_first_offending_keys(tmp_path):
    path, ema, _ = authors_file(tmp_path / "theirs.pt", layout="state dict")
    broken = dict(ema)
    del broken["blocks.0.conv2_pw.bias"]
    broken["blocks.0.extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: blocks\.0\.conv2_pw\.bias; "
                                                      r"unexpected keys: blocks\.0\.extra\.weight") as err:
        load_checkpoint(tmp_path / "broken.pt", TinyImage())
    one_line(err, tmp_path / "broken.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError, match="is not a SideNet checkpoint.*top-level keys: weights") as err:
        load_checkpoint(tmp_path / "other.pt", TinyImage())
    one_line(err, tmp_path / "other.pt")


@pytest.mark.parametrize("backbone, message", [
    (Shaped((4, 6, 6), 3), r"for 2-channel images; the backbone's samples have shape \(4, 6, 6\)"),
    (Shaped((2, 6, 6), 10), "for 3 classes .*the backbone has 10 classes"),
    (Shaped((2, 6, 6), None), "for 3 classes .*the backbone has no classes"),
])
def test_a_file_for_another_backbone_says_what_differs(tmp_path, backbone, message):
    path, *_ = authors_file(tmp_path / "theirs.pt")
    with pytest.raises(CheckpointMismatchError, match=message) as err:
        load_checkpoint(path, backbone)
    one_line(err, path)


def test_ba_samples_with_an_authors_file(tmp_path):
    backbone = TinyImage()
    path, *_ = authors_file(tmp_path / "theirs.pt")
    noise, labels = torch.randn(3, 2, 6, 6), torch.tensor([0, 2, 3])
    results = []
    for params in ({"checkpoint": str(path), "architecture": "official"}, {"checkpoint": str(path)}):
        solver = sb.get_solver("ba", **params)
        solver.prepare(backbone)
        result = sb.sample(backbone, solver, noise, labels, nfe=3, cfg_scale=2.0)
        assert result.nfe == 3 and torch.isfinite(result.samples).all()
        results.append(result.samples)
        row = solver.row_fields()
        assert row["sidenet_architecture"] == "official" and row["sidenet_iterations"] == 2000
        assert row["sidenet_recipe"] is None and row["sidenet_data_mode"] is None
    assert torch.equal(*results)  # the layout tells the architecture; saying it changes nothing
    with pytest.raises(ValueError, match="drop the settings width.*architecture alone may stay"):
        sb.get_solver("ba", checkpoint=str(path), architecture="official", width=8)


PLUGIN = '''
import torch
from solverbench import Backbone, register_backbone


@register_backbone("tiny-image")
class TinyImage(Backbone):
    sample_shape, num_classes, null_label = (2, 6, 6), 3, 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, t, y=None):
        return x - 2 * torch.tanh(self.conv(x)) * t.reshape(-1, 1, 1, 1)
'''


def test_a_grid_loads_an_authors_file(tmp_path):
    (tmp_path / "tiny_image.py").write_text(PLUGIN)
    authors_file(tmp_path / "BA_side_002000.pt")
    grid = {"name": "released", "plugins": ["tiny_image.py"], "backbones": ["tiny-image"],
            "solvers": [{"name": "ba", "params": {"checkpoint": "BA_side_002000.pt", "architecture": "official"}}],
            "nfe": [3], "num_samples": 4, "metrics": ["trajectory_error"], "reference": {"rtol": 1e-5, "atol": 1e-5}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    assert main(["run", str(tmp_path / "g.yaml"), "--results", str(tmp_path / "results"), "--no-progress"]) == 0
    rows = pd.read_parquet(tmp_path / "results" / "released" / "results.parquet")
    assert rows["status"].tolist() == ["ok"] and rows["sidenet_architecture"].tolist() == ["official"]
    assert rows["sidenet_params"].tolist() == [official().parameter_count()]
    assert rows["sidenet_iterations"].tolist() == [2000]


# -- the node the authors' sampler uses ------------------------------------------------------------


def test_the_authors_truncated_lobatto_node_is_a_custom_a():
    """BA_bidirectional_anchor_sampler's default node_alpha = 0.2763932: Lobatto's node to 8 digits."""
    rule, exact = q.bi_anchor_rule(None, 2, 0.2763932), q.bi_anchor_rule("lobatto", 2, None)
    assert 0 < abs(rule.nodes[1] - exact.nodes[1]) / exact.nodes[1] < 1e-8
    backbone = GaussianMixture("gmm64")
    noise = torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.arange(64) % backbone.num_classes
    samples = []
    for params in ({"a": 0.2763932}, {"rule": "lobatto"}):
        solver = sb.get_solver("ba", checkpoint=str(ROOT / "solvers/ba/checkpoints/gmm64.pt"), **params)
        solver.prepare(backbone)
        result = sb.sample(backbone, solver, noise, labels, nfe=10)
        assert result.nfe == 10 and torch.isfinite(result.samples).all()
        samples.append(result.samples)
    assert solver.params()["rule"] == "lobatto"
    difference = ((samples[0] - samples[1]).norm() / samples[1].norm()).item()
    assert 0 < difference < 1e-7, difference  # about 1.6e-9 in float64


# -- the authors' training recipe ------------------------------------------------------------------


def test_the_official_recipe_gives_the_authors_knobs_and_explicit_ones_win():
    config = SideNetConfig.from_settings({"recipe": "official"}, {"iterations": 250})
    assert (config.lr, config.lr_schedule, config.ema_decay, config.batch_size, config.iterations) == \
        (1e-4, "constant", 0.9996, 168, 250)
    assert (config.chain_length, config.step_rate, config.label_dropout, config.sim_nodes, config.data) == \
        (8, 50.0, 0.1, 3, "data")
    assert (config.weight_decay, config.grad_clip, config.architecture) == (0.0, 1.0, "project")
    assert SideNetConfig.from_settings({"recipe": "official", "lr": 1e-3}).lr == 1e-3
    project = SideNetConfig.from_settings({})
    assert (project.lr, project.lr_schedule, project.ema_decay, project.recipe) == (1e-3, "cosine", 0.999, "project")
    assert config.optimisation.recipe == "official" and config.nested()["optimisation"]["recipe"] == "official"


def test_ema_with_and_without_warm_up():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    plain, warm = EMA(model, 0.9, warmup=False), EMA(model, 0.9)
    torch.nn.init.ones_(model.weight)
    plain.update(model)
    warm.update(model)
    assert plain.model.weight.item() == pytest.approx(0.1) and warm.model.weight.item() == pytest.approx(0.9)


def test_official_steps_leave_at_least_1e_5_of_room():
    g = torch.Generator().manual_seed(0)
    h = signed_steps(torch.zeros(4000), 50.0, g, min_room=1e-5)
    toward_data = h[h > 0]
    assert len(toward_data) > 1000 and (toward_data <= 1e-5).all()
    assert (signed_steps(torch.zeros(4000), 50.0, torch.Generator().manual_seed(0)) <= 0).all()


def test_a_tiny_official_training_runs_on_cpu_with_bfloat16_autocast(tmp_path):
    backbone = TinyImage()
    config = SideNetConfig.from_settings({"architecture": "official", "recipe": "official"},
                                         {**TINY, "iterations": 3, "batch_size": 4, "chain_length": 3})
    loaded = train_checkpoint(backbone, config, tmp_path / "s.pt", progress=False)
    assert isinstance(loaded.sidenet, OfficialImageSideNet) and loaded.config == config
    stats = loaded.stats
    assert stats["recipe"] == "official" and stats["backbone_autocast"] == "bfloat16" and stats["data_mode"] == "data"
    assert len(stats["loss"]) == 3 and all(math.isfinite(v) for v in stats["loss"])
    assert backbone.autocast_seen and all(backbone.autocast_seen)  # every chain call of the backbone
    assert torch.load(tmp_path / "s.pt", weights_only=True)["stats"]["recipe"] == "official"
    # the project recipe leaves the backbone in full precision and says so
    backbone.autocast_seen.clear()
    *_, stats = train_sidenet(backbone, SideNetConfig(iterations=1, batch_size=4, chain_length=2, width=8, depth=1,
                                                      embed_dim=8, heads=2), progress=False)
    assert stats.recipe == "project" and stats.backbone_autocast is None and not any(backbone.autocast_seen)


def test_rebuilt_from_its_spec():
    sidenet = official()
    again = build_sidenet(sidenet.spec)
    assert type(again) is OfficialImageSideNet and again.spec == sidenet.spec
