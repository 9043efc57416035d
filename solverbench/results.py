"""The results store: one parquet table per grid, one row per cell; safe under concurrent runs and kill -9.

- Every write is a read-modify-write under the folder's file lock (``.lock``, the filelock
  package): the table is read from disk, the new rows replace earlier rows of the same cells,
  and the result goes to a temporary file renamed over the table.  Two runs writing one
  table at once lose no row; a run killed at any moment leaves a readable table holding
  every cell put before.
- A run holds a cell's claim (``.claims/<cell id>.lock``, taken without waiting) while it
  runs the cell, so two runs of one grid share its cells instead of each doing all of them;
  the operating system drops the claims of a killed run.
- ``grid.json`` records which grid file the folder belongs to: another grid file with the
  same ``name:`` is refused (naming both files) unless forced.
- A table that cannot be read is an error naming the file and what to do.

Reads are cached: a table object re-reads the file only where its identity (device, inode,
size, modification and change times) differs from that of the file it last read or wrote;
every writer replaces the file by a rename, so another run's write always changes it.
``done()`` after this run's own write needs no read at all: a sweep of N cells reads the
table about N times instead of 2N.

The table is also a cache: rows of cells that the grid no longer has (its NFE list, sample
count or a checkpoint file changed) stay, to be reused if the grid comes back to them.
``cells.json`` beside it lists the cells of the grid as last run; ``read_results`` gives
those only, unless asked for every row.
"""
from __future__ import annotations

import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import pandas as pd
from filelock import FileLock, Timeout

TABLE = "results.parquet"
CURRENT_CELLS = "cells.json"
OWNER = "grid.json"
LOCK = ".lock"
CLAIMS = ".claims"


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
    """The parquet table at ``path`` (empty when there is none); a damaged one is one clear error."""
    return read_table_identified(path)[0]


def read_table_identified(path: Path) -> tuple[pd.DataFrame, Optional[FileIdentity]]:
    """``read_table(path)`` and the identity of the file read (None where there is none)."""
    try:
        with open(path, "rb") as f:  # one open: a table renamed over this one meanwhile cannot mix into the read
            identity = file_identity(os.fstat(f.fileno()))
            data = f.read()
        if not data:
            raise ValueError("the file is empty (0 bytes)")
        return pd.read_parquet(io.BytesIO(data)), identity
    except FileNotFoundError:
        return pd.DataFrame(), None
    except Exception as err:  # pyarrow raises several types for truncated or foreign files
        reason = " ".join(str(err).split())[:200]
        raise DamagedResultsError(
            f"results table {path} cannot be read ({type(err).__name__}: {reason}); move it aside "
            f"(mv {path} {path}.damaged) and run the grid again: its cells will rerun") from None


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
        self.lock = FileLock(str(self.directory / LOCK))
        self._frame_read_from: Optional[FileIdentity] = None  # the file ``frame`` was read from (None: not read)
        self._done: tuple[Optional[FileIdentity], set[str]] = (None, set())  # done() of the file so identified
        self.refresh()

    def refresh(self) -> pd.DataFrame:
        """The table as on disk now (read again where the file changed since it was read: another run may
        have added rows)."""
        if self._frame_read_from is None or identity_of(self.path) != self._frame_read_from:
            self.frame, self._frame_read_from = read_table_identified(self.path)
        return self.frame

    def done(self) -> set[str]:
        """Cells finished (ok, or failed with a recorded reason), as on disk now; cells that raised are retried."""
        identity, done = self._done
        if identity is None or identity_of(self.path) != identity:
            frame = self.refresh()
            identity, done = self._frame_read_from, finished(frame)
            self._done = identity, done
        return set(done)

    def put(self, row: dict[str, Any]) -> None:
        """Add a row, replacing an earlier row of the same cell, and persist."""
        self.put_many([row])

    def put_many(self, rows: list[dict[str, Any]]) -> None:
        """Add rows (of distinct cells), replacing earlier rows of the same cells; persist once, under the lock."""
        if not rows:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.lock:
            frame = self.refresh()
            if "cell_id" in frame:
                frame = frame[~frame["cell_id"].isin([row["cell_id"] for row in rows])]
            new = pd.DataFrame(rows)
            self.frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
            tmp = self.path.with_name(f".{TABLE}.{os.getpid()}.tmp")
            self.frame.to_parquet(tmp, index=False)
            os.replace(tmp, self.path)
            # ``frame`` was not read back (its dtypes may differ from a read's), but its cells are exact
            self._frame_read_from = None
            self._done = identity_of(self.path), finished(self.frame)

    @contextmanager
    def claim(self, cell_id: str) -> Iterator[bool]:
        """Hold the cell's claim while the block runs; yields False (at once) where another run holds it."""
        claims = self.directory / CLAIMS
        claims.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(claims / f"{cell_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def wait_for_claim(self, cell_id: str) -> None:
        """Block until no run holds the cell's claim."""
        with FileLock(str(self.directory / CLAIMS / f"{cell_id}.lock")):
            pass

    def adopt(self, grid_file: Optional[Path], grid_hash: str, *, force: bool = False) -> None:
        """Record that ``grid_file`` writes this folder; refuse a folder another grid file wrote.

        The same file (even edited), or a file with the same contents elsewhere (a moved copy),
        may take it over; ``force`` lets any file take it over.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        mine = {"grid_file": None if grid_file is None else str(Path(grid_file).resolve()), "grid_hash": grid_hash}
        record = self.directory / OWNER
        with self.lock:
            if record.is_file() and not force:
                owner = read_json(record)
                if owner.get("grid_file") != mine["grid_file"] and owner.get("grid_hash") != grid_hash:
                    def name(path: Optional[str]) -> str:
                        return path or "a grid given in Python (no file)"
                    raise GridOwnershipError(
                        f"results folder {self.directory} belongs to the grid file {name(owner.get('grid_file'))}, "
                        f"not to {name(mine['grid_file'])} (both are named {self.directory.name!r}); rename one "
                        "(its name: key), point --results elsewhere, or pass --force to take the folder over")
            tmp = self.directory / f".{OWNER}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(mine, indent=1))
            os.replace(tmp, record)

    def set_current(self, cell_ids: Iterable[str]) -> None:
        """Record the cells of the grid being run: what ``read_results`` reports."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{CURRENT_CELLS}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(sorted(set(cell_ids))))
        os.replace(tmp, self.directory / CURRENT_CELLS)

    def current(self) -> pd.DataFrame:
        """The rows of the grid's cells as last run (every row where no run recorded them)."""
        return current_rows(self.frame, self.directory.parent)


def finished(frame: pd.DataFrame) -> set[str]:
    """The cells of ``frame`` finished: ok, or failed with a recorded reason (not those that raised)."""
    if "cell_id" not in frame:
        return set()
    return set(frame.loc[frame["status"] != "error", "cell_id"])


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
            frames.append(read_table(path))
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
