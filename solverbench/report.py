"""``solverbench report``: tables from the results store (minimal version).

Writes ``index.md`` with, for every grid, a table of the first metric per solver and NFE.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from solverbench.results import read_results

PREFERRED_METRICS = ("trajectory_error", "sliced_wasserstein", "log_likelihood")


def write_report(results_dir: str | Path = "results", out_dir: str | Path = "reports",
                 grids: Optional[Iterable[str]] = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = read_results(results_dir, grids)
    lines = ["# solverbench report", ""]
    if frame.empty:
        lines.append(f"No results found under `{results_dir}`. Run `python -m solverbench run configs/quick.yaml` first.")
    for grid, rows in (frame.groupby("grid") if not frame.empty else []):
        ok = rows[rows["status"] == "ok"]
        metric = next((m for m in PREFERRED_METRICS if m in ok and ok[m].notna().any()), None)
        lines += [f"## {grid}", ""]
        if metric is None:
            lines += ["No finished cells with metrics.", ""]
            continue
        table = ok.pivot_table(index="solver_label", columns="nfe", values=metric, aggfunc="mean")
        lines += [f"{metric} (mean over samples) by solver and NFE:", "", table.to_markdown(floatfmt=".3e"), ""]
    index = out_dir / "index.md"
    index.write_text("\n".join(lines) + "\n")
    return index
