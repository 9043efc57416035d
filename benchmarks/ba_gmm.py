"""The BA-solver's evidence on the 64-D class-conditional gmm (configs/ba_gmm.yaml).

    python benchmarks/ba_gmm.py [--grid configs/ba_gmm.yaml] [--results results] [--force] [--threads N]

Runs the grid through the engine (its rows land in RESULTS/ba_gmm/ like any run; the
SideNet is trained inside the run, on the grid's ``solver_settings: {ba: ...}``, and cached under
RESULTS/.cache/sidenet/), then prints a Markdown table of the mean trajectory error of
every solver at every NFE (± half its 95% interval), the SideNet's training cost, and the
three claims checked by those intervals ("yes" only where they do not overlap): ``ba``
beats every training-free solver at NFE 5, 7, 10; bi-anchor beats single-anchor with the same
SideNet at each NFE; ``ba`` at NFE 10 against euler at NFE 100.  Solvers the grid names that are not
registered (yet) are skipped with a note.  The oracle rows are analysis (the scheme's
error floor with exact node velocities), never part of the ranking.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from solverbench.grid import parse_grid
from solverbench.report.tables.model import format_with_interval
from solverbench.registry import SOLVERS
from solverbench.engine import run_grid

CLAIM_NFE = (5, 7, 10)


def registered_only(raw: dict) -> dict:
    """The grid without the solvers nobody registered, each skipped with a printed note."""
    kept = []
    for entry in raw["solvers"]:
        name = entry if isinstance(entry, str) else entry["name"]
        if name in SOLVERS:
            kept.append(entry)
        else:
            print(f"note: solver {name!r} is not registered here; its rows are skipped", file=sys.stderr)
    return {**raw, "solvers": kept}


def error_table(rows: pd.DataFrame, column: str = "trajectory_error") -> pd.DataFrame:
    """Mean trajectory error (or its interval's ``_ci_low``/``_ci_high``), one row per solver label (in grid
    order), one column per NFE."""
    ok = rows[rows["status"] == "ok"]
    table = ok.pivot_table(index="solver_label", columns="nfe", values=column, aggfunc="first")
    order = list(dict.fromkeys(ok["solver_label"]))
    return table.loc[order]


def verdict(rows: pd.DataFrame, a: str, b: str, nfe_a: int, nfe_b: int) -> str:
    """Whether ``a`` at ``nfe_a`` has a lower trajectory error than ``b`` at ``nfe_b``, by their 95% intervals."""
    low, high = error_table(rows, "trajectory_error_ci_low"), error_table(rows, "trajectory_error_ci_high")
    if high.loc[a, nfe_a] < low.loc[b, nfe_b]:
        return "yes"
    if low.loc[a, nfe_a] > high.loc[b, nfe_b]:
        return "NO"
    return "not told apart (the 95% intervals overlap)"


def markdown(rows: pd.DataFrame, analysis: set[str], sidenet_free: set[str]) -> str:
    table = error_table(rows)
    low, high = error_table(rows, "trajectory_error_ci_low"), error_table(rows, "trajectory_error_ci_high")
    nfes = [int(n) for n in table.columns]
    lines = ["| solver | kind | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|---|" + "---|" * len(nfes)]
    for label, values in table.iterrows():
        kind = "analysis (oracle)" if label in analysis else ("training-free" if label in sidenet_free else "trained SideNet")
        cells = ["" if pd.isna(v) else format_with_interval(v, low.loc[label, n], high.loc[label, n])
                 for n, v in values.items()]
        lines.append(f"| {label} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims(table: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    first = rows.drop_duplicates("solver_label").set_index("solver_label")
    trained = [s for s in table.index if first.loc[s, "solver"] == "ba" and first.loc[s, "sidenet_params"] > 0]
    single = [s for s in table.index if first.loc[s, "solver"] == "ba-single" and first.loc[s, "sidenet_params"] > 0]
    free = [s for s in table.index if not first.loc[s, "analysis_only"] and not first.loc[s, "solver"].startswith("ba")
            and first.loc[s, "solver"] != "reference"]
    out = []
    for ba in trained:
        for nfe in CLAIM_NFE:
            best = table.loc[free, nfe].idxmin()
            out.append(f"- {ba} beats every training-free solver at NFE {nfe}: {verdict(rows, ba, best, nfe, nfe)} "
                       f"({table.loc[ba, nfe]:.2e} vs best {best} {table.loc[best, nfe]:.2e})")
        for sa in (s for s in single if first.loc[s, "sidenet_checkpoint"] == first.loc[ba, "sidenet_checkpoint"]):
            for nfe in table.columns[table.loc[[ba, sa]].notna().all()]:
                out.append(f"- bi-anchor {ba} beats single-anchor {sa} at NFE {int(nfe)}: {verdict(rows, ba, sa, nfe, nfe)} "
                           f"({table.loc[ba, nfe]:.2e} vs {table.loc[sa, nfe]:.2e})")
        if "euler" in table.index and 100 in table.columns and 10 in table.columns:
            out.append(f"- {ba} at NFE 10 is below euler at NFE 100: {verdict(rows, ba, 'euler', 10, 100)} "
                       f"({table.loc[ba, 10]:.2e} vs {table.loc['euler', 100]:.2e})")
    return out


def sidenet_cost(rows: pd.DataFrame) -> list[str]:
    trained = rows[(rows["sidenet_params"].fillna(0) > 0)].drop_duplicates("sidenet_checkpoint")
    return [f"- SideNet {Path(r.sidenet_checkpoint).name}: trained in {r.sidenet_train_seconds:.0f} s, "
            f"{int(r.sidenet_iterations)} iterations at batch {int(r.sidenet_batch_size)}, "
            f"{int(r.sidenet_params):,} parameters, final loss {r.sidenet_final_loss:.3g}"
            for r in trained.itertuples()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=str(Path(__file__).resolve().parents[1] / "configs" / "ba_gmm.yaml"))
    parser.add_argument("--results", default="results", help="results directory (default: results)")
    parser.add_argument("--force", action="store_true", help="redo cells already in the results")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    path = Path(args.grid)
    grid = parse_grid(registered_only(yaml.safe_load(path.read_text())), path=path)
    rows = run_grid(grid, args.results, force=args.force, progress=not args.no_progress).current()
    rows = rows[rows["grid"] == grid.name]
    table = error_table(rows)
    first = rows.drop_duplicates("solver_label").set_index("solver_label")
    analysis = set(first.index[first["analysis_only"].astype(bool)])
    sidenet_free = {s for s in first.index if s not in analysis and not first.loc[s, "solver"].startswith("ba")}
    sidenet_free |= {s for s in first.index if first.loc[s, "solver"].startswith("ba") and s not in analysis
                     and first.loc[s, "sidenet_params"] == 0}
    print(f"Trajectory error (mean RMS distance to the reference endpoint) on {grid.backbones[0].name} "
          f"{dict(grid.backbones[0].params)}, {grid.num_samples} samples, seed {grid.seeds[0]}, {grid.schedules[0]} "
          f"grid, {grid.dtype}, reference rtol = atol = {grid.tolerance.rtol:g}:\n")
    print(markdown(rows, analysis, sidenet_free))
    print("\nSideNet training cost:")
    print("\n".join(sidenet_cost(rows)))
    print("\nClaims:")
    print("\n".join(claims(table, rows)))
    print(f"\n(benchmark wall time {time.perf_counter() - start:.0f} s, cached cells and SideNet included as found)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
