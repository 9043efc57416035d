"""A solve bank kept on disk (``train-sidenet --bank-dir``): read back, it trains to the same bits as one solved in
place; a stopped bank resumes; banks that share a stream share their first batches; a foreign file is refused."""
import pytest
import torch

import solverbench as sb
import solvers.ba.questions as questions
from backbones.gmm import GaussianMixture
from solverbench.cli import main
from solvers.ba.cache import train_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.training import train_sidenet

BANK = dict(questions="solves", solve_nfe_min=2, solve_nfe_max=4, solve_bank=48, questions_per_solve=4,
            width=16, depth=1, embed_dim=8, batch_size=16, iterations=3)


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture(dim=4, num_classes=2, components_per_class=2, std=0.3, mean_scale=1.5)


def same_training(a, b):
    (_, ema_a, stats_a), (_, ema_b, stats_b) = a, b
    return stats_a.loss == stats_b.loss and stats_a.backbone_calls == stats_b.backbone_calls and all(
        torch.equal(p, q) for p, q in zip(ema_a.state_dict().values(), ema_b.state_dict().values()))


def batch_files(root):
    return sorted(p.name for p in root.glob("*/batch_*.pt"))


def test_a_bank_read_back_trains_to_the_same_bits_and_solves_nothing(gmm, tmp_path, monkeypatch):
    config = SideNetConfig(**BANK)
    in_place = train_sidenet(gmm, config, progress=False)
    written = train_sidenet(gmm, config, progress=False, bank_dir=tmp_path)
    assert batch_files(tmp_path) == ["batch_00000_16.pt", "batch_00001_16.pt", "batch_00002_16.pt"]
    assert written[2].bank_batches_read == 0 and same_training(in_place, written)
    monkeypatch.setattr(questions, "exact_trajectories", lambda *args: pytest.fail("solved a batch on disk"))
    read = train_sidenet(gmm, config, progress=False, bank_dir=tmp_path)
    assert read[2].bank_batches_read == 3 and read[2].bank_seconds_read > 0
    assert same_training(in_place, read)  # the calls too: a read batch counts what its solve took


def test_a_stopped_bank_resumes_and_a_larger_one_extends_a_smaller(gmm, tmp_path):
    train_sidenet(gmm, SideNetConfig(**BANK), progress=False, bank_dir=tmp_path)
    (last,) = tmp_path.glob("*/batch_00002_16.pt")
    last.unlink()  # as if stopped while solving the third batch
    resumed = train_sidenet(gmm, SideNetConfig(**BANK), progress=False, bank_dir=tmp_path)
    assert resumed[2].bank_batches_read == 2 and same_training(train_sidenet(gmm, SideNetConfig(**BANK),
                                                                             progress=False), resumed)
    larger = train_sidenet(gmm, SideNetConfig(**{**BANK, "solve_bank": 40}), progress=False, bank_dir=tmp_path)
    assert larger[2].bank_batches_read == 2  # its third batch has 8 trajectories, not 16: solved
    assert "batch_00002_8.pt" in batch_files(tmp_path)
    other = train_sidenet(gmm, SideNetConfig(**{**BANK, "solve_nfe_max": 3}), progress=False, bank_dir=tmp_path)
    reseeded = train_sidenet(gmm, SideNetConfig(**{**BANK, "seed": 1}), progress=False, bank_dir=tmp_path)
    assert other[2].bank_batches_read == reseeded[2].bank_batches_read == 0  # other questions, another stream
    assert len(list(tmp_path.iterdir())) == 3


def test_a_file_of_another_bank_is_named_moved_aside_and_solved_again(gmm, tmp_path, capsys):
    solved = train_sidenet(gmm, SideNetConfig(**BANK), progress=False, bank_dir=tmp_path)
    (first,) = tmp_path.glob("*/batch_00000_16.pt")
    saved = torch.load(first, weights_only=True)
    torch.save({**saved, "key": {**saved["key"], "solve_nfe_max": 9}}, first)
    capsys.readouterr()
    again = train_sidenet(gmm, SideNetConfig(**BANK), progress=False, bank_dir=tmp_path)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"solve bank batch {first} cannot be used (was written for another bank" in line
    assert again[2].bank_batches_read == 2 and same_training(solved, again)
    assert first.with_name(first.name + ".damaged").is_file() and first.is_file()


