"""``run GRID --launcher slurm``: a grid's workers as a Slurm job array, submitted through submitit.

Each task of the array is one worker: the ordinary ``run`` of the grid into the shared results folder, taking
cells by claim as the workers of ``run --workers`` do (``solverbench.worker_job``); a worker with G > 1 GPUs runs
under ``torchrun --standalone --nproc_per_node G`` inside its allocation, each of its cells split over them.
``--launcher local`` takes the same path through submitit's local executor: the workers run on this machine
(for trying a grid, or the tests).

Options come from the command line or the grid's ``launcher:`` section, the command line winning.  Everything
is checked before anything is submitted, each mistake one line: no ``sbatch`` on this machine; a grid device
other than ``cpu`` or ``cuda``; GPUs for a CPU grid; more workers than cells left (a number from the grid's
section is lowered to them, with a line); a results folder on a filesystem of this machine's own (unless
``shared_results``); a Slurm parameter submitit does not know.  A plain submission refuses a grid whose cells
other workers are running (its claims are live); ``resubmit`` sends workers for the cells neither done nor
running, and refuses where none is left.

Without ``wait`` the command prints the job ids and how to follow them (``solverbench status GRID``); with it,
one progress bar over the grid's cells (read from the results table, as ``run --workers`` does), one line per
job that fails (with its log), then the grid's summary.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from tqdm import tqdm

from solverbench.distributed import launched_by_torchrun
from solverbench.engine.loop import SweepFailed, report_outcome, summarise_done, todo_positions
from solverbench.engine.shared_fs import local_filesystem
from solverbench.engine.workers import Watch, worker_command
from solverbench.engine.workspace import Workspace
from solverbench.errors import GridError
from solverbench.grid.values import Grid, LauncherSettings
from solverbench.progress import progress_bar
from solverbench.registry import STUDIES
from solverbench.results import ResultsTable
from solverbench.worker_job import WorkerJob

LAUNCHERS = ("slurm", "local")
JOBS = "jobs"  # the grid's results folder's subfolder of submitit's files and the workers' logs
POLL_S = 1.0  # how often the jobs and the table are looked at while following
LOCAL_TIME_LIMIT_MIN = 7 * 24 * 60  # the local executor's time limit where none is given (its own default: 2 min)
# Slurm parameters that the launcher sets itself: where each is given instead
OWN_PARAMETERS = {"partition": "--partition", "account": "--account", "time": "--time-limit",
                  "timeout_min": "--time-limit", "gpus_per_node": "--gpus-per-worker", "num_gpus": "--gpus-per-worker",
                  "nodes": "nothing (a worker is one task on one node)",
                  "tasks_per_node": "nothing (a worker is one task on one node)",
                  "ntasks_per_node": "nothing (a worker is one task on one node)",
                  "array_parallelism": "--workers", "job_name": "nothing (the jobs are named solverbench-GRID)",
                  "name": "nothing (the jobs are named solverbench-GRID)"}
GENERIC = {"mem_gb": (int, float), "cpus_per_task": int, "stderr_to_stdout": bool}  # submitit's own names, typed


@dataclass
class LaunchOptions:
    """How to submit the grid's workers: the command line's options, completed by the grid's section."""

    launcher: str
    workers: Optional[int] = None
    gpus_per_worker: Optional[int] = None
    partition: Optional[str] = None
    time_limit: Optional[int] = None  # minutes
    account: Optional[str] = None
    slurm_params: dict[str, Any] = field(default_factory=dict)
    shared_results: bool = False
    wait: bool = False
    resubmit: bool = False
    workers_from_grid: bool = False  # the number of workers is the grid section's (lowered to the cells left)

    def completed_by(self, section: LauncherSettings) -> "LaunchOptions":
        """These options, each one not given taken from the grid's ``launcher:`` section."""
        def pick(mine: Any, theirs: Any) -> Any:
            return theirs if mine is None else mine

        return replace(self, workers=pick(self.workers, section.workers),
                       gpus_per_worker=pick(self.gpus_per_worker, section.gpus_per_worker),
                       partition=pick(self.partition, section.partition),
                       time_limit=pick(self.time_limit, section.time_limit),
                       account=pick(self.account, section.account),
                       slurm_params={**section.slurm_params, **self.slurm_params},
                       shared_results=self.shared_results or bool(section.shared_results),
                       workers_from_grid=self.workers is None and section.workers is not None)


