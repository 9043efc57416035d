"""``solverbench report``: every table and figure from the results store, and an index of them.

Each setting of the results (``split.split_settings``) is rendered by the report section of its
rows' study kind (``sections``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Optional

from solverbench.report import inversion_section, lte_section, sweep_section  # noqa: F401  (register their sections)
from solverbench.report.figures.style import SolverStyles
from solverbench.report.index import write_index
from solverbench.report.labels import shorter_labels
from solverbench.report.sections import ReportContext
from solverbench.report.settings import labelled_with_schedules
from solverbench.report.split import section_for, split_settings
from solverbench.results import current_rows, read_tables


class NoResultsError(FileNotFoundError):
    """The results directory holds nothing to report."""


def write_report(results_dir: str | Path = "results", out_dir: str | Path = "reports",
                 grids: Optional[Iterable[str]] = None) -> Path:
    """Render every grid's results (or the named grids') into ``out_dir``; returns ``out_dir/index.md``."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise NoResultsError(f"results directory {results_dir}/ does not exist: run a grid first, e.g. "
                             "`python -m solverbench run configs/quick.yaml` (or point --results at one)")
    stored, damaged = read_tables(results_dir, grids)
    for error in damaged.values():
        print(f"solverbench report: warning: skipping a grid: {error}", file=sys.stderr)
    frame = current_rows(stored, results_dir)
    if frame.empty:
        if damaged:
            raise NoResultsError(f"no readable results under {results_dir}/: " + "; ".join(map(str, damaged.values())))
        raise NoResultsError(f"no results under {results_dir}/ (no <grid>/results.parquet there): run a grid "
                             "first, e.g. `python -m solverbench run configs/quick.yaml`")
    out_dir.mkdir(parents=True, exist_ok=True)
    frame["solver_label"] = shorter_labels(labelled_with_schedules(frame))
    context = ReportContext(out_dir, results_dir, SolverStyles(frame["solver_label"]))
    sections = [section_for(setting.kind).render(setting, context) for setting in split_settings(frame)]
    header = (f"Rendered from {results_dir.resolve()} ({len(frame)} rows from the grids "
              f"{', '.join(sorted(frame['grid'].unique()))}); nothing was rerun.")
    superseded = len(stored) - len(frame)
    if superseded:
        header += (f" {superseded} stored rows of cells that the grids no longer have (an earlier NFE list, "
                   "sample count or checkpoint file) are left out.")
    if damaged:
        header += f" Skipped, their results table being damaged: {', '.join(sorted(damaged))}."
    return write_index(out_dir, sections, header)
