"""benchmarks/reproduce_checkpoint.py: a SideNet checkpoint's first iterations redone from the settings it records."""
import runpy
from pathlib import Path

import pytest
import torch

from backbones.gmm import GaussianMixture
from solvers.ba.checkpoint import save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.training import train_sidenet

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_checkpoint.py"


def test_a_checkpoint_s_recipe_is_checked_on_its_first_iterations(tmp_path, capsys):
    """reproduce_checkpoint.py: a training's first iterations, redone under the whole run's schedule, give its
    recorded losses to the bit; a recorded loss changed is found."""
    config = SideNetConfig(width=16, depth=1, embed_dim=8, batch_size=16, chain_length=2, iterations=6)
    backbone = GaussianMixture("gmm-smooth")
    raw, ema, stats = train_sidenet(backbone, config, progress=False)
    path = save_checkpoint(tmp_path / "tiny.pt", raw=raw, ema=ema, config=config, stats=stats.as_dict(),
                           backbone=backbone)
    check = runpy.run_path(str(SCRIPT))["main"]
    options = [str(path), "gmm", "--backbone-params", "{preset: gmm-smooth}", "--iterations", "3"]
    assert check(options) == 0 and "3 of the first 3 iteration losses identical to the bit" in capsys.readouterr().out
    _, _, shorter = train_sidenet(backbone, SideNetConfig(**{**config.as_dict(), "iterations": 3}), progress=False)
    assert shorter.loss[1:] != stats.loss[1:3]  # a 3-iteration run has another schedule: not what is checked
    saved = torch.load(path, weights_only=True)
    saved["stats"]["loss"][2] += 1e-9
    torch.save(saved, path)
    assert check(options) == 1 and "the first differing is iteration 2" in capsys.readouterr().out
    with pytest.raises(ValueError, match="stop_after must be 1 to the 6 iterations, got 7"):
        train_sidenet(backbone, config, progress=False, stop_after=7)
    banked = SideNetConfig(width=16, depth=1, embed_dim=8, batch_size=16, iterations=4, questions="solves",
                           solve_nfe_min=2, solve_nfe_max=3, solve_bank=32)
    raw, ema, stats = train_sidenet(backbone, banked, progress=False, bank_dir=tmp_path / "banks")
    path = save_checkpoint(tmp_path / "banked.pt", raw=raw, ema=ema, config=banked, stats=stats.as_dict(),
                           backbone=backbone)
    options = [str(path), "gmm", "--backbone-params", "{preset: gmm-smooth}", "--iterations", "2"]
    assert check([*options, "--bank-dir", str(tmp_path / "banks")]) == 0  # the bank read back: the same bits
    assert "2 of the first 2 iteration losses identical" in capsys.readouterr().out