def test_the_cli_keeps_the_bank_and_refuses_a_bank_dir_without_a_bank(tmp_path, capsys):
    options = ["--backbone-params", "{preset: gmm-smooth}", "--results", str(tmp_path), "--no-progress",
               *(f"--{k.replace('_', '-')}={v}" for k, v in BANK.items())]
    assert main(["train-sidenet", "gmm", *options, "--bank-dir", str(tmp_path / "banks")]) == 0
    assert len(batch_files(tmp_path / "banks")) == 3
    assert main(["train-sidenet", "gmm", *options, "--bank-dir", str(tmp_path / "banks")]) == 0
    assert "3 solve-bank batches read from" in capsys.readouterr().out
    assert main(["train-sidenet", "gmm", "--backbone-params", "{preset: gmm-smooth}", "--bank-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "is for a solve bank (questions: solves or both, with solve_bank)" in error
    assert len(error.strip().splitlines()) == 1


def test_a_read_bank_s_solving_counts_in_the_recorded_training_time(gmm, tmp_path):
    config = SideNetConfig(**BANK)
    train_checkpoint(gmm, config, tmp_path / "first.pt", progress=False, bank_dir=tmp_path / "banks")
    loaded = train_checkpoint(gmm, config, tmp_path / "again.pt", progress=False, bank_dir=tmp_path / "banks")
    stats = loaded.stats
    assert stats["bank_batches_read"] == 3 and stats["bank_seconds_read"] > 0
    solver = sb.get_solver("ba", checkpoint=str(tmp_path / "again.pt"))
    solver.prepare(gmm)
    row = solver.row_fields()
    assert row["train_seconds"] == row["sidenet_train_seconds"] == stats["seconds"] + stats["bank_seconds_read"]


def test_a_chain_of_fine_tunings_pays_for_its_kept_bank_once(gmm, tmp_path):
    config = SideNetConfig(**BANK)
    first = train_checkpoint(gmm, config, tmp_path / "first.pt", progress=False, bank_dir=tmp_path / "banks")
    assert first.stats["bank"] and first.stats["bank_seconds"] > 0 and first.stats["bank_batches_read"] == 0
    paid = first.stats["seconds"]  # solved in place: the bank's solving is in its own seconds
    second = train_checkpoint(gmm, SideNetConfig(**BANK, init_from=str(tmp_path / "first.pt")),
                              tmp_path / "second.pt", progress=False, bank_dir=tmp_path / "banks").stats
    assert second["bank"] == first.stats["bank"] and second["bank_batches_read"] == 3
    assert second["bank_seconds_counted"] == pytest.approx(second["bank_seconds_read"])
    solver = sb.get_solver("ba", checkpoint=str(tmp_path / "second.pt"))
    solver.prepare(gmm)
    assert solver.row_fields()["train_seconds"] == pytest.approx(second["seconds"] + paid)
    third = train_checkpoint(gmm, SideNetConfig(**BANK, init_from=str(tmp_path / "second.pt")),
                             tmp_path / "third.pt", progress=False, bank_dir=tmp_path / "banks").stats
    assert third["init_seconds"] == pytest.approx(second["seconds"] + paid)  # the bank once along the chain
    assert third["bank_seconds_counted"] == pytest.approx(third["bank_seconds_read"])
    other = train_checkpoint(gmm, SideNetConfig(**{**BANK, "seed": 1}, init_from=str(tmp_path / "first.pt")),
                             tmp_path / "other.pt", progress=False, bank_dir=tmp_path / "banks").stats
    assert other["bank"] != first.stats["bank"] and other["bank_seconds_counted"] == 0.0  # another bank: its own
