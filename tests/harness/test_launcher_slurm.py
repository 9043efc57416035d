"""`run GRID --launcher slurm`: the grid's workers submitted as a job array through submitit, every mistake one line
before anything is submitted; `--launcher local` (submitit's local executor, the same path without Slurm) runs them
here: a killed worker is reported with its log, `--resubmit` finishes the grid, and the rows are those of one
process."""
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from solverbench import distributed
from solverbench.cli import main
from solverbench.engine import launch as launch_module
from solverbench.engine.shared_fs import local_filesystem
from solverbench.grid import parse_grid
from solverbench.results_compare import compare_stores
from solverbench.worker_job import WorkerJob

from dying_solvers import write_plugin  # tests/harness/

GRID = {"name": "split", "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
        "solvers": ["launched-euler", "launched-heun"], "nfe": [2, 4], "num_samples": 32,
        "metrics": ["trajectory_error"], "save_samples": 0, "reference": {"rtol": 1e-6, "atol": 1e-6}}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin file of launched-euler and launched-heun, one for the module."""
    return write_plugin(tmp_path_factory.mktemp("plugin"), "launched")


@pytest.fixture
def grid(tmp_path, plugin):
    return grid_file(tmp_path, plugin)


def grid_file(tmp_path, plugin, **changes):
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump({**GRID, "plugins": [str(plugin)], **changes}))
    return path


def run(grid, results, *options):
    return main(["run", str(grid), "--results", str(results), "--no-progress", *options])


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("solverbench run: error: "), err
    return err


# -- the submit path, through a stand-in for submitit's Slurm executor ---------------------------------------------

class FakeJob:
    def __init__(self, job_id):
        self.job_id = job_id


class FakeSlurmExecutor:
    """Records what would go to Slurm: submitit's parameters and the array's function and arguments."""

    made: list = []

    def __init__(self, launcher, folder):
        self.launcher, self.folder, self.parameters, self.submitted = launcher, folder, {}, None
        FakeSlurmExecutor.made.append(self)

    def update_parameters(self, **params):
        self.parameters.update(params)

    def map_array(self, fn, indices):
        self.submitted = (fn, list(indices))
        return [FakeJob(f"4242_{i}") for i in self.submitted[1]]


@pytest.fixture
def fake_slurm(monkeypatch):
    """A machine with sbatch on its PATH, submitting to the fake executor."""
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/sbatch" if name == "sbatch" else
                        real_which(name, *a, **k))
    FakeSlurmExecutor.made = []
    monkeypatch.setattr(launch_module, "make_executor", FakeSlurmExecutor)
    return FakeSlurmExecutor.made


def test_the_workers_go_to_slurm_as_one_job_array_with_the_options_and_the_grids_section(tmp_path, plugin, fake_slurm,
                                                                                        capsys):
    grid = grid_file(tmp_path, plugin, launcher={"partition": "batch", "time_limit": 90, "account": "lab",
                                                 "slurm_params": {"qos": "low", "constraint": "a100"}})
    results = tmp_path / "results"
    assert run(grid, results, "--launcher", "slurm", "--workers", "3", "--partition", "gpu", "--slurm-param",
               "qos=high", "--slurm-param", "cpus_per_task=4", "--shared-results") == 0
    out = capsys.readouterr().out
    checked, executor = fake_slurm  # the parameters are checked on a scratch executor first
    assert checked.submitted is None and checked.parameters == executor.parameters
    assert executor.launcher == "slurm" and executor.folder == results / "split" / "jobs"
    assert executor.parameters == {
        "name": "solverbench-split", "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "timeout_min": 90,
        "slurm_array_parallelism": 3, "slurm_partition": "gpu", "slurm_account": "lab", "slurm_qos": "high",
        "slurm_constraint": "a100", "cpus_per_task": 4}  # the command line wins over the grid's section
    job, indices = executor.submitted
    assert indices == [0, 1, 2] and isinstance(job, WorkerJob)
    assert job.command[1:] == ["-m", "solverbench", "run", str(grid.resolve()), "--results", str(results.resolve()),
                               "--no-progress"]  # the ordinary worker of run --workers
    assert "job array 4242 (4242_0 to 4242_2)" in out and f"logs in {results / 'split' / 'jobs'}" in out
    assert f"follow with: python -m solverbench status {grid} --results {results}" in out
    assert not (results / "split" / "results.parquet").exists()  # this process runs no cell


def test_a_cuda_grid_is_submitted_from_a_machine_without_a_gpu_one_worker_per_allocation(tmp_path, plugin, fake_slurm,
                                                                                         capsys):
    grid = grid_file(tmp_path, plugin, device="cuda")
    assert run(grid, tmp_path / "results", "--launcher", "slurm", "--workers", "2", "--gpus-per-worker", "4",
               "--shared-results") == 0
    job, _ = fake_slurm[-1].submitted
    assert fake_slurm[-1].parameters["gpus_per_node"] == 4
    assert job.command[2:5] == ["torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert "2 workers of split as a Slurm job array (4 GPUs each under torchrun)" in capsys.readouterr().out


def test_a_worker_with_several_gpus_runs_its_cells_under_torchrun(tmp_path, plugin):
    grid = parse_grid({**GRID, "plugins": [str(plugin)]}, path=tmp_path / "split.yaml")
    job = launch_module.worker_job(grid, tmp_path / "split.yaml", tmp_path / "results", 2, 8, "slurm", export_npz=True,
                                   plugins=[])
    assert job.command[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8",
                               "-m"]
    assert job.command[6:8] == ["solverbench", "run"] and job.command[-1] == "--export-npz"
    assert job.per_worker_env is None  # on Slurm each worker's GPUs are its allocation's


def test_the_launcher_section_changes_neither_the_grids_hash_nor_its_cells(tmp_path, plugin):
    from solverbench.studies.sweep import Sweep

    plain = parse_grid({**GRID, "plugins": [str(plugin)]}, path=tmp_path / "split.yaml")
    sectioned = parse_grid({**GRID, "plugins": [str(plugin)], "launcher": {"workers": 4, "partition": "gpu"}},
                           path=tmp_path / "split.yaml")
    assert sectioned.launcher.workers == 4 and sectioned.launcher.partition == "gpu"
    assert plain.hash == sectioned.hash

    def ids(grid):
        return [cell_id for unit in Sweep(grid, None).units() for cell_id in unit.ids]

    assert ids(plain) == ids(sectioned)


@pytest.mark.parametrize("section, message", [
    ({"workers": 0}, "grid key 'launcher.workers': bad value 0"),
    ({"nodes": 2}, "grid key 'launcher': bad value {'nodes': 2}; allowed keys: workers:"),
    ({"slurm_params": ["qos"]}, "grid key 'launcher.slurm_params'"),
])
def test_a_bad_launcher_section_is_one_line(tmp_path, plugin, capsys, section, message):
    assert run(grid_file(tmp_path, plugin, launcher=section), tmp_path / "results") == 2
    assert message in one_error_line(capsys)


def test_the_sections_workers_are_lowered_to_the_cells_left_with_a_line(tmp_path, plugin, fake_slurm, capsys):
    grid = grid_file(tmp_path, plugin, launcher={"workers": 9, "shared_results": True})
    assert run(grid, tmp_path / "results", "--launcher", "slurm") == 0
    assert "launcher.workers 9: only 4 cells are left; submitting 4 workers" in capsys.readouterr().err
    assert fake_slurm[-1].submitted[1] == [0, 1, 2, 3]


@pytest.mark.parametrize("options, message", [
    (["--launcher", "slurm", "--workers", "2"], "--launcher slurm: no sbatch on this machine's PATH"),
    (["--launcher", "local", "--workers", "5"],
     "--workers 5: only 4 cells of the grid are left to run; give at most 4"),
    (["--launcher", "local"], "give the number of workers, --workers N"),
    (["--launcher", "local", "--workers", "2", "--slurm-param", "colour=blue"],
     "Slurm parameter colour: submitit's Slurm executor has no parameter colour; its parameters: "
     "additional_parameters,"),
    (["--launcher", "local", "--workers", "2", "--slurm-param", "time=30"],
     "Slurm parameter time=30: the launcher sets time itself; give --time-limit"),
    (["--launcher", "local", "--workers", "2", "--gpus-per-worker", "2"],
     "--gpus-per-worker 2: the grid's device is cpu"),
    (["--launcher", "local", "--workers", "2", "--force"], "--launcher with --force"),
    (["--workers", "2", "--wait"], "--wait is an option of --launcher"),
])
def test_a_mistake_is_one_line_before_anything_is_submitted(tmp_path, grid, capsys, monkeypatch, options, message):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # no Slurm here
    assert run(grid, tmp_path / "results", *options) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "results" / "split").exists()


def test_check_says_what_would_be_submitted_and_submits_nothing(tmp_path, grid, capsys):
    assert run(grid, tmp_path / "results", "--launcher", "local", "--workers", "2", "--resubmit", "--check") == 0
    assert "would submit 2 workers of split on this machine (submitit's local executor) (CPU) for the 4 cells left " \
           "of 4 (checked; nothing submitted)" in capsys.readouterr().out
    assert not (tmp_path / "results" / "split").exists()


def test_a_results_folder_on_this_machines_own_disk_is_refused_for_slurm(tmp_path, grid, fake_slurm, capsys):
    assert local_filesystem(tmp_path) is not None  # this machine's temporary folder: ext4, tmpfs or overlay
    assert run(grid, tmp_path / "results", "--launcher", "slurm", "--workers", "2") == 2
    err = one_error_line(capsys)
    assert "lies on a filesystem of this machine's own" in err and "--shared-results" in err
    assert not fake_slurm


def test_the_launcher_under_torchrun_is_refused(monkeypatch):
    import argparse

    from solverbench.cli import refuse_launcher_options

    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    with pytest.raises(ValueError, match="^--launcher submits its own workers"):
        refuse_launcher_options(argparse.Namespace(launcher="slurm", force=False))


MOUNTS = "\n".join(["/dev/vda / ext4 rw 0 0", "tmpfs /tmp tmpfs rw 0 0", "server:/export /shared nfs4 rw 0 0",
                    "lustre@tcp:/fs /lustre lustre rw 0 0", "tmpfs /shared/scratch tmpfs rw 0 0",
                    "server:/x /mnt/with\\040space nfs rw 0 0"])


@pytest.mark.parametrize("folder, local", [
    ("/home/me/results", ("ext4", "/")), ("/tmp/results", ("tmpfs", "/tmp")), ("/shared/me/results", None),
    ("/lustre/project/results", None), ("/shared/scratch/results", ("tmpfs", "/shared/scratch")),
    ("/mnt/with space/results", None),
])
def test_which_filesystems_the_nodes_of_a_cluster_are_taken_to_share(folder, local):
    assert local_filesystem(folder, mounts=MOUNTS) == local


# -- the same path on this machine: submitit's local executor ------------------------------------------------------

@pytest.fixture(scope="module")
def one_process(tmp_path_factory, plugin):
    """The grid's rows as one process writes them."""
    folder = tmp_path_factory.mktemp("one")
    assert run(grid_file(folder, plugin), folder / "results") == 0
    return folder / "results"


