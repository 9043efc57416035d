"""The results store: one parquet table per grid, one row per cell; safe under concurrent runs and kill -9.

- Every write is a read-modify-write under the folder's lock (``.lock``, a lease: ``solverbench.leases``):
  the table is read from disk, the new rows replace earlier rows of the same cells, and the result goes
  to a temporary file renamed over the table.  Two runs writing one table at once lose no row; a run
  killed at any moment leaves a readable table holding every cell put before.
- A run holds a cell's claim (``.claims/<cell id>.lock``, a lease taken without waiting) while it runs
  the cell, so runs of one grid, on one machine or on several sharing the folder, share its cells
  instead of each doing all of them.  A killed run's claims are taken over: at once by a run on its
  host, by the others once its heartbeat is older than the stale timeout (``SOLVERBENCH_CLAIM_STALE_S``).
  Leases are files created with ``O_EXCL`` and kept fresh by a heartbeat, not ``flock`` locks: they
  hold on NFS and Lustre as on a local disk.
- A new row that is not ``ok`` (``failed``, ``error``) does not replace a cell's ``ok`` row
  unless asked (``put_many(..., replace_ok=True)``): a forced rerun that fails keeps the good row.
- ``grid.json`` records which grid file the folder belongs to: another grid file with the
  same ``name:`` is refused (naming both files) unless forced.
- A table that cannot be read, or that is parquet but not a results table (no ``cell_id`` and
  ``status`` columns; for reports, no ``grid`` column either), is an error naming the file and
  what to do.
- Tidy after a kill: the temporary files of the table, ``grid.json`` and ``cells.json`` are
  written only under the lock, so the first run to hold it removes any it finds (a killed
  writer's); a claim's file goes when its holder leaves the cell (a run that takes the claim after
  that checks ``done()`` under it, and finds the cell done), or when another run takes it over.

Reads are cached: a table object re-reads the file only where its identity (device, inode,
size, modification and change times) differs from that of the file it last read or wrote;
every writer replaces the file by a rename, so another run's write always changes it.
Neither ``done()`` nor the next write reads the table after this object's own write, so a run
writing alone reads it once; a write converts only its new rows (``with_rows``) and writes the
table whole.

The table is also a cache: rows of cells that the grid no longer has (its NFE list, sample
count or a checkpoint file changed) stay, to be reused if the grid comes back to them.
``cells.json`` beside it lists the cells of the grid as last run; ``read_results`` gives
those only, unless asked for every row.
"""
from __future__ import annotations

import functools
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from solverbench.cache_entry import write_atomically
from solverbench.leases import Holder, Lease, stale_seconds

TABLE = "results.parquet"
CURRENT_CELLS = "cells.json"
OWNER = "grid.json"
LOCK = ".lock"
CLAIMS = ".claims"
COLUMNS = ("cell_id", "status")  # what every results table has (the store reads them)
REPORTED_COLUMNS = ("grid", *COLUMNS)  # what every table solverbench writes has (reports read them too)
TEMPORARIES = tuple(f".{name}.*.tmp" for name in (TABLE, OWNER, CURRENT_CELLS))  # written under the lock only


class DamagedResultsError(ValueError):
    """A results table that cannot be read; the message names it and says what to do."""


class GridOwnershipError(ValueError):
    """A results folder written by another grid file of the same name."""


FileIdentity = tuple[int, int, int, int, int]


