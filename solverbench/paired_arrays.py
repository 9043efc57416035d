"""What a cell keeps for comparing it with the other cells of its table on the same samples.

The solvers of one table start from the same noise (same seed, backbone, labels and number of
samples), so their results are paired: a comparison reads, for each metric column,

- ``per_sample/COLUMN``: a per-sample metric's values, one per sample in sample order (the
  paired difference of two cells is their difference sample by sample);
- ``bootstrap/COLUMN``: a distribution metric's bootstrap replicates in draw order; every cell
  of the table draws the same indices (``solverbench.uncertainty.bootstrap_replicates``), so the
  difference of two cells' replicates is the bootstrap of their paired difference;
- ``labels``: the cell's class labels in sample order, where it has them (the strata of a
  per-sample bootstrap: each class resampled from its own samples, as the intervals are).

They live in ``RESULTS/<grid>/paired/<cell id>.npz`` (float64 arrays), written whole or not at all.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

KINDS = ("per_sample", "bootstrap")
FOLDER = "paired"


def arrays_path(grid_dir: Path, cell_id: str) -> Path:
    return Path(grid_dir) / FOLDER / f"{cell_id}.npz"


def write_paired_arrays(grid_dir: Path, cell_id: str, arrays: Mapping[str, np.ndarray]) -> Optional[Path]:
    """Write a cell's arrays (keys ``KIND/COLUMN``); nothing when it has none."""
    if not arrays:
        return None
    path = arrays_path(grid_dir, cell_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **{key: np.asarray(values, dtype=np.float64) for key, values in arrays.items()})
    os.replace(tmp, path)
    return path


def read_paired_arrays(grid_dir: Path, cell_id: str) -> dict[str, np.ndarray]:
    """A cell's arrays by ``KIND/COLUMN``; empty where the cell kept none (or was run before they were kept)."""
    path = arrays_path(grid_dir, cell_id)
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}