def launch_local(grid, results, *options):
    return run(grid, results, "--launcher", "local", "--workers", "2", "--wait", *options)


@pytest.mark.slow  # two local jobs, each a worker process: about 10 s on 2 cores
def test_a_worker_killed_mid_cell_is_reported_with_its_log_and_its_cell_taken_by_the_other(
        tmp_path, grid, one_process, monkeypatch, capsys):
    (tmp_path / "kill").mkdir()
    monkeypatch.setenv("SOLVERBENCH_TEST_WORKERS", f"kill-one:{tmp_path / 'kill'}")
    assert launch_local(grid, tmp_path / "results") == 0
    captured = capsys.readouterr()
    assert "submitted 2 workers of split on this machine" in captured.out and "4 rows in" in captured.out
    killed = [line for line in captured.err.splitlines() if "killed by SIGKILL" in line]
    assert len(killed) == 1 and killed[0].startswith("worker ") and "its log: " in killed[0]
    log = Path(killed[0].split("its log: ")[1])
    assert log.is_file() and log.parent == tmp_path / "results" / "split" / "jobs"
    rows = pd.read_parquet(tmp_path / "results" / "split" / "results.parquet")
    assert len(rows) == 4 and (rows["status"] == "ok").all() and rows["pid"].nunique() == 1
    comparison = compare_stores(one_process, tmp_path / "results")
    assert comparison.identical, comparison.differences


