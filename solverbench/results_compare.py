"""Are two results stores the same numbers?  Cell by cell, every metric column, bit for bit.

    compare_stores(before_dir, after_dir, grids=None) -> StoreComparison

Rows are matched by what defines a cell (grid, backbone and its parameters, solver and its
parameters, NFE, schedule, guidance, seed, and for LTE rows the start time and step size),
not by cell id, so a change of how ids are computed does not hide a change of numbers.
Every metric column (trajectory error, sliced Wasserstein, LTE, FID, ..., with their
intervals and noise floors), the measured NFE and the status are compared with ``==`` (NaN
equal to NaN) in every cell; other numeric columns a solver reports (its counters, its
network's size) where both sides hold a value (a solver that counts nothing has no counter
column any more); timings (columns named ``..._time...`` or ``..._seconds``), timestamps and
provenance are left out.  ``solverbench compare BEFORE AFTER`` prints the comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from solverbench.registry import METRICS
from solverbench.results import grid_names, read_results

CELL_KEYS = ("grid", "backbone", "backbone_params", "solver", "solver_params", "nfe", "schedule", "cfg_scale",
             "cfg_lo", "cfg_hi", "seed", "t_start", "H")
PROVENANCE = ("timestamp", "git_commit", "versions", "config_hash", "grid_hash", "cell_id", "device_name", "traceback",
              "batch_size", "host", "pid")
STRICT = ("nfe_measured", "nfe_measured_max", "status", "error", "lte", "lte_max")


@dataclass
class StoreComparison:
    """Two results stores compared: the cells of each grid on each side, the columns compared, and one
    line per difference (a cell on one side only, or a column that differs in a cell)."""

    cells: dict[str, tuple[int, int]]  # grid -> (cells before, cells after)
    strict_columns: list[str]  # compared in every cell
    loose_columns: list[str]  # compared where both sides hold a value
    differences: list[str]

    @property
    def identical(self) -> bool:
        return not self.differences


def compare_stores(before_dir: str | Path, after_dir: str | Path,
                   grids: Optional[Iterable[str]] = None) -> StoreComparison:
    """Compare the results under ``before_dir`` with those under ``after_dir``: the named grids, or every
    grid of ``before_dir``.  A folder that does not exist or holds no results is a FileNotFoundError."""
    for folder in (before_dir, after_dir):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"results folder {folder} does not exist")
    grids = list(grids) if grids else grid_names(before_dir)
    if not grids:
        raise FileNotFoundError(f"results folder {before_dir} holds no results (no <grid>/results.parquet)")
    before, after = read_results(before_dir, grids), read_results(after_dir, grids)
    columns = compared_columns(before, after)
    return StoreComparison(
        cells={grid: (int((before["grid"] == grid).sum()), int((after["grid"] == grid).sum())) for grid in grids},
        strict_columns=[c for c in columns if strict(c)], loose_columns=[c for c in columns if not strict(c)],
        differences=differences(keyed(before), keyed(after), columns))


def strict(column: str) -> bool:
    """A metric (or its interval or floor), the measured NFE or the status: compared in every cell."""
    return column in STRICT or any(column.startswith(name) for name in METRICS.names())


def timing(column: str) -> bool:
    """A measured time (wall_time, wall_time_per_sample, train_seconds, ...): never the same twice."""
    words = column.split("_")
    return "time" in words or "seconds" in words


def compared_columns(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """The numeric columns both sides have, and the status and error, less cell keys, timings and provenance."""
    columns = [c for c in before.columns if c in after.columns and c not in CELL_KEYS and c not in PROVENANCE
               and not timing(c)]
    return [c for c in columns if pd.api.types.is_numeric_dtype(before[c]) or c in ("status", "error")]


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows indexed by what defines their cell (``grid | backbone | ...``)."""
    keys = [k for k in CELL_KEYS if k in frame]
    key = frame[keys].apply(lambda row: " | ".join(str(v) for v in row), axis=1)
    if key.duplicated().any():
        raise ValueError(f"two rows share the cell key {key[key.duplicated()].iloc[0]}")
    return frame.set_index(key)


def same(a: pd.Series, b: pd.Series) -> pd.Series:
    """Cell by cell, ``a == b`` bit for bit, NaN (or a missing value) equal to NaN."""
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        x, y = a.to_numpy(dtype=float, na_value=np.nan), b.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series((x == y) | (np.isnan(x) & np.isnan(y)), index=a.index)
    return (a.astype(str) == b.astype(str)) | (a.isna() & b.isna())


def differences(before: pd.DataFrame, after: pd.DataFrame, columns: list[str]) -> list[str]:
    """One line per difference between two keyed frames: a cell on one side only, or a column that
    differs in a cell (naming the column, the cell and both values)."""
    lines = [f"only before: {k}" for k in before.index.difference(after.index)]
    lines += [f"only after: {k}" for k in after.index.difference(before.index)]
    common = before.index.intersection(after.index)
    for column in columns:
        a, b = before.loc[common, column], after.loc[common, column]
        equal = same(a, b) if strict(column) else same(a, b) | a.isna() | b.isna()
        for cell in equal.index[~equal]:
            lines.append(f"{column} differs in {cell}: {plain(before.at[cell, column])!r} != "
                         f"{plain(after.at[cell, column])!r}")
    return lines


def plain(value: object) -> object:
    """A numpy scalar as the Python number it holds (its repr, ``0.07``, without ``np.float64(...)``)."""
    return value.item() if isinstance(value, np.generic) else value
