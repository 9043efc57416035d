"""Claims and the store's lock are leases that hold on a filesystem shared by machines: a claim whose holder stopped
heartbeating is taken over, one whose holder heartbeats is not, a dead holder of this host's claim is taken over at
once, and of several processes taking over one stale claim exactly one wins."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from solverbench.leases import HOST, Lease, stale_seconds
from solverbench.results import CLAIMS, ResultsTable

STALE_S = 1.0  # the tests' stale timeout: a heartbeat every 0.125 s


@pytest.fixture(autouse=True)
def short_stale_timeout(monkeypatch):
    monkeypatch.setenv("SOLVERBENCH_CLAIM_STALE_S", str(STALE_S))


def claim_file(folder, cell_id):
    return folder / CLAIMS / f"{cell_id}.lock"


def left_by_another_machine(path, age_s):
    """A claim file as a run on another machine leaves it when it dies: its record, last touched ``age_s`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 4242, "token": "theirs",
                                "started": "2025-01-01T00:00:00+00:00"}))
    then = time.time() - age_s
    os.utime(path, (then, then))


def holder_process(path, stale_s=STALE_S):
    """Another process holding the lease at ``path`` (heartbeating) until it is stopped; started once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from solverbench.leases import Lease
        lease = Lease({str(path)!r}, {stale_s})
        lease.path.parent.mkdir(parents=True, exist_ok=True)
        assert lease.try_take()
        print("held", flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_claim_whose_holder_on_another_machine_stopped_heartbeating_is_taken_over(tmp_path):
    table = ResultsTable(tmp_path / "g")
    left_by_another_machine(claim_file(tmp_path / "g", "young"), age_s=STALE_S / 4)
    left_by_another_machine(claim_file(tmp_path / "g", "old"), age_s=3 * STALE_S)
    with table.claim("young") as mine:
        assert not mine  # its heartbeat is recent enough: its holder may be running
    with table.claim("old") as mine:
        assert mine
        record = json.loads(claim_file(tmp_path / "g", "old").read_text())
        assert record["host"] == HOST and record["pid"] == os.getpid()  # ours now
    assert not claim_file(tmp_path / "g", "old").exists()


def test_a_heartbeating_holder_keeps_its_claim_and_one_that_stops_loses_it(tmp_path):
    table = ResultsTable(tmp_path / "g")
    holder = holder_process(claim_file(tmp_path / "g", "a"))
    try:
        time.sleep(1.5 * STALE_S)  # longer than the stale timeout: only its heartbeat keeps the claim
        with table.claim("a") as mine:
            assert not mine
        (gone, held), = [(state[1], state[0]) for state in table.claims().values()]
        assert not gone and held.pid == holder.pid
        holder.send_signal(signal.SIGSTOP)  # alive, but its heartbeat stops (a suspended or stalled node)
        time.sleep(1.3 * STALE_S)
        with table.claim("a") as mine:
            assert mine
    finally:
        holder.kill()
        holder.wait()


def test_a_claim_of_a_killed_run_on_this_host_is_taken_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLVERBENCH_CLAIM_STALE_S", "600")  # no staleness within the test: the dead pid decides
    table = ResultsTable(tmp_path / "g")
    holder = holder_process(claim_file(tmp_path / "g", "a"), stale_s=600)
    with table.claim("a") as mine:
        assert not mine
    holder.kill()
    holder.wait()
    with table.claim("a") as mine:
        assert mine


def test_the_tables_lock_left_by_a_killed_writer_is_taken_over(tmp_path):
    (tmp_path / "g").mkdir()
    holder = holder_process(tmp_path / "g" / ".lock")  # a writer killed while it held the lock
    holder.kill()
    holder.wait()
    table = ResultsTable(tmp_path / "g")
    table.put({"grid": "g", "cell_id": "a", "status": "ok"})  # does not wait for the dead writer
    left_by_another_machine(tmp_path / "g" / ".lock", age_s=3 * STALE_S)
    table.put({"grid": "g", "cell_id": "b", "status": "ok"})  # nor for a writer of another machine, gone
    assert sorted(pd.read_parquet(tmp_path / "g" / "results.parquet")["cell_id"]) == ["a", "b"]


TAKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from solverbench.leases import Lease
    start, done, paths = float(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
    time.sleep(max(0.0, start - time.time()))
    won = [str(p) for p in paths if Lease(p).try_take()]
    print(json.dumps(won), flush=True)
    (done / str(os.getpid())).touch()
    deadline = time.time() + 60
    while len(list(done.iterdir())) < 4 and time.time() < deadline:  # hold them (heartbeating) till all have tried
        time.sleep(0.05)
""")


def test_of_processes_taking_over_one_stale_claim_at_once_exactly_one_wins(tmp_path):
    paths = [claim_file(tmp_path / "g", f"cell{i}") for i in range(40)]
    for path in paths:
        left_by_another_machine(path, age_s=3 * STALE_S)
    (tmp_path / "done").mkdir()
    start = time.time() + 1.0  # every taker starts its attempts at the same moment
    takers = [subprocess.Popen([sys.executable, "-c", TAKER, str(start), str(tmp_path / "done"), *map(str, paths)],
                               stdout=subprocess.PIPE, text=True) for _ in range(4)]
    won = [json.loads(taker.communicate(timeout=90)[0]) for taker in takers]
    assert all(taker.returncode == 0 for taker in takers)
    winners = {str(path): sum(str(path) in mine for mine in won) for path in paths}
    assert set(winners.values()) == {1}, winners
    assert not [p for p in (tmp_path / "g" / CLAIMS).iterdir() if ".takeover" in p.name or ".aside-" in p.name]


def test_threads_taking_over_one_stale_lease_at_once_exactly_one_wins(tmp_path):
    import threading

    for round_ in range(20):
        path = tmp_path / f"lease{round_}"
        left_by_another_machine(path, age_s=3 * STALE_S)
        barrier, wins = threading.Barrier(6), []
        leases = [Lease(path) for _ in range(6)]

        def take(lease):
            barrier.wait()
            if lease.try_take():
                wins.append(lease)

        threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1
        wins[0].release()
        assert not path.exists()


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf"])
def test_a_meaningless_stale_timeout_is_one_line_before_any_work(tmp_path, monkeypatch, capsys, value):
    from solverbench.cli import main

    monkeypatch.setenv("SOLVERBENCH_CLAIM_STALE_S", value)
    with pytest.raises(ValueError, match="SOLVERBENCH_CLAIM_STALE_S"):
        stale_seconds()
    grid = tmp_path / "g.yaml"
    grid.write_text("backbones: [{name: gmm, params: {preset: gmm2d}}]\nsolvers: [euler]\nnfe: [2]\nnum_samples: 8\n")
    assert main(["run", str(grid), "--results", str(tmp_path / "results"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "SOLVERBENCH_CLAIM_STALE_S" in err and "above 0" in err
    assert not (tmp_path / "results" / "g" / "results.parquet").exists()


def test_runs_asking_for_one_reference_at_once_solve_it_once(tmp_path, monkeypatch):
    """Workers sharing a results folder: the first holds the reference's lease while it solves, the others wait for
    it and read its cache file."""
    import threading

    import torch

    import solverbench.reference as reference
    from backbones.gmm import GaussianMixture
    from solverbench.guidance import NO_GUIDANCE
    from solverbench.reference import Tolerance, reference_endpoints

    solves, solve = [], reference.solve_reference

    def slow_solve(*args, **kwargs):
        solves.append(1)
        time.sleep(0.3)  # the others ask meanwhile
        return solve(*args, **kwargs)

    monkeypatch.setattr(reference, "solve_reference", slow_solve)
    backbone, noise = GaussianMixture("gmm2d"), torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    found = [None] * 3

    def ask(i):
        found[i] = reference_endpoints(backbone, noise, None, seed=0, dtype_name="float32", guidance=NO_GUIDANCE,
                                       tolerance=Tolerance(1e-5, 1e-5), batch_size=8, cache_dir=tmp_path)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(solves) == 1 and all(torch.equal(f, found[0]) for f in found)
    assert not list(tmp_path.glob("*.lease"))