def slurm_params(items: list[str]) -> dict[str, Any]:
    """``--slurm-param KEY=VALUE`` options as submitit's names (``slurm_`` dropped where written) and values (read as
    YAML scalars: ``8`` a number, ``true`` a boolean, ``64G`` a string)."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("slurm_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--slurm-param {item!r}: write KEY=VALUE, e.g. --slurm-param qos=high")
        try:
            parsed = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            parsed = value
        params[key] = parsed if isinstance(parsed, (str, int, float, bool)) else value
    return params


def check_slurm_params(params: dict[str, Any]) -> None:
    """Refuse (one line) a Slurm parameter the launcher sets itself, or one of submitit's own names of another type;
    submitit checks the names of the others."""
    for key, value in params.items():
        written = f"Slurm parameter {key}={value}"
        if key in OWN_PARAMETERS:
            raise ValueError(f"{written}: the launcher sets {key} itself; give {OWN_PARAMETERS[key]}")
        wanted = GENERIC.get(key)
        if wanted is not None and (not isinstance(value, wanted) or isinstance(value, bool) != (wanted is bool)):
            raise ValueError(f"{written}: {key} takes a {'boolean' if wanted is bool else 'number'}")


@dataclass
class Submission:
    """What a launch submits, every check passed: ``workers`` tasks of ``job`` through ``executor``."""

    grid: Grid
    table: ResultsTable
    ids: list[str]
    what: str  # what a row is (cell, step)
    describe: Callable[[Any], str]
    options: LaunchOptions
    workers: int = 0  # 0: nothing to submit (every cell done)
    gpus: int = 0
    left: int = 0  # cells to run
    running: int = 0  # cells other workers run now
    job: Optional[WorkerJob] = None
    executor: Any = None

    @property
    def folder(self) -> Path:
        return self.table.directory / JOBS

    def described(self) -> str:
        """The submission in words: how many workers of what, where."""
        where = "as a Slurm job array" if self.options.launcher == "slurm" else "on this machine (submitit's local " \
                                                                               "executor)"
        what = f"{self.gpus} GPU{'s' if self.gpus > 1 else ''} each" + (" under torchrun" if self.gpus > 1 else "") \
            if self.gpus else "CPU"
        opts = self.options
        extra = [f"partition {opts.partition}" if opts.partition else "", f"account {opts.account}" if opts.account
                 else "", f"time limit {opts.time_limit} min" if opts.time_limit else "",
                 *(f"{k}={v}" for k, v in opts.slurm_params.items())]
        details = ", ".join([what, *[e for e in extra if e]])
        return (f"{self.workers} worker{'s' if self.workers > 1 else ''} of {self.grid.name} {where} ({details}) for "
                f"the {self.left} {self.what}s left of {len(self.ids)}")


def make_executor(launcher: str, folder: Path) -> Any:
    """submitit's executor of ``launcher``: its Slurm executor, or its local one."""
    import submitit

    return submitit.AutoExecutor(folder=folder, cluster=launcher)


