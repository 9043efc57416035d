"""Leases: files that one process at a time holds, on a local disk or on a filesystem that many machines share
(NFS, Lustre), where ``flock`` and ``fcntl`` locks cannot be trusted.

- Taking: the lease's file is created with ``O_CREAT | O_EXCL``, atomic on local filesystems, on NFS from
  version 3 and on Lustre: of all the processes creating it, one succeeds.  The file says who holds it: host,
  process id, start time and a random token.
- Holding: one heartbeat thread per process sets the modification time of every lease the process holds every
  ``stale_s / 8`` seconds (``utime`` without times: on NFS the file server's clock sets it).
- Releasing removes the file, where it still holds the holder's own token.
- Taking over a lease whose holder is gone, found so:
  at once where the holder is a process of this host that no longer runs (a killed run); otherwise where the file
  was not touched for ``stale_s`` seconds (a holder on another machine that died, was preempted or lost the
  filesystem).  A file's age is measured on the filesystem's clock, not this machine's: against the modification
  time of a probe file this process creates beside it, set by the same file server.
  A taker first creates the lease's takeover file (``<lease>.takeover``, ``O_EXCL``: one taker at a time), reads
  the lease again, moves it aside only where it still holds the token judged gone (a rename, then checked), and
  then competes for the lease by ``O_EXCL`` creation like any newcomer: however many processes take over at once,
  one holds the lease.

Limits: ``stale_s`` must exceed the longest pause of a holder (a suspended process, a stalled mount, a holder
whose heartbeat thread cannot run): a holder paused longer may find its lease taken over, and both then hold it.
Where file times come from the clients' clocks (Lustre), those clocks must agree (NTP) to within a small part of
``stale_s``.  "A process of this host" is one of the same host name: machines sharing a host name, or containers
sharing one without sharing their process ids, must leave that to ``stale_s``.  A taker killed inside a takeover
(a few file operations) leaves a takeover file that the next taker removes once it is stale.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

STALE_ENV = "SOLVERBENCH_CLAIM_STALE_S"  # seconds without a heartbeat after which a lease is taken over
DEFAULT_STALE_S = 120.0
HEARTBEATS_PER_STALE = 8  # heartbeats within the stale timeout
CLOCK_REFRESH_S = 60.0  # how long a measured offset between this machine's clock and a filesystem's is reused
HOST = socket.gethostname()


def stale_seconds() -> float:
    """The stale timeout of leases: ``SOLVERBENCH_CLAIM_STALE_S`` where it is set, else 120 s; ValueError (one
    line) where it is not a positive number."""
    written = os.environ.get(STALE_ENV)
    if written is None:
        return DEFAULT_STALE_S
    try:
        value = float(written)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{STALE_ENV}={written!r}: give a number of seconds above 0 (the time without a heartbeat "
                         f"after which a run's claim is taken over; default {DEFAULT_STALE_S:g})")
    return value


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its file says, and when its file was last touched (filesystem clock)."""

    path: Path
    host: Optional[str]
    pid: Optional[int]
    started: Optional[str]
    token: Optional[str]  # None: a file being written, or not a lease
    mtime: float

    def age_s(self) -> float:
        """Seconds since the file was last touched, on the filesystem's clock."""
        return max(0.0, filesystem_now(self.path.parent) - self.mtime)

    def dead_here(self) -> bool:
        """Whether the holder is a process of this host that no longer runs (never this process)."""
        return self.host == HOST and self.pid is not None and self.pid != os.getpid() and not process_runs(self.pid)

    def describe(self) -> str:
        return f"{self.host or '?'} pid {self.pid if self.pid is not None else '?'}"


class Lease:
    """A lease on the file at ``path`` (see the module): ``try_take()`` at once, ``take()`` waiting, ``release()``;
    as a context manager it waits to take it and releases it (re-entrant in one object)."""

    def __init__(self, path: str | Path, stale_s: Optional[float] = None):
        self.path = Path(path)
        self.stale_s = stale_seconds() if stale_s is None else float(stale_s)
        self.token: Optional[str] = None  # the token of the hold, while held
        self._depth = 0

    # -- holding -------------------------------------------------------------------------------------------
    def try_take(self) -> bool:
        """Take the lease if it is free or its holder is gone; False (at once) where another process holds it."""
        for _ in range(4):  # a lease released or taken over meanwhile is tried again
            if self._create():
                return True
            holder = read_holder(self.path)
            if holder is None:
                continue
            if not self.gone(holder):
                return False
            self._take_over(holder)
        return False

    def take(self, poll_s: float = 0.005, max_poll_s: float = 0.1) -> None:
        """Take the lease, waiting while another process holds it."""
        while not self.try_take():
            time.sleep(poll_s)
            poll_s = min(poll_s * 2, max_poll_s)

    def release(self) -> bool:
        """Release the lease; False where it was taken over meanwhile (its file holds another token: left alone)."""
        token, self.token = self.token, None
        if token is None:
            return False
        try:
            return remove_if_holding(self.path, token)
        finally:
            HEARTBEAT.drop(token)

    def __enter__(self) -> "Lease":
        if self._depth == 0:
            self.take()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.release()

    # -- waiting and judging -------------------------------------------------------------------------------
    def holder(self) -> Optional[Holder]:
        """Who holds the lease now (None where nobody does)."""
        return read_holder(self.path)

    def gone(self, holder: Holder) -> bool:
        """Whether ``holder`` no longer holds the lease: a process of this host that does not run (or this very
        process, which does not hold it), or a file not touched for ``stale_s``."""
        if holder.dead_here():
            return True
        if holder.host == HOST and holder.pid == os.getpid() and not HEARTBEAT.holds(self.path, holder.token):
            return True
        return holder.age_s() > self.stale_s

    def wait_until_free(self, poll_s: float = 0.05, max_poll_s: float = 1.0) -> None:
        """Block until nobody holds the lease, or its holder is gone (it may then be taken over)."""
        while True:
            holder = read_holder(self.path)
            if holder is None or self.gone(holder):
                return
            time.sleep(poll_s)
            poll_s = min(poll_s * 2, max_poll_s)

    # -- files ---------------------------------------------------------------------------------------------
    def _create(self) -> bool:
        token = secrets.token_hex(16)
        HEARTBEAT.expect(self.path, token)  # first: the file is this process's from the moment it exists
        if not create_exclusive(self.path, token):
            HEARTBEAT.drop(token)
            return False
        self.token = token
        HEARTBEAT.add(self.path, token, self.stale_s / HEARTBEATS_PER_STALE)
        return True

    def _take_over(self, judged: Holder) -> None:
        """Move the lease aside where it still holds the token judged gone, under its takeover file."""
        guard = self.path.with_name(self.path.name + ".takeover")
        mine = secrets.token_hex(16)
        if not create_exclusive(guard, mine):
            other = read_holder(guard)
            if other is not None and (other.dead_here() or other.age_s() > self.stale_s):
                remove_if_holding(guard, other.token)  # a taker killed inside its takeover
            return
        try:
            now = read_holder(self.path)
            if now is not None and now.token == judged.token:
                remove_if_holding(self.path, judged.token)
        finally:
            remove_if_holding(guard, mine)


