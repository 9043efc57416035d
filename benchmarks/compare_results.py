"""Are two results stores the same numbers?  Cell by cell, every metric column, bit for bit.

    python benchmarks/compare_results.py BEFORE_RESULTS AFTER_RESULTS [--grid NAME ...]

Rows are matched by what defines a cell (grid, backbone and its parameters, solver and its
parameters, NFE, schedule, guidance, seed, and for LTE rows the start time and step size),
not by cell id, so a change of how ids are computed does not hide a change of numbers.
Every metric column (trajectory error, sliced Wasserstein, LTE, FID, ..., with their
intervals and noise floors), the measured NFE and the status are compared with ``==`` (NaN
equal to NaN); other numeric columns a solver reports (its counters, its network's size) are
compared where both sides hold a value (a solver that counts nothing has no counter column
any more); timings, timestamps and provenance are left out.  Exit status 1 when a cell is
missing on one side or a value differs.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from solverbench.registry import METRICS
from solverbench.results import read_results

CELL_KEYS = ("grid", "backbone", "backbone_params", "solver", "solver_params", "nfe", "schedule", "cfg_scale",
             "cfg_lo", "cfg_hi", "seed", "t_start", "H")
NOT_COMPARED = ("wall_time", "wall_time_per_sample", "sidenet_time", "timestamp", "git_commit", "versions",
                "config_hash", "grid_hash", "cell_id", "device_name", "traceback", "sidenet_train_seconds",
                "sidenet_checkpoint", "batch_size")


STRICT = ("nfe_measured", "nfe_measured_max", "status", "error", "lte", "lte_max")


def strict(column: str) -> bool:
    """A metric (or its interval or floor), the measured NFE or the status: compared in every cell."""
    return column in STRICT or any(column.startswith(name) for name in METRICS.names())


def compared_columns(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    columns = [c for c in before.columns if c in after.columns and c not in CELL_KEYS and c not in NOT_COMPARED
               and not c.endswith("_seconds")]
    return [c for c in columns if pd.api.types.is_numeric_dtype(before[c]) or c in ("status", "error")]


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in CELL_KEYS if k in frame]
    key = frame[keys].apply(lambda row: " | ".join(str(v) for v in row), axis=1)
    if key.duplicated().any():
        raise SystemExit(f"two rows share the cell key {key[key.duplicated()].iloc[0]}")
    return frame.set_index(key)


def same(a: pd.Series, b: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        x, y = a.to_numpy(dtype=float, na_value=np.nan), b.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series((x == y) | (np.isnan(x) & np.isnan(y)), index=a.index)
    return (a.astype(str) == b.astype(str)) | (a.isna() & b.isna())


def compare(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """One line per difference: a missing cell, or a column that differs in a cell."""
    before, after = keyed(before), keyed(after)
    problems = [f"only before: {k}" for k in before.index.difference(after.index)]
    problems += [f"only after: {k}" for k in after.index.difference(before.index)]
    common = before.index.intersection(after.index)
    for column in compared_columns(before, after):
        a, b = before.loc[common, column], after.loc[common, column]
        equal = same(a, b) if strict(column) else same(a, b) | a.isna() | b.isna()
        for cell in equal.index[~equal]:
            problems.append(f"{column} differs in {cell}: {before.at[cell, column]!r} != {after.at[cell, column]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="results folder of the earlier code")
    parser.add_argument("after", help="results folder of the later code")
    parser.add_argument("--grid", nargs="*", default=None, help="only these grids (default: every grid of BEFORE)")
    args = parser.parse_args(argv)
    before = read_results(args.before, args.grid)
    after = read_results(args.after, args.grid or sorted(before["grid"].unique()))
    problems = compare(before, after)
    columns = compared_columns(keyed(before), keyed(after))
    for grid, rows in before.groupby("grid"):
        print(f"{grid}: {len(rows)} cells before, {int((after['grid'] == grid).sum())} after")
    print(f"compared in every cell: {', '.join(c for c in columns if strict(c))}")
    print(f"compared where both hold a value: {', '.join(c for c in columns if not strict(c))}")
    if problems:
        print(f"{len(problems)} differences:")
        for line in problems[:50]:
            print(f"  {line}")
        return 1
    print("identical: every cell on both sides, every compared value equal bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
