"""Budget-adaptive intervals against fixed grids: does choosing each interval from the solver's embedded
error estimate (``schedule: {name: adaptive}``) beat the uniform, shifted, GITS and LD3 grids at the same NFE?

    python benchmarks/adaptive_intervals.py [--samples 256] [--results results] [--out docs/benchmarks]
                                            [--backbones gmm64 heldout toy2d digits] [--force]

For each backbone the script runs one grid through the engine (rows in RESULTS/adaptive_<backbone>/, resumable):
the solver on the five schedules at NFE 5, 7, 10 and 15, trajectory error against the dopri5 reference.  The
solver is BA with the SideNet shipped for the backbone (gmm64: gmm64.pt; digits under CFG 2: digits_guided.pt,
the one fine-tuned on guided solves); no shipped SideNet fits the held-out mixture (the gmm64 recipe with
another seed) or toy2d (moons), so there it is BA with its SideNet off and UniPC (bh2, order 2).  Then it writes

- ``OUT/adaptive_intervals.md``: each schedule's error at each NFE (± half its 95% interval), the paired
  difference adaptive minus each fixed grid on the same samples (mean per-sample difference, its 95% paired
  bootstrap interval, ``better`` / ``worse`` where Holm's correction over the backbone's comparisons keeps it
  at family level 5%, else ``tie``), and what each grid cost to make and to sample with (wall seconds: time
  it with the machine otherwise idle);
- ``OUT/adaptive_intervals_profile.png``: per backbone at NFE 10, where the adaptive grid put its intervals
  (beside the uniform, GITS and LD3 grids), and each interval's estimated local error (the pilot's RMS of
  predictor minus corrector) beside its true local error (a tight reference step from the solver's own state,
  RMS over the pilot), which says whether the estimate can be trusted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solverbench.adaptive import adaptive_settings, decide_grid  # noqa: E402
from solverbench.backbone import resolve_backbone  # noqa: E402
from solverbench.engine import run_grid  # noqa: E402
from solverbench.field import VelocityField  # noqa: E402
from solverbench.grid import parse_grid  # noqa: E402
from solverbench.guidance import Guidance  # noqa: E402
from solverbench.noise import training_draws  # noqa: E402
from solverbench.paired import holm, per_sample_difference, sample_draws  # noqa: E402
from solverbench.paired_arrays import read_paired_arrays  # noqa: E402
from solverbench.reference import Tolerance, reference_trajectory  # noqa: E402
from solverbench.report.tables.model import format_number, format_with_interval  # noqa: E402
from solverbench.solver import get_solver  # noqa: E402

NFE = (5, 7, 10, 15)
PROFILE_NFE = 10
FIXED = ("uniform", "shifted", "gits", "ld3")
METRIC = "trajectory_error"
ADAPTIVE = {"name": "adaptive"}
CHECKPOINTS = "../solvers/ba/checkpoints"  # as the grid names them, next to this file


@dataclass(frozen=True)
class Setting:
    """One backbone of the comparison: its grid entries and the solvers compared on it."""

    key: str
    title: str
    backbone: dict[str, Any]
    solvers: tuple[dict[str, Any], ...]
    guidance: float = 1.0
    tolerance: float = 1e-7  # of the reference solve
    ld3: dict[str, Any] = field(default_factory=lambda: {"name": "ld3"})


SETTINGS = {
    "gmm64": Setting("gmm64", "gmm64 (BA, shipped SideNet gmm64.pt)", {"name": "gmm", "params": {"preset": "gmm64"}},
                     ({"name": "ba", "params": {"checkpoint": f"{CHECKPOINTS}/gmm64.pt"}},)),
    "heldout": Setting("heldout", "held-out mixture: the gmm64 recipe, seed 1 (no SideNet fits: BA off, UniPC)",
                       {"name": "gmm", "params": {"preset": "gmm64", "seed": 1}},
                       ({"name": "ba", "params": {"sidenet": "off"}},
                        {"name": "flow-unipc", "params": {"variant": "bh2", "order": 2}})),
    "toy2d": Setting("toy2d", "toy2d moons (no SideNet fits: BA off, UniPC)",
                     {"name": "toy2d", "params": {"dataset": "moons"}},
                     ({"name": "ba", "params": {"sidenet": "off"}},
                      {"name": "flow-unipc", "params": {"variant": "bh2", "order": 2}})),
    "digits": Setting("digits", "digits, CFG 2 (BA, shipped SideNet digits_guided.pt)", {"name": "digits"},
                      ({"name": "ba", "params": {"checkpoint": f"{CHECKPOINTS}/digits_guided.pt"}},),
                      guidance=2.0, tolerance=1e-5,
                      ld3={"name": "ld3", "samples": 48, "validation": 16, "batch_size": 16, "epochs": 4}),
}


def schedules(setting: Setting) -> list[Any]:
    return ["uniform", {"name": "shifted", "shift": 3.0}, {"name": "gits"}, setting.ld3, ADAPTIVE]


def schedule_name(written: str) -> str:
    value = json.loads(written)
    return value if isinstance(value, str) else value["name"]


def grid_for(setting: Setting, samples: int) -> dict[str, Any]:
    return {"name": f"adaptive_{setting.key}", "backbones": [setting.backbone], "solvers": list(setting.solvers),
            "nfe": list(NFE), "schedule": schedules(setting), "guidance": {"scale": setting.guidance},
            "num_samples": samples, "batch_size": samples, "metrics": [METRIC], "save_samples": 0,
            "reference": {"rtol": setting.tolerance, "atol": setting.tolerance}, "device": "cpu", "dtype": "float32"}


def rows_of(results: Path, setting: Setting) -> pd.DataFrame:
    table = pd.read_parquet(results / f"adaptive_{setting.key}" / "results.parquet")
    table = table[table["status"] == "ok"].copy()
    table["grid"] = table["schedule"].map(schedule_name)
    return table


def comparisons(results: Path, setting: Setting, table: pd.DataFrame) -> pd.DataFrame:
    """Adaptive minus each fixed grid, per solver and NFE, on the same samples, Holm-corrected per backbone."""
    folder = results / f"adaptive_{setting.key}"
    out = []
    for (label, nfe), cells in table.groupby(["solver_label", "nfe"]):
        by_grid = {row["grid"]: read_paired_arrays(folder, row["cell_id"])[f"per_sample/{METRIC}"]
                   for _, row in cells.iterrows()}
        if "adaptive" not in by_grid:
            continue
        draws = sample_draws(len(by_grid["adaptive"]), seed=0)
        for grid in FIXED:
            if grid in by_grid:
                diff = per_sample_difference(by_grid["adaptive"], by_grid[grid], draws, lower_is_better=True)
                better = per_sample_difference(by_grid[grid], by_grid["adaptive"], draws, lower_is_better=True)
                out.append({"solver": label, "nfe": int(nfe), "grid": grid, "difference": diff.value,
                            "low": diff.low, "high": diff.high, "p_worse": diff.p_worse, "p_better": better.p_worse})
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    rejected, _ = holm(list(frame["p_better"]) + list(frame["p_worse"]))
    n = len(frame)
    frame["verdict"] = ["better" if rejected[i] else "worse" if rejected[n + i] else "tie" for i in range(n)]
    return frame


def grid_by_nfe_tables(frame: pd.DataFrame, by: str, heading: str, first: str, grids: tuple[str, ...],
                       cell: Callable[[pd.Series], str]) -> list[str]:
    """Per solver (column ``by``), a markdown table of ``cell(row)`` with a line per grid and a column per NFE
    ("–" where the grid has no row at that NFE); ``heading`` formats the solver's label above it."""
    lines = []
    for label, rows in frame.groupby(by):
        lines += [heading.format(label), "", f"| {first} | " + " | ".join(f"NFE {n}" for n in NFE) + " |",
                  "|---|" + "---|" * len(NFE)]
        for grid in grids:
            cells = []
            for n in NFE:
                row = rows[(rows["grid"] == grid) & (rows["nfe"] == n)]
                cells.append("–" if row.empty else cell(row.iloc[0]))
            lines.append(f"| {grid} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def error_table(table: pd.DataFrame) -> list[str]:
    return grid_by_nfe_tables(table, "solver_label", "**{}**", "schedule", FIXED + ("adaptive",), lambda r: (
        format_with_interval(r[METRIC], r[f"{METRIC}_ci_low"], r[f"{METRIC}_ci_high"])))


def difference_table(frame: pd.DataFrame) -> list[str]:
    return grid_by_nfe_tables(frame, "solver", "**{}**: adaptive minus", "grid", FIXED, lambda r: (
        f"{format_number(r['difference'])} [{format_number(r['low'])}, {format_number(r['high'])}] {r['verdict']}"))


def cost_table(table: pd.DataFrame) -> list[str]:
    lines = ["| solver | schedule | made in (s), NFE " + ", ".join(map(str, NFE)) + " | pilot NFE per trajectory "
             "| sampling (ms per sample), NFE " + ", ".join(map(str, NFE)) + " |", "|---|---|---|---|---|"]
    for (label, grid), rows in table.groupby(["solver_label", "grid"]):
        rows = rows.set_index("nfe")
        made = ", ".join("0" if pd.isna(rows.loc[n].get("schedule_train_seconds")) else
                         format_number(rows.loc[n]["schedule_train_seconds"]) for n in NFE if n in rows.index)
        piloted = "schedule_pilot_nfe" in rows and rows["schedule_pilot_nfe"].notna().all()
        pilot = ", ".join(str(int(rows.loc[n]["schedule_pilot_nfe"])) for n in NFE if piloted and n in rows.index)
        sampling = ", ".join(format_number(1000 * rows.loc[n]["wall_time_per_sample"]) for n in NFE if n in rows.index)
        lines.append(f"| {label} | {grid} | {made} | {pilot or '–'} | {sampling} |")
    return lines + [""]


def verdict_lines(frame: pd.DataFrame) -> list[str]:
    lines = []
    for label, rows in frame.groupby("solver"):
        counts = rows["verdict"].value_counts()
        worse = rows[rows["verdict"] == "worse"]
        where = "; worse than " + ", ".join(f"{r.grid} at NFE {r.nfe}" for r in worse.itertuples()) if len(worse) \
            else ""
        lines.append(f"- {label}: better in {counts.get('better', 0)}, tie in {counts.get('tie', 0)}, worse in "
                     f"{counts.get('worse', 0)} of {len(rows)} comparisons{where}.")
    return lines


# -- the profile figure ----------------------------------------------------------------------------------

def short_label(label: str) -> str:
    """A solver label without its default scheme parameters and with a checkpoint's file name only."""
    for noise in ("rule=lobatto, nodes=2, ", "variant=bh2, order=2", "(, ", "()"):
        label = label.replace(noise, "(" if noise == "(, " else "")
    return label.replace("checkpoint=../solvers/ba/checkpoints/", "SideNet ").replace("sidenet=off", "SideNet off")

def local_errors(solver: Any, backbone: Any, guidance: Guidance, times: list[float], samples: int,
                 tolerance: float) -> tuple[list[Optional[float]], list[float]]:
    """Along ``times`` on the pilot's draws: each interval's estimate (the final one measured where the solver
    can) and the true local error of the state the solve carries on (the final interval's: what it returns),
    against a reference step from the solver's own state, both RMS over the trajectories."""
    noise, labels = training_draws(0, samples, backbone.sample_shape, backbone.num_classes, dtype=torch.float64)
    noise = noise.float()
    field = VelocityField(backbone, labels, guidance)
    stepper = solver.stepper(field, noise, 1.0)
    estimated, true = [], []
    with torch.no_grad():
        for k in range(len(times) - 1):
            left = len(times) - 1 - k
            exact = reference_trajectory(VelocityField(backbone, labels, guidance), stepper.x, times[k:k + 2],
                                         Tolerance(tolerance, tolerance))[-1]
            moved, estimate = stepper.step(times[k + 1], None)
            if left == 1:
                moved, _ = stepper.step(times[k + 1], 1)
            estimated.append(None if estimate is None else estimate.pow(2).mean().sqrt().item())
            true.append((moved.x.double() - exact).flatten(1).pow(2).mean(1).mean().sqrt().item())
            stepper = moved
    return estimated, true


def profile_figure(results: Path, settings: list[Setting], tables: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 2]})
    for col, setting in enumerate(settings):
        table = tables[setting.key]
        spec = setting.solvers[0]
        label = table["solver_label"].iloc[0] if len(setting.solvers) == 1 else \
            table[table["solver"] == spec["name"]]["solver_label"].iloc[0]
        rows = table[(table["solver_label"] == label) & (table["nfe"] == PROFILE_NFE)]
        top, bottom = axes[0][col], axes[1][col]
        for y, grid in enumerate(("uniform", "gits", "ld3", "adaptive")):
            row = rows[rows["grid"] == grid]
            times = (np.linspace(1, 0, PROFILE_NFE + 1) if grid == "uniform" or row.empty
                     else np.array(json.loads(row.iloc[0]["schedule_times"])))
            top.plot(times, [y] * len(times), "|", markersize=12, color="C3" if grid == "adaptive" else "0.3")
        top.set_yticks(range(4), ["uniform", "gits", "ld3", "adaptive"])
        top.set_xlim(1.02, -0.02)
        top.set_title(f"{setting.key}: {short_label(label)}, NFE {PROFILE_NFE}", fontsize=9)
        backbone = resolve_backbone(setting.backbone["name"], **setting.backbone.get("params", {}))
        params = dict(spec.get("params", {}))
        if "checkpoint" in params:
            params["checkpoint"] = str(Path(__file__).parent / params["checkpoint"])
        solver = get_solver(spec["name"], **params)
        solver.prepare(backbone)
        guidance = Guidance(setting.guidance)
        grid = decide_grid(solver, backbone, guidance, adaptive_settings(ADAPTIVE), nfe=PROFILE_NFE,
                           conditional=backbone.num_classes is not None)
        times = grid.times.tolist()
        estimated, true = local_errors(solver, backbone, guidance, times, grid.settings.samples,
                                       min(setting.tolerance, 1e-6))
        middle = [(a + b) / 2 for a, b in zip(times[:-1], times[1:])]
        widths = [a - b for a, b in zip(times[:-1], times[1:])]
        bottom.bar(middle, true, width=widths, color="0.8", edgecolor="0.5", label="true local error")
        shown = [(m, e) for m, e in zip(middle, estimated) if e is not None]
        bottom.plot([m for m, _ in shown], [e for _, e in shown], "o", color="C3", label="estimate (pred. - corr.)")
        bottom.set_yscale("log")
        bottom.set_xlim(1.02, -0.02)
        bottom.set_xlabel("t (1: noise, 0: data)")
        if col == 0:
            bottom.set_ylabel("local error of each interval (RMS)")
            bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--backbones", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--force", action="store_true", help="run every cell again")
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args(argv)
    chosen = [SETTINGS[k] for k in args.backbones]
    tables, lines = {}, ["# Budget-adaptive intervals against fixed grids", "",
                         "Made by `python benchmarks/adaptive_intervals.py"
                         + (f" --samples {args.samples}" if args.samples != 256 else "")
                         + (f" --backbones {' '.join(args.backbones)}" if args.backbones != list(SETTINGS) else "")
                         + "` (docs/solvers/adaptive.md says what it shows). Trajectory error: RMS distance of each "
                         f"sample to the dopri5 reference from the same noise, mean over {args.samples} samples ± "
                         "half its 95% interval. Wall seconds: this run, on "
                         f"{machine()}; they say something only where the machine was otherwise idle.", ""]
    verdicts = []
    for setting in chosen:
        grid = parse_grid(grid_for(setting, args.samples), Path(__file__).resolve())  # files named next to this one
        run_grid(grid, args.results, force=args.force)
        table = rows_of(args.results, setting)
        tables[setting.key] = table
        frame = comparisons(args.results, setting, table)
        lines += [f"## {setting.title}", "", "Trajectory error:", ""] + error_table(table)
        lines += ["Paired difference, adaptive minus the fixed grid, on the same samples (mean per-sample "
                  "difference [95% paired bootstrap interval], verdict under Holm's correction over this backbone's "
                  "comparisons; negative: adaptive is more accurate):", ""] + difference_table(frame)
        lines += ["What each grid cost (wall seconds):", ""] + cost_table(table)
        verdicts += [f"- **{setting.key}**"] + ["  " + v for v in verdict_lines(frame)]
    lines += ["## Verdict", ""] + verdicts + [""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive_intervals.md").write_text("\n".join(lines))
    print("\n".join(lines))
    if not args.no_figure:
        profile_figure(args.results, chosen, tables, args.out / "adaptive_intervals_profile.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
