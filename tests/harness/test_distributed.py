"""torchrun: a grid run by 2 processes (gloo, CPU) is bitwise the run of 1, resumes like it, and
the SideNet trainer runs data-parallel (solverbench.distributed)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from solverbench.distributed import PeerFailed, World, failure, raise_first
from solverbench.errors import GridError
from solvers.ba.training import rank_share

ROOT = Path(__file__).resolve().parents[2]
GMM_CHECKPOINT = ROOT / "solvers" / "ba" / "checkpoints" / "gmm64.pt"

GMM_GRID = f"""\
name: shard
backbones:
  - {{name: gmm, params: {{preset: gmm64}}}}
solvers:
  - euler
  - {{name: flow-dpm, params: {{order: 2}}}}
  - {{name: ba, params: {{checkpoint: {GMM_CHECKPOINT}}}}}
  - {{name: ba-single, params: {{iterations: 3, batch_size: 16, width: 16, depth: 1, embed_dim: 16}}}}
nfe: [3, 5]
guidance: {{scale: 2.0, interval: [0.0, 0.7]}}
num_samples: 100
batch_size: 16
metrics: [trajectory_error, sliced_wasserstein]
reference: {{rtol: 1.0e-6, atol: 1.0e-6}}
save_samples: 100
"""

DIGITS_GRID = """\
name: shard-digits
backbones:
  - {name: digits}
solvers:
  - euler
nfe: [3]
guidance: {scale: 2.0}
num_samples: 40
batch_size: 16
metrics: [trajectory_error, fid]
metric_options: {reference_samples: 100}
reference: {rtol: 1.0e-4, atol: 1.0e-4}
save_samples: 40
"""

# sequential sample sizes: a column apart (stops early) and one of equal solvers that runs to max, uneven looks
# (16, 32, 40: the last one batch, one rank idle)
SEQUENTIAL_GRID = """\
name: shard-sequential
backbones:
  - {name: gmm, params: {preset: gmm2d}}
solvers:
  - euler
  - heun
  - {name: flow-dpm, params: {order: [2, 3]}, nfe: [2]}