def file_identity(stat: os.stat_result) -> FileIdentity:
    """What changes whenever a file is replaced (by a rename) or written: device, inode, size, mtime, ctime."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def identity_of(path: Path) -> Optional[FileIdentity]:
    """The identity of the file at ``path`` now; None where there is none."""
    try:
        return file_identity(os.stat(path))
    except FileNotFoundError:
        return None


def read_table(path: Path) -> pd.DataFrame:
    """The parquet table at ``path`` (empty when there is none); a damaged one, or one that is not a
    results table, is one clear error."""
    return read_stored(path).frame


class StoredTable:
    """A results table as one read or write of its file left it: the file's identity (None: no file), its
    parquet bytes, and, made from them when first asked, its arrow table and its pandas frame (the frame
    is the one ``pd.read_parquet`` reads from the file)."""

    def __init__(self, identity: Optional[FileIdentity], data: bytes, table: Optional[pa.Table] = None):
        self.identity, self.data, self._table = identity, data, table

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.data)) if self.data else pd.DataFrame()

    @property
    def table(self) -> Optional[pa.Table]:
        if self._table is None and self.data:
            self._table = pq.read_table(pa.BufferReader(self.data))
        return self._table

    @functools.cached_property
    def statuses(self) -> dict[str, str]:
        """Each cell's status."""
        table = self.table
        if table is None or "cell_id" not in table.column_names:
            return {}
        return dict(zip(table["cell_id"].to_pylist(), table["status"].to_pylist()))

    def cells(self, where: Callable[[str], bool]) -> set[str]:
        """The cells whose status passes ``where``."""
        return {cell for cell, status in self.statuses.items() if where(status)}


def read_stored(path: Path) -> StoredTable:
    """The table at ``path`` as a ``StoredTable`` (no file: an empty one); a damaged one, or one that is not a
    results table, is one clear error."""
    try:
        with open(path, "rb") as f:  # one open: a table renamed over this one meanwhile cannot mix into the read
            identity = file_identity(os.fstat(f.fileno()))
            data = f.read()
        if not data:
            raise ValueError("the file is empty (0 bytes)")
        stored = StoredTable(identity, data)
        columns = stored.table.column_names
    except FileNotFoundError:
        return StoredTable(None, b"")
    except Exception as err:  # pyarrow raises several types for truncated or foreign files
        reason = " ".join(str(err).split())[:200]
        raise DamagedResultsError(
            f"results table {path} cannot be read ({type(err).__name__}: {reason}); move it aside "
            f"(mv {path} {path}.damaged) and run the grid again: its cells will rerun") from None
    require_columns(pd.DataFrame(columns=columns), path, COLUMNS)
    return stored


def with_rows(table: Optional[pa.Table], rows: list[dict[str, Any]]) -> pa.Table:
    """``table`` with ``rows`` (of distinct cells) added at the end in place of its rows of the same cells.

    Only the new rows are converted, column by column as pandas converts values (a float NaN is a missing
    value, None a missing value of any type); a column takes the type that holds both its old and its new
    values (an integer column that gains a float is float), and one that only one side has is empty on the
    other.  The table keeps no pandas metadata: a read makes each column's dtype from its arrow type, as it
    does for a frame written at once."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    new = pa.table({name: pa.array([row.get(name) for row in rows], from_pandas=True) for name in names})
    if table is not None and "cell_id" in table.column_names:
        replaced = {row["cell_id"] for row in rows}
        kept = [cell not in replaced for cell in table["cell_id"].to_pylist()]
        if not all(kept):
            table = table.filter(pa.array(kept))
    if table is not None and table.num_rows:
        # one chunk a column, not one a write: filtering and writing a table of many chunks costs per chunk
        new = pa.concat_tables([table, new], promote_options="permissive").combine_chunks()
    return new.replace_schema_metadata(None)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def require_columns(frame: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    """Refuse (DamagedResultsError, naming the file and what to do) a table read from ``path`` without
    ``columns``: parquet, but not a results table."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:8])) + (", ..." if len(frame.columns) > 8 else "")
        raise DamagedResultsError(
            f"results table {path} is parquet but not a solverbench results table (no column"
            f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}; its columns: {found or 'none'}); move it "
            f"aside (mv {path} {path}.foreign) and run the grid again: its cells will rerun")