def create_exclusive(path: Path, token: str) -> bool:
    """Create ``path`` (``O_EXCL``) holding this process's identity and ``token``; False where it exists."""
    record = {"host": HOST, "pid": os.getpid(), "token": token,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    return True


def read_holder(path: Path) -> Optional[Holder]:
    """The holder of the lease file at ``path`` (None where there is none).  The file is opened (on NFS an open
    fetches its attributes afresh) and its age measured on the filesystem's clock; a file without a readable
    record (being written) has a holder of unknown token."""
    try:
        with open(path, "rb") as f:
            mtime = os.fstat(f.fileno()).st_mtime
            data = f.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        record = json.loads(data)
        if not isinstance(record, dict):
            raise ValueError
    except ValueError:
        record = {}
    pid = record.get("pid")
    return Holder(path=path, host=record.get("host"), pid=pid if isinstance(pid, int) else None,
                  started=record.get("started"), token=record.get("token"), mtime=mtime)


def remove_if_holding(path: Path, token: Optional[str]) -> bool:
    """Remove the lease file at ``path`` if it holds ``token``: renamed aside (atomic), checked, then deleted; a file
    of another token moved so is put back.  True where the file of ``token`` was removed."""
    if token is None:
        return False
    aside = path.with_name(f"{path.name}.aside-{secrets.token_hex(8)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        moved = read_holder(aside)
        if moved is not None and moved.token == token:
            return True
        try:
            os.link(aside, path)  # another hold's file: back where it was
        except FileExistsError:
            pass
        return False
    finally:
        aside.unlink(missing_ok=True)


def process_runs(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


_CLOCKS: dict[str, tuple[float, float]] = {}  # folder -> (filesystem time - this machine's time, when measured)


def filesystem_now(folder: Path) -> float:
    """The time now on the clock of the filesystem holding ``folder``: the modification time of a probe file
    created there (measured at most every ``CLOCK_REFRESH_S``, its offset from this machine's clock reused)."""
    key = str(folder)
    local = time.time()
    offset, measured = _CLOCKS.get(key, (0.0, -float("inf")))
    if local - measured > CLOCK_REFRESH_S:
        probe = folder / f".clock-{HOST}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError:  # a folder this process cannot write: this machine's clock
            return local
        try:
            offset = os.fstat(fd).st_mtime - time.time()
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
        _CLOCKS[key] = (offset, local)
    return local + offset


class Heartbeat:
    """The process's heartbeat: one daemon thread that touches every lease the process holds."""

    def __init__(self):
        self._held: dict[str, tuple[Path, Optional[float]]] = {}  # token -> (path, interval; None: not beating yet)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def expect(self, path: Path, token: str) -> None:
        """Count the lease at ``path`` of ``token`` as this process's (about to be created), without touching it."""
        with self._lock:
            self._forget_parent()
            self._held[token] = (path, None)

    def add(self, path: Path, token: str, interval_s: float) -> None:
        """Touch the lease at ``path`` of ``token`` every ``interval_s`` until it is dropped."""
        with self._lock:
            self._forget_parent()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="solverbench-lease-heartbeat", daemon=True)
                self._thread.start()
            self._held[token] = (path, interval_s)
        self._wake.set()

    def drop(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def holds(self, path: Path, token: Optional[str]) -> bool:
        """Whether this process holds (or is creating) the lease at ``path`` with ``token``."""
        with self._lock:
            held = self._held.get(token) if token is not None else None
        return held is not None and held[0] == path

    def _forget_parent(self) -> None:
        """In a forked child: none of the parent's leases, and no heartbeat thread yet (call holding the lock)."""
        if self._pid != os.getpid():
            self._pid, self._held, self._thread = os.getpid(), {}, None

    def _beat(self) -> None:
        while True:
            self._wake.clear()  # before the snapshot: a lease added after it wakes the wait below at once
            with self._lock:
                beating = [(path, i) for path, i in self._held.values() if i is not None]
            for path, _ in beating:
                try:
                    os.utime(path)
                except OSError:  # moved aside for a moment, or taken over: the next beat tries again
                    pass
            self._wake.wait(min((i for _, i in beating), default=None))


HEARTBEAT = Heartbeat()