@pytest.mark.slow  # three local jobs' worth of worker processes: about 15 s on 2 cores
def test_workers_killed_mid_cell_leave_their_cells_to_resubmit_which_finishes_the_grid(
        tmp_path, grid, one_process, monkeypatch, capsys):
    results = tmp_path / "results"
    monkeypatch.setenv("SOLVERBENCH_TEST_WORKERS", "kill-all")
    assert launch_local(grid, results) == 1
    err = capsys.readouterr().err
    assert err.count("killed by SIGKILL") == 2
    assert "4 cell(s) are not done: the workers ended without them; send workers for them with the same command and " \
           "--resubmit" in err
    # the killed workers' claims stay (one each, or one: a worker may take over the other's, its process gone)
    claims = list((results / "split" / ".claims").glob("*.lock"))
    assert len(claims) in (1, 2)
    assert main(["status", str(grid), "--results", str(results)]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[4].split() == ["total", "0", "0", "0", "4"]  # their cells count as left
    assert f"{len(claims)} claim(s) whose holder is gone" in status[5]
    monkeypatch.delenv("SOLVERBENCH_TEST_WORKERS")
    assert launch_local(grid, results, "--resubmit") == 0
    assert "4 cells in" in capsys.readouterr().err
    comparison = compare_stores(one_process, results)
    assert comparison.identical, comparison.differences
    assert launch_local(grid, results, "--resubmit") == 2
    assert "--resubmit: no cell of split is left to run" in one_error_line(capsys)