def prepare(grid: Grid, grid_file: str | Path, results_dir: str | Path, options: LaunchOptions, *,
            export_npz: bool = False, plugins: Optional[list[str]] = None,
            executor_folder: Optional[Path] = None) -> Submission:
    """Check everything a launch needs and build what it submits (nothing is submitted here); submitit's files go
    to ``executor_folder`` (default: the grid's results folder's ``jobs/``)."""
    options = options.completed_by(grid.launcher)
    if options.launcher not in LAUNCHERS:
        raise ValueError(f"--launcher {options.launcher}: allowed: {', '.join(LAUNCHERS)}")
    check_slurm_params(options.slurm_params)
    if launched_by_torchrun():
        raise ValueError("--launcher submits its own workers (each may run torchrun itself: --gpus-per-worker); run "
                         "it without torchrun")
    if options.launcher == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--launcher slurm: no sbatch on this machine's PATH; submit from a machine of the Slurm "
                         "cluster (a login node), or try the grid on this machine with --launcher local")
    gpus = worker_gpus(grid, options)
    table = ResultsTable(Path(results_dir) / grid.name)  # a damaged table or a bad stale timeout: refused here
    table.check_owner(grid.path, grid.hash)
    study = STUDIES.get(grid.kind)(grid, Workspace(grid, results_dir, progress=False))
    units = study.units()
    ids = [cell_id for unit in units for cell_id in unit.ids]
    todo = [units[i] for i in todo_positions(table, units, False)]
    live = {cell_id for cell_id, (_, gone) in table.claims().items() if not gone}
    running = sum(len(unit.ids) for unit in todo if unit.ids[0] in live)
    left = sum(len(unit.ids) for unit in todo if unit.ids[0] not in live)
    plan = Submission(grid, table, ids, study.unit, study.describe, options, gpus=gpus, left=left, running=running)
    if options.resubmit and not left:
        done = len(ids) - sum(len(unit.ids) for unit in todo)
        raise ValueError(f"--resubmit: no {study.unit} of {grid.name} is left to run in {table.directory} ({done} "
                         f"done, {running} running); nothing submitted")
    if running and not options.resubmit:
        raise ValueError(f"{running} {study.unit}(s) of {grid.name} are running now (their claims in "
                         f"{table.directory} are held); follow them with: python -m solverbench status "
                         f"{grid_file} --results {results_dir}, or send workers for the {left} left with --resubmit")
    if not left:
        return plan  # every cell done: nothing to submit
    plan.workers = worker_count(options, left, study.unit)
    if options.launcher == "slurm" and not options.shared_results:
        refuse_local_results(table.directory)
    plan.job = worker_job(grid, grid_file, results_dir, plan.workers, gpus, options.launcher, export_npz=export_npz,
                          plugins=plugins or [])
    plan.executor = configured_executor(plan, executor_folder or plan.folder)
    return plan


def worker_gpus(grid: Grid, options: LaunchOptions) -> int:
    """The GPUs of each worker: ``gpus_per_worker`` (1 by default) for a grid on ``cuda``, none for one on ``cpu``."""
    if grid.device not in ("cpu", "cuda"):
        raise GridError(f"--launcher: the grid's device {grid.device} names one device; give device: cuda (each worker "
                        "takes the GPUs of its allocation) or device: cpu")
    gpus = options.gpus_per_worker
    if grid.device == "cpu":
        if gpus:
            raise ValueError(f"--gpus-per-worker {gpus}: the grid's device is cpu, so its workers take no GPU; give "
                             "device: cuda in the grid, or leave GPUs out")
        return 0
    if gpus is not None and gpus < 1:
        raise ValueError(f"--gpus-per-worker {gpus}: the grid's device is cuda; give each worker at least 1 GPU")
    return 1 if gpus is None else gpus


def worker_count(options: LaunchOptions, left: int, what: str) -> int:
    """The number of workers to submit: the one asked for, refused above the cells left (one from the grid's section
    is lowered to them, with a line)."""
    workers = options.workers
    if workers is None:
        raise ValueError(f"--launcher {options.launcher}: give the number of workers, --workers N (or workers: N in "
                         "the grid's launcher: section)")
    if workers < 1:
        raise ValueError(f"--workers {workers}: give at least 1 worker")
    if workers > left:
        if options.workers_from_grid:
            tqdm.write(f"launcher.workers {workers}: only {left} {what}s are left; submitting {left} workers",
                       file=sys.stderr)
            return left
        raise ValueError(f"--workers {workers}: only {left} {what}s of the grid are left to run; give at most {left} "
                         "workers")
    return workers


def refuse_local_results(folder: Path) -> None:
    """Refuse (one line) a results folder on a filesystem of this machine's own: the jobs' nodes cannot see it."""
    local = local_filesystem(folder)
    if local is not None:
        kind, point = local
        raise ValueError(f"results folder {folder} lies on a filesystem of this machine's own ({kind}, mounted at "
                         f"{point}), which Slurm's nodes do not see; point --results at a shared filesystem (NFS, "
                         "Lustre, GPFS, ...), or pass --shared-results where the nodes do see it")


