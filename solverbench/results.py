"""The results store: one parquet table per grid, one row per cell, written atomically.

Each finished cell (or group of quick cells, ``put_many``) rewrites the table through a
temporary file and an atomic rename, so a run killed at any moment leaves a readable file
holding every cell put before.

The table is also a cache: rows of cells that the grid no longer has (its NFE list, sample
count or a checkpoint file changed) stay, to be reused if the grid comes back to them.
``cells.json`` beside it lists the cells of the grid as last run; ``read_results`` gives
those only, unless asked for every row.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

TABLE = "results.parquet"
CURRENT_CELLS = "cells.json"


class ResultsTable:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / TABLE
        self.frame = pd.read_parquet(self.path) if self.path.is_file() else pd.DataFrame()

    def done(self) -> set[str]:
        """Cells finished (ok, or failed with a recorded reason); cells that raised are retried."""
        if "cell_id" not in self.frame:
            return set()
        return set(self.frame.loc[self.frame["status"] != "error", "cell_id"])

    def put(self, row: dict[str, Any]) -> None:
        """Add a row, replacing an earlier row of the same cell, and persist."""
        self.put_many([row])

    def put_many(self, rows: list[dict[str, Any]]) -> None:
        """Add rows (of distinct cells), replacing earlier rows of the same cells; persist once."""
        if not rows:
            return
        frame = self.frame
        if "cell_id" in frame:
            frame = frame[~frame["cell_id"].isin([row["cell_id"] for row in rows])]
        new = pd.DataFrame(rows)
        self.frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
        self._write()

    def set_current(self, cell_ids: Iterable[str]) -> None:
        """Record the cells of the grid being run: what ``read_results`` reports."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{CURRENT_CELLS}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(sorted(set(cell_ids))))
        os.replace(tmp, self.directory / CURRENT_CELLS)

    def current(self) -> pd.DataFrame:
        """The rows of the grid's cells as last run (every row where no run recorded them)."""
        return current_rows(self.frame, self.directory.parent)

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{TABLE}.{os.getpid()}.tmp")
        self.frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.path)


def current_rows(frame: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """The rows of each grid's cells as last run (all of a grid's rows where no run recorded its cells)."""
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    for grid in frame["grid"].unique():
        listing = Path(results_dir) / grid / CURRENT_CELLS
        if listing.is_file():
            keep &= (frame["grid"] != grid) | frame["cell_id"].isin(json.loads(listing.read_text()))
    return frame[keep].reset_index(drop=True)


def read_results(results_dir: str | Path, grids: Iterable[str] | None = None, *,
                 superseded: bool = False) -> pd.DataFrame:
    """The results of every grid under ``results_dir`` (or of the named grids), concatenated: the
    cells of each grid as last run, or with ``superseded=True`` every row its table holds."""
    results_dir = Path(results_dir)
    names = list(grids) if grids else sorted(p.parent.name for p in results_dir.glob(f"*/{TABLE}"))
    frames = []
    for name in names:
        path = results_dir / name / TABLE
        if not path.is_file():
            raise FileNotFoundError(f"no results for grid {name!r}: {path} does not exist")
        frames.append(pd.read_parquet(path))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame if superseded else current_rows(frame, results_dir)