def read_json(path: Path) -> Any:
    """A small JSON file of the store (cells.json, grid.json); a damaged one is one clear error."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedResultsError(f"{path} cannot be read ({type(err).__name__}: {err}); delete it and run the "
                                  "grid again (it is rewritten at the start of every run)") from None


class ResultsTable:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / TABLE
        self.stale_s = stale_seconds()  # a bad SOLVERBENCH_CLAIM_STALE_S is one line here, before any work
        self.lock = Lease(self.directory / LOCK, self.stale_s)
        # the table as this object last read or wrote it; read again whenever the file's identity differs
        self._stored = StoredTable(None, b"")
        self._read = False
        self._tidied = False  # whether this object removed stale temporary files (once, under the lock)
        self.refresh()

    @property
    def frame(self) -> pd.DataFrame:
        """The table as this object last read or wrote it."""
        return self._stored.frame

    def _current(self) -> StoredTable:
        """The table as on disk now: what this object last read or wrote while the file is still that one,
        else read again (another run may have added rows)."""
        if not self._read or identity_of(self.path) != self._stored.identity:
            self._stored, self._read = read_stored(self.path), True
        return self._stored

    def refresh(self) -> pd.DataFrame:
        """The table as on disk now."""
        return self._current().frame

    def done(self) -> set[str]:
        """Cells finished (ok, or failed with a recorded reason), as on disk now; cells that raised are retried."""
        return self._current().cells(lambda status: status != "error")

    def put(self, row: dict[str, Any]) -> None:
        """Add a row, replacing an earlier row of the same cell, and persist."""
        self.put_many([row])

    def put_many(self, rows: list[dict[str, Any]], *, replace_ok: bool = False) -> list[dict[str, Any]]:
        """Add rows (of distinct cells), replacing earlier rows of the same cells; persist once, under the lock.

        A row that is not ``ok`` does not replace an ``ok`` row of its cell unless ``replace_ok``;
        returns the rows so held back ([] where every row was written)."""
        if not rows:
            return []
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.locked():
            stored = self._current()
            good = set() if replace_ok else stored.cells(lambda status: status == "ok")
            held = [row for row in rows if row.get("status") != "ok" and row["cell_id"] in good]
            rows = [row for row in rows if not (row.get("status") != "ok" and row["cell_id"] in good)]
            if not rows:
                return held
            table = with_rows(stored.table, rows)
            data = parquet_bytes(table)
            write_atomically(self.path, lambda tmp: tmp.write_bytes(data))
            self._stored = StoredTable(identity_of(self.path), data, table)
        return held

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock; the first time, remove the temporary files a killed writer left (every
        writer of them holds the lock, so any found now is stale)."""
        with self.lock:
            if not self._tidied:
                remove_stale_temporaries(self.directory)
                self._tidied = True
            yield

    @contextmanager
    def claim(self, cell_id: str) -> Iterator[bool]:
        """Hold the cell's claim while the block runs; yields False (at once) where another run holds it.

        A claim whose holder is gone (a killed run of this host, or no heartbeat for the stale timeout) is taken
        over.  The claim's file goes when the block ends: a run that takes the claim after that finds the cell
        done where its row was written."""
        claims = self.directory / CLAIMS
        claims.mkdir(parents=True, exist_ok=True)
        lease = Lease(claims / f"{cell_id}.lock", self.stale_s)
        if not lease.try_take():
            yield False
            return
        try:
            yield True
        finally:
            lease.release()

    def wait_for_claim(self, cell_id: str) -> None:
        """Block until no run holds the cell's claim (its holder left it, or is gone)."""
        Lease(self.directory / CLAIMS / f"{cell_id}.lock", self.stale_s).wait_until_free()

    def claims(self) -> dict[str, tuple[Holder, bool]]:
        """The claims on the folder's cells now: cell id -> (its holder, whether the holder is gone: a claim the
        next run takes over)."""
        found = {}
        for path in sorted((self.directory / CLAIMS).glob("*.lock")):
            lease = Lease(path, self.stale_s)
            holder = lease.holder()
            if holder is not None:
                found[path.name[:-len(".lock")]] = (holder, lease.gone(holder))
        return found

    def adopt(self, grid_file: Optional[Path], grid_hash: str, *, force: bool = False) -> None:
        """Record that ``grid_file`` writes this folder; refuse a folder another grid file wrote.

        The same file (even edited), or a file with the same contents elsewhere (a moved copy),
        may take it over; ``force`` lets any file take it over.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        mine = {"grid_file": None if grid_file is None else str(Path(grid_file).resolve()), "grid_hash": grid_hash}
        with self.locked():
            if not force:
                self.check_owner(grid_file, grid_hash)
            write_atomically(self.directory / OWNER, lambda tmp: tmp.write_text(json.dumps(mine, indent=1)))

    def check_owner(self, grid_file: Optional[Path], grid_hash: str) -> None:
        """Refuse (GridOwnershipError) where another grid file wrote this folder (see ``adopt``)."""
        record = self.directory / OWNER
        if not record.is_file():
            return
        mine = None if grid_file is None else str(Path(grid_file).resolve())
        owner = read_json(record)
        if owner.get("grid_file") != mine and owner.get("grid_hash") != grid_hash:
            def name(path: Optional[str]) -> str:
                return path or "a grid given in Python (no file)"
            raise GridOwnershipError(
                f"results folder {self.directory} belongs to the grid file {name(owner.get('grid_file'))}, "
                f"not to {name(mine)} (both are named {self.directory.name!r}); rename one "
                "(its name: key), point --results elsewhere, or pass --force to take the folder over")

    def set_current(self, cell_ids: Iterable[str]) -> None:
        """Record the cells of the grid being run: what ``read_results`` reports."""
        self.directory.mkdir(parents=True, exist_ok=True)
        listing = json.dumps(sorted(set(cell_ids)))
        with self.locked():
            write_atomically(self.directory / CURRENT_CELLS, lambda tmp: tmp.write_text(listing))

    def writes(self) -> list[Path]:
        """What a run writes here: the folder (the table, listings and temporary files are created in it),
        its lock file and its claims."""
        return [self.directory, self.directory / LOCK, self.directory / CLAIMS]

    def current(self) -> pd.DataFrame:
        """The rows of the grid's cells as last run (every row where no run recorded them)."""
        return current_rows(self.frame, self.directory.parent)