nfe: [2, 3]
num_samples: {start: 16, max: 40, until: separated, on: [trajectory_error]}
batch_size: 8
metrics: [trajectory_error, sliced_wasserstein]
save_samples: 40
"""

COMPARED = ("nfe", "trajectory_error", "sliced_wasserstein", "fid", "num_samples", "looks", "stop_reason")


def solverbench(args: list[str], cwd: Path, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(launcher + ["-m", "solverbench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def run_grid_file(tmp_path: Path, text: str, results: str, processes: int) -> pd.DataFrame:
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    done = solverbench(["run", str(grid), "--results", results, "--no-progress"], tmp_path, processes)
    assert done.returncode == 0, done.stderr[-3000:]
    name = text.split("\n", 1)[0].split(": ")[1]
    return pd.read_parquet(tmp_path / results / name / "results.parquet").set_index("cell_id").sort_index()


def assert_same_run(tmp_path: Path, one: pd.DataFrame, two: pd.DataFrame, name: str) -> None:
    assert list(one.index) == list(two.index)
    assert (one["status"] == "ok").all() and (two["status"] == "ok").all(), two["error"].tolist()
    assert set(one["processes"]) == {1} and set(two["processes"]) == {2}
    columns = [c for c in one.columns if c.startswith(COMPARED)]
    pd.testing.assert_frame_equal(one[columns], two[columns], check_exact=True)
    for cell_id in one.index:  # every sample, bit for bit
        a = torch.load(tmp_path / "one" / name / "samples" / f"{cell_id}.pt", weights_only=True)
        b = torch.load(tmp_path / "two" / name / "samples" / f"{cell_id}.pt", weights_only=True)
        assert torch.equal(a["samples"], b["samples"])
    for cached in (tmp_path / "one" / ".cache" / "references").glob("*.pt"):  # the sharded reference solve
        other = tmp_path / "two" / ".cache" / "references" / cached.name
        assert torch.equal(torch.load(cached, weights_only=True)["endpoints"],
                           torch.load(other, weights_only=True)["endpoints"])


def test_two_processes_give_the_samples_and_metrics_of_one(tmp_path):
    """Uneven batches (100 = 6 x 16 + 4), guidance on part of the interval, a shipped SideNet and one
    trained during the run (rank 0 trains it, the other rank loads it)."""
    one = run_grid_file(tmp_path, GMM_GRID, "one", 1)
    two = run_grid_file(tmp_path, GMM_GRID, "two", 2)
    assert len(one) == 8
    assert_same_run(tmp_path, one, two, "shard")
    sidenets = [sorted((tmp_path / run / ".cache" / "sidenet").glob("*.pt")) for run in ("one", "two")]
    assert [p.name for p in sidenets[0]] == [p.name for p in sidenets[1]] and len(sidenets[0]) == 1


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_image_metrics_and_their_reference_agree_across_processes(tmp_path):
    one = run_grid_file(tmp_path, DIGITS_GRID, "one", 1)
    two = run_grid_file(tmp_path, DIGITS_GRID, "two", 2)
    assert one["fid"].notna().all()
    assert_same_run(tmp_path, one, two, "shard-digits")


@pytest.mark.slow  # over 5 s on 2 cores: run with -m slow
def test_sequential_sample_sizes_look_alike_across_processes(tmp_path):
    """Each look's new batches shared by the ranks, rank 0's decision taken by every rank: the columns stop at the
    same look with the same numbers."""
    one = run_grid_file(tmp_path, SEQUENTIAL_GRID, "one", 1)
    two = run_grid_file(tmp_path, SEQUENTIAL_GRID, "two", 2)
    assert set(one["stop_reason"]) == {"separated", "max reached"}
    assert_same_run(tmp_path, one, two, "shard-sequential")


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_a_sharded_run_resumes_where_it_stopped(tmp_path):
    """A run that ended after its first cell (here: a grid that had only it) is taken up by the next
    run, as a killed run would be; the done cell is not run again."""
    short = GMM_GRID.replace("nfe: [3, 5]", "nfe: [3]").replace("  - {name: flow-dpm, params: {order: 2}}\n", "")
    first = run_grid_file(tmp_path, short, "two", 2)
    grid = tmp_path / "grid.yaml"
    grid.write_text(GMM_GRID)  # the same file, grown
    done = solverbench(["run", str(grid), "--results", "two", "--no-progress"], tmp_path, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(first)} of 8 cells already done" in done.stderr
    second = pd.read_parquet(tmp_path / "two" / "shard" / "results.parquet").set_index("cell_id")
    assert len(second) == 8 and (second["status"] == "ok").all()
    assert (second.loc[first.index, "timestamp"] == first["timestamp"]).all()  # not rerun
    assert done.stderr.count("8 cells in") == 1  # rank 0 alone reports


@pytest.mark.slow  # about 4 s on 2 cores: run with -m slow
def test_a_study_that_does_not_shard_is_refused_under_torchrun(tmp_path):
    grid = tmp_path / "lte.yaml"
    grid.write_text((ROOT / "configs" / "lte.yaml").read_text())
    done = solverbench(["run", str(grid), "--results", "r", "--no-progress"], tmp_path, 2)
    assert done.returncode != 0  # torchrun ends with 1 where a rank ended with another status (here 2)
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert lines == ["solverbench run: error: kind: lte runs in one process; run it without torchrun (only kind: "
                     "sweep splits its samples across processes)"]


# both: two losses, the SideNet called through DDP in each; a guided bank: split over the ranks, two branches
@pytest.mark.parametrize("questions", [pytest.param(["chains"], marks=pytest.mark.slow),
                                       pytest.param(["both"], marks=pytest.mark.slow),
                                       pytest.param(["solves", "--solve-bank", "64", "--solve-guidance", "2"],
                                                    marks=pytest.mark.slow)],
                         ids=["chains", "both", "guided-bank"])
def test_sidenet_training_is_data_parallel_under_torchrun(tmp_path, questions):
    out = tmp_path / "sidenet.pt"
    done = solverbench(["train-sidenet", "gmm", "--backbone-params", "{preset: gmm64}", "--iterations", "4",
                        "--batch-size", "32", "--width", "16", "--depth", "1", "--embed-dim", "16", "--out", str(out),
                        "--questions", *questions, "--no-progress"], tmp_path, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("over 2 processes (DistributedDataParallel)") == 1
    stats = torch.load(out, weights_only=True)["stats"]
    assert stats["processes"] == 2 and stats["batch_size"] == 32 and len(stats["loss"]) == 4


@pytest.mark.slow  # over 10 s on 2 cores: run with -m slow
def test_each_rank_keeps_its_share_of_a_bank_and_reads_it_back(tmp_path):
    """--bank-dir under torchrun: a folder per rank's stream; rerun, the bank is read and the weights are the same."""
    def train(out):
        done = solverbench(["train-sidenet", "gmm", "--backbone-params", "{preset: gmm64}", "--iterations", "3",
                            "--batch-size", "32", "--width", "16", "--depth", "1", "--embed-dim", "16", "--out",
                            str(tmp_path / out), "--questions", "solves", "--solve-nfe-max", "6", "--solve-bank", "64",
                            "--bank-dir", str(tmp_path / "banks"), "--no-progress"], tmp_path, 2)
        assert done.returncode == 0, done.stderr[-3000:]
        return torch.load(tmp_path / out, weights_only=True), done.stdout

    first, _ = train("first.pt")
    assert len(list((tmp_path / "banks").iterdir())) == 2  # the two ranks' streams
    again, said = train("again.pt")
    assert "solve-bank batches read from" in said and again["stats"]["bank_batches_read"] == 1  # rank 0: 32 of 64
    assert all(torch.equal(first["ema"][k], again["ema"][k]) for k in first["ema"])


