"""The toy2d backbones: their data, the shipped flows, training (loss goes down) and train-backbone."""
import pytest
import torch

import solverbench as sb
from backbones.checkpoints import CheckpointError
from backbones.flow_training import flow_matching_loss, train_flow
from backbones.toy2d.backbone import WEIGHTS, Toy2DFlow, Toy2DTrainingConfig
from backbones.toy2d.datasets import TOY_DATASETS
from backbones.toy2d.mlp import VelocityMLP
from solverbench.cli import main
from solverbench.metrics.distribution import sliced_wasserstein2


@pytest.mark.parametrize("dataset", sorted(TOY_DATASETS))
def test_shipped_flow_draws_its_data_set(dataset):
    """Euler NFE 50 from the shipped flow lands close to the data, far closer than the noise is."""
    b = sb.resolve_backbone("toy2d", dataset=dataset)
    assert (b.sample_shape, b.num_classes, b.null_label) == ((2,), None, None)
    assert b.identity()["dataset"] == dataset and len(b.identity()["checkpoint_sha256"]) == 64
    assert b.to("cpu").eval() is b  # as the runner prepares a backbone
    data, labels = b.sample_data(2000, torch.Generator().manual_seed(0))
    assert data.shape == (2000, 2) and labels is None
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    samples = sb.sample(b, "euler", noise, nfe=50).samples
    to_data = sliced_wasserstein2(samples, data)
    assert to_data < 0.1 and to_data < sliced_wasserstein2(noise, data) / 4


def test_training_a_few_steps_lowers_the_loss():
    draw = Toy2DFlow.training_data(Toy2DTrainingConfig(dataset="moons"))
    g = torch.Generator().manual_seed(0)
    x0, _ = draw(4096, g)

    def loss(net):
        with torch.no_grad():
            return flow_matching_loss(net, x0, None, torch.Generator().manual_seed(1)).item()

    torch.manual_seed(0)
    net = VelocityMLP(hidden=64, depth=2)
    before = loss(net)
    ema, losses = train_flow(net, draw, Toy2DTrainingConfig(steps=150, batch_size=256, ema_decay=0.9), progress=False)
    assert len(losses) == 150
    # from 2.16 (zero velocity) to about 1.72 here; the shipped, fully trained moons flow scores 1.41
    assert loss(net) < 0.85 * before and loss(ema) < 0.85 * before


def test_train_backbone_command_writes_a_cached_checkpoint(tmp_path, capsys):
    argv = ["train-backbone", "toy2d", "--dataset", "spirals", "--steps", "3", "--batch-size", "16",
            "--hidden", "8", "--depth", "1", "--results", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    written = list((tmp_path / ".cache" / "backbones").glob("toy2d-*.pt"))
    assert len(written) == 1 and "wrote" in capsys.readouterr().out
    b = Toy2DFlow(checkpoint=written[0])
    assert b.dataset == "spirals" and b(torch.zeros(4, 2), torch.full((4,), 0.5)).shape == (4, 2)
    assert main(argv) == 0  # same options: the cached checkpoint is reused
    assert "exists" in capsys.readouterr().out


def test_train_backbone_refuses_backbones_without_training(capsys):
    assert main(["train-backbone", "gmm"]) == 2
    assert "cannot be trained" in capsys.readouterr().err


def test_parameters_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown toy2d dataset 'circles'"):
        Toy2DFlow(dataset="circles")
    with pytest.raises(ValueError, match="needs dataset="):
        Toy2DFlow()
    moons = Toy2DFlow(dataset="moons")
    with pytest.raises(ValueError, match="trained on 'moons', not 'spirals'"):
        Toy2DFlow(dataset="spirals", checkpoint=moons.checkpoint)
    with pytest.raises(ValueError, match="unconditional"):
        moons.sample_data(4, torch.Generator(), labels=torch.zeros(4))


def test_a_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "digits.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="is not a file torch.save wrote"):
        Toy2DFlow(checkpoint=path)
    from backbones.digits.backbone import SHIPPED_FLOW

    with pytest.raises(ValueError, match="no Toy2DFlow training config"):
        Toy2DFlow(checkpoint=SHIPPED_FLOW)


def test_a_grid_backbone_checkpoint_is_read_next_to_the_grid_file(tmp_path, monkeypatch):
    """As plugins and SideNet checkpoints are; the rows keep the path as written."""
    import shutil

    import yaml

    from solverbench.grid import GridError, load_grid
    from solverbench.engine import run_grid

    grids = tmp_path / "grids"
    (grids / "weights").mkdir(parents=True)
    shutil.copyfile(WEIGHTS / "moons.pt", grids / "weights" / "moons.pt")
    raw = {"name": "relative", "backbones": [{"name": "toy2d", "params": {"checkpoint": "weights/moons.pt"}}],
           "solvers": ["euler"], "nfe": [2], "num_samples": 4, "metrics": []}
    (grids / "g.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)  # weights/moons.pt does not exist from here
    rows = run_grid(load_grid(grids / "g.yaml"), tmp_path / "results", progress=False).frame
    assert rows["status"].tolist() == ["ok"] and "weights/moons.pt" in rows["backbone_params"].iloc[0]
    (grids / "weights" / "moons.pt").unlink()
    with pytest.raises(GridError, match="backbones\\[0\\].params"):
        load_grid(grids / "g.yaml")