def remove_stale_temporaries(directory: Path) -> None:
    """Remove the temporary files of the table and listings in ``directory`` (call it holding the lock)."""
    for pattern in TEMPORARIES:
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)


def first_unwritable(paths: Iterable[Path]) -> Optional[Path]:
    """The first of ``paths`` that this process may not write (a missing one: its nearest existing folder
    may not be written, so it cannot be made); None where all may be written."""
    for path in paths:
        existing = Path(path)
        while not os.path.lexists(existing) and existing.parent != existing:
            existing = existing.parent
        if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
            return existing
    return None


def current_rows(frame: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """The rows of each grid's cells as last run (all of a grid's rows where no run recorded its cells)."""
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    for grid in frame["grid"].unique():
        listing = Path(results_dir) / grid / CURRENT_CELLS
        if listing.is_file():
            keep &= (frame["grid"] != grid) | frame["cell_id"].isin(read_json(listing))
    return frame[keep].reset_index(drop=True)


def grid_names(results_dir: str | Path) -> list[str]:
    """The grids with a results table under ``results_dir``."""
    return sorted(p.parent.name for p in Path(results_dir).glob(f"*/{TABLE}"))


def read_tables(results_dir: str | Path, grids: Iterable[str] | None = None
                ) -> tuple[pd.DataFrame, dict[str, DamagedResultsError]]:
    """Every row of the named grids (all grids by default) and the grids whose table is damaged."""
    results_dir = Path(results_dir)
    frames, damaged = [], {}
    for name in (list(grids) if grids else grid_names(results_dir)):
        path = results_dir / name / TABLE
        if not path.is_file():
            raise FileNotFoundError(f"no results for grid {name!r}: {path} does not exist")
        try:
            frame = read_table(path)
            require_columns(frame, path, REPORTED_COLUMNS)
            frames.append(frame)
        except DamagedResultsError as err:
            damaged[name] = err
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), damaged


def read_results(results_dir: str | Path, grids: Iterable[str] | None = None, *,
                 superseded: bool = False) -> pd.DataFrame:
    """The results of every grid under ``results_dir`` (or of the named grids), concatenated: the
    cells of each grid as last run, or with ``superseded=True`` every row its table holds."""
    frame, damaged = read_tables(results_dir, grids)
    if damaged:
        raise next(iter(damaged.values()))
    return frame if superseded else current_rows(frame, results_dir)