TINY_GRID = """\
name: tiny
backbones: [{name: gmm, params: {preset: gmm2d}}]
solvers: [euler]
nfe: [2]
num_samples: 8
metrics: [trajectory_error]
"""


def bad_launch(tmp_path: Path, case: str) -> tuple[str, str]:
    """The grid file of a bad launch and the message its one line must carry."""
    grid = tmp_path / "grid.yaml"
    if case == "unknown key":  # every rank reads the grid and fails
        grid.write_text(TINY_GRID + "bogus: 3\n")
        return str(grid), "grid key 'bogus': bad value 3; unknown key"
    if case == "another grid's folder":  # found after the process group is up: rank 0 decides it
        grid.write_text(TINY_GRID)
        (tmp_path / "r" / "tiny").mkdir(parents=True)
        (tmp_path / "r" / "tiny" / "grid.json").write_text('{"grid_file": "/elsewhere/tiny.yaml", "grid_hash": "x"}')
        return str(grid), "belongs to the grid file /elsewhere/tiny.yaml"
    # one rank fails to read the grid while the other reads it: that one must not wait alone
    (tmp_path / "rank1.py").write_text("import os\nif os.environ['RANK'] == '1':\n    raise ValueError('no rank 1')\n")
    grid.write_text(TINY_GRID + "plugins: [rank1.py]\n")
    return str(grid), "while being imported: no rank 1 (on rank 1 of 2)"


@pytest.mark.parametrize("case", [pytest.param("unknown key", marks=pytest.mark.slow),
                                  pytest.param("another grid's folder", marks=pytest.mark.slow),
                                  "one rank fails to read the grid"])
def test_a_bad_grid_under_torchrun_is_one_line_and_every_rank_exits_2(tmp_path, case):
    """torchrun itself ends with status 1 and its own failure report wherever a rank exits non-zero;
    the ranks print the one line once, show no traceback of theirs, and all exit with 2."""
    grid, message = bad_launch(tmp_path, case)
    done = solverbench(["run", grid, "--results", "r", "--no-progress"], tmp_path, 2)
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "solverbench run: error:" in line]
    assert len(lines) == 1 and message in lines[0], output[-3000:]
    statuses = re.findall(r"exitcode +: (-?\d+)", done.stderr)  # torchrun's failure report: a line per rank
    assert statuses == ["2", "2"], done.stderr[-3000:]
    assert "PeerFailed" not in output and "solverbench/cli.py" not in output  # no rank's traceback
    assert done.returncode == 1


def test_a_failure_is_raised_by_the_first_failing_rank_and_named_to_the_others():
    failures = [None, failure(GridError("bad key")), failure(RuntimeError("later"))]
    with pytest.raises(GridError, match="bad key"):
        raise_first(failures, GridError("bad key"), 1)
    for rank, error in ((0, None), (2, RuntimeError("later"))):
        with pytest.raises(PeerFailed, match="rank 1 of 3 failed: GridError: bad key") as peer:
            raise_first(failures, error, rank)
        assert peer.value.raised(ValueError) and not peer.value.raised(KeyError) and peer.value.message == "bad key"
    raise_first([None, None], None, 0)  # nobody failed


def test_batches_are_dealt_round_robin_and_a_batch_size_must_split():
    assert list(World(1, 3).my_batches(8)) == [1, 4, 7]
    assert World().map_batches(lambda b: torch.full((2,), b), 3)[2].tolist() == [2, 2]
    assert rank_share("batch_size", 256, World(0, 8)) == 32
    with pytest.raises(ValueError, match="'batch_size' 256 does not split over 3 processes"):
        rank_share("batch_size", 256, World(0, 3))
    with pytest.raises(ValueError, match="'solve_bank' 100 does not split over 3 processes"):
        rank_share("solve_bank", 100, World(0, 3))