def worker_job(grid: Grid, grid_file: str | Path, results_dir: str | Path, workers: int, gpus: int, launcher: str, *,
               export_npz: bool, plugins: list[str]) -> WorkerJob:
    """What each task runs: the worker command of ``run --workers`` (paths made absolute), under torchrun over its
    GPUs where it has several; on this machine each worker's own GPUs or share of the CPU threads."""
    command = worker_command(Path(grid_file).resolve(), Path(results_dir).resolve(), export_npz=export_npz,
                             plugins=plugins)
    if gpus > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                   *command[1:]]  # torchrun's -m solverbench ...
    env = {key: os.environ[key] for key in ("SOLVERBENCH_CLAIM_STALE_S",) if key in os.environ}
    per_worker = None
    if launcher == "local":
        per_worker = local_environments(grid, workers, gpus)
    return WorkerJob(command, env, per_worker)


def local_environments(grid: Grid, workers: int, gpus: int) -> list[dict[str, str]]:
    """Each local worker's own environment: its block of ``gpus`` visible GPUs, or its share of the CPU threads."""
    if grid.device == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = str(max(1, cores // workers))
        return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(workers)]
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [g.strip() for g in visible.split(",") if g.strip()] if visible is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    names = names[:torch.cuda.device_count()]
    if workers * gpus > len(names):
        raise ValueError(f"--launcher local: {workers} workers of {gpus} GPU(s) need {workers * gpus}, and "
                         f"{len(names)} are visible here; give fewer workers")
    return [{"CUDA_VISIBLE_DEVICES": ",".join(names[i * gpus:(i + 1) * gpus])} for i in range(workers)]


def configured_executor(plan: Submission, folder: Path) -> Any:
    """submitit's executor (its files in ``folder``) with the submission's parameters; a parameter it does not know
    is one line."""
    options = plan.options
    time_limit = options.time_limit or (LOCAL_TIME_LIMIT_MIN if options.launcher == "local" else None)
    params = {"name": f"solverbench-{plan.grid.name}", "nodes": 1, "tasks_per_node": 1,
              "gpus_per_node": plan.gpus if options.launcher == "slurm" else 0, "timeout_min": time_limit,
              "slurm_array_parallelism": plan.workers, "slurm_partition": options.partition,
              "slurm_account": options.account,
              **{(k if k in GENERIC else f"slurm_{k}"): v for k, v in options.slurm_params.items()}}
    params = {k: v for k, v in params.items() if v is not None}
    with tempfile.TemporaryDirectory() as scratch:  # checked first: a refused parameter leaves no folder behind
        try:
            make_executor(options.launcher, Path(scratch)).update_parameters(**params)
        except (NameError, ValueError, TypeError, AssertionError) as err:
            raise ValueError(f"Slurm parameter {submitit_reason(err)}") from None
    executor = make_executor(options.launcher, folder)
    executor.update_parameters(**params)
    return executor


def submitit_reason(err: BaseException) -> str:
    """submitit's refusal of a parameter, on one line: the parameter and the ones it knows."""
    text = " ".join(str(err).split())
    unknown = re.search(r"Unknown argument '(\w+)' for executor 'slurm' in parameter '\w+'\. Valid arguments: "
                        r"([\w, ]+?)(?: Known executors|$)", text)
    if unknown:
        return (f"{unknown.group(1)}: submitit's Slurm executor has no parameter {unknown.group(1)}; its parameters: "
                f"{', '.join(sorted(set(unknown.group(2).replace(' ', '').split(',')) - set(OWN_PARAMETERS)))}, "
                "mem_gb")
    return ": " + text.split(" Known executors:")[0][:300]


# -- submitting and following ------------------------------------------------------------------------------------
def launch(grid: Grid, grid_file: str | Path, results_dir: str | Path, options: LaunchOptions, *,
           progress: bool = True, export_npz: bool = False, plugins: Optional[list[str]] = None,
           check: bool = False) -> Optional[ResultsTable]:
    """Submit the grid's workers (every check first); with ``wait`` follow them and return the table after the
    summary, else print the job ids and how to follow them and return None.  ``check``: say what would be
    submitted, and submit nothing."""
    follow_command = f"python -m solverbench status {grid_file} --results {results_dir}"
    if check:  # submitit's files of the check go to a folder deleted after it
        with tempfile.TemporaryDirectory() as scratch:
            plan = prepare(grid, grid_file, results_dir, options, export_npz=export_npz, plugins=plugins,
                           executor_folder=Path(scratch))
        print(f"{grid_file}: would submit {plan.described()} (checked; nothing submitted)" if plan.workers else
              f"{grid_file}: every {plan.what} is done in {plan.table.path}; nothing would be submitted (checked)")
        return None
    plan = prepare(grid, grid_file, results_dir, options, export_npz=export_npz, plugins=plugins)
    if not plan.workers:
        tqdm.write(f"every {plan.what} of {grid.name} is done in {plan.table.path}; nothing submitted", file=sys.stderr)
        report_outcome(summarise_done(plan.table, plan.ids, plan.describe), plan.what)
        return plan.table
    watch = Watch(plan.table, plan.ids, plan.describe)
    jobs = plan.executor.map_array(plan.job, range(plan.workers))
    print(f"submitted {plan.described()}: {job_ids_text(jobs)}; logs in {plan.folder}")
    if not options.wait:
        print(f"follow with: {follow_command}")
        return None
    try:
        follow(jobs, watch, plan.left + plan.running, progress=progress, desc=grid.name, what=plan.what)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"stopped following; the workers go on ({job_ids_text(jobs)}): {follow_command}") \
            from None
    outcome = summarise_done(plan.table, plan.ids, plan.describe)
    outcome.ran = len(watch.finished)
    missing = len(set(plan.ids) - plan.table.done())
    if missing:
        for line in outcome.counted(plan.what):
            tqdm.write(line, file=sys.stderr)
        raise SweepFailed(f"{missing} {plan.what}(s) are not done: the workers ended without them; send workers for "
                          f"them with the same command and --resubmit")
    report_outcome(outcome, plan.what)
    return plan.table


def job_ids_text(jobs: list[Any]) -> str:
    """The jobs' ids: one Slurm array's as ``job array 123 (123_0 to 123_7)``, others listed."""
    ids = [str(job.job_id) for job in jobs]
    arrays = {job_id.split("_")[0] for job_id in ids}
    if len(arrays) == 1 and all("_" in job_id for job_id in ids):
        span = ids[0] if len(ids) == 1 else f"{ids[0]} to {ids[-1]}"
        return f"job array {arrays.pop()} ({span})"
    return f"job{'s' if len(ids) > 1 else ''} {', '.join(ids)}"


def follow(jobs: list[Any], watch: Watch, total: int, *, progress: bool, desc: str, what: str) -> None:
    """One progress bar over the grid's cells as the jobs finish them, until every job has ended; one line for each
    job that failed."""
    bar = progress_bar(total=total, desc=desc, unit=what, enabled=progress, off_terminal="lines", dynamic_ncols=True)
    reported: set[int] = set()
    try:
        while True:
            ended = [job.done() for job in jobs]  # looked at first: no row of an ended job is missed
            for row in watch.new_rows():
                bar.set_postfix_str(f"{watch.describe(row)}: {row['status']}", refresh=False)
                bar.update(1)
            for index, job in enumerate(jobs):
                if ended[index] and index not in reported:
                    reported.add(index)
                    line = failure_line(index, job)
                    if line:
                        tqdm.write(line, file=sys.stderr)
            if all(ended):
                break
            time.sleep(POLL_S)
    finally:
        bar.close()


def failure_line(index: int, job: Any) -> Optional[str]:
    """One line for a job that ended without finishing its worker (None for one that did): how it ended and its
    log."""
    log = job.paths.stderr
    if not job.paths.result_pickle.exists():
        state = job.state
        if state not in ("COMPLETED", "UNKNOWN"):  # else its result may still be on its way: wait for it below
            return f"worker {index} (job {job.job_id}) ended without finishing (state {state}); its unfinished " \
                   f"cell goes to the next run; its log: {log}"
    error = job.exception()
    if error is None:
        return None
    reason = worker_reason(str(error)) or f"ended without finishing ({' '.join(str(error).split())[:200]})"
    return f"worker {index} (job {job.job_id}): {reason}; its log: {log}"


def worker_reason(text: str) -> Optional[str]:
    """The ``WorkerFailed`` line of a failed job's traceback, without its class name."""
    marker = "WorkerFailed: "
    lines = [line.strip() for line in text.splitlines() if marker in line]
    return lines[-1].split(marker, 1)[1] if lines else None
