"""BA's floor on digits: the bi-anchor scheme with exact node velocities (``ba-oracle``, a perfect SideNet) beside
BA with the shipped 136k SideNet, BA with the SideNet off and Euler, at NFE 5 and 10 on the uniform grid and on the
grid shifted 0.5, with Euler at NFE 100 (the goal) as the line to reach.

    [NVIDIA_TF32_OVERRIDE=0] python -m research.sidenet.scheme_floor [--device cuda] [--samples 500] [--oracle-tol 1e-6]
        [--results results] [--out research/sidenet/findings/scheme_floor.md]

The setting is the attempts table's digits setting (``sidenet_attempts.py``: CFG 2, seed 0, the reference at
rtol = atol = 1e-5), so its figures are comparable with that table's.  No SideNet can take BA below its scheme's
floor: where the floor is above the goal, no training reaches it.  The oracle's node velocities come from exact
float64 solves of the U-Net between the nodes (``--oracle-tol``): on the 2-core CPU one cell of 500 samples had not
finished after 15 minutes (the run was stopped); on one H200 the whole table took 50 s.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import solverbench as sb
from research.sidenet import CHECKPOINTS, ROOT
from research.sidenet.attempts import SETTINGS
from research.sidenet.sidenet_attempts import error, same_schedule
from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.solver import solver_label

NFES = (5, 10)
GOAL_NFE = 100
SCHEDULES = (None, {"name": "shifted", "shift": 0.5})  # None: uniform


def solvers(oracle_tol: float) -> list[tuple[str, str, dict]]:
    """(row name, solver, params) of the table."""
    return [("BA, exact node velocities (ba-oracle)", "ba-oracle", {"rtol": oracle_tol, "atol": oracle_tol}),
            ("BA, 136k SideNet (digits.pt)", "ba", {"checkpoint": str(CHECKPOINTS / "digits.pt")}),
            ("BA, SideNet off", "ba", {"sidenet": "off"}),
            ("Euler", "euler", {})]


def grid_spec(samples: int, device: str, oracle_tol: float) -> dict:
    entries = [{"name": solver, "params": params, **({"schedule": schedule} if schedule else {})}
               for _, solver, params in solvers(oracle_tol) for schedule in SCHEDULES]
    return {**SETTINGS["digits"], "num_samples": samples, "batch_size": samples, "name": "scheme_floor_digits",
            "schedule": "uniform", "seeds": [0], "nfe": list(NFES), "metrics": ["trajectory_error"],
            "solvers": entries + [{"name": "euler", "nfe": [GOAL_NFE]}], "save_samples": 0, "device": device,
            "dtype": "float32"}


def table(rows, oracle_tol: float) -> str:
    goal = rows[(rows["solver"] == "euler") & (rows["nfe"] == GOAL_NFE)].iloc[0]
    lines = [f"Goal, Euler at NFE {GOAL_NFE} (uniform grid): {error(goal)}", "",
             "| solver | grid | NFE 5 | NFE 10 |", "|---|---|--:|--:|"]
    for name, solver, params in solvers(oracle_tol):
        label = solver_label(solver, sb.get_solver(solver, **params).params())  # as the results store it
        for schedule in SCHEDULES:
            mine = rows[(rows["solver_label"] == label) & (rows["nfe"] != GOAL_NFE)
                        & rows["schedule"].map(lambda recorded: same_schedule(recorded, schedule))]
            by_nfe = {int(r["nfe"]): r for _, r in mine.iterrows()}
            grid = "uniform" if schedule is None else f"shifted {schedule['shift']}"
            cells = [error(by_nfe[n]) if n in by_nfe else "–" for n in NFES]
            lines.append(f"| {name} | {grid} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--oracle-tol", type=float, default=1e-6, help="rtol = atol of the oracle's exact solves")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error(f"--samples must be at least 2 (an interval needs two), got {args.samples}")
    if not 0 < args.oracle_tol < 1e-5:
        parser.error(f"--oracle-tol must be in (0, 1e-5), tighter than the reference, got {args.oracle_tol:g}")
    grid = parse_grid(grid_spec(args.samples, args.device, args.oracle_tol),
                      path=ROOT / "configs" / "scheme_floor_digits.yaml")
    rows = run_grid(grid, args.results, progress=True).frame
    rows = rows[(rows["grid"] == grid.name) & (rows["status"] == "ok")]
    text = table(rows, args.oracle_tol)
    print(text)
    if args.out:
        command = "python -m research.sidenet.scheme_floor " + " ".join(argv if argv is not None else sys.argv[1:])
        if args.device.startswith("cuda"):  # full float32 convolutions, as on a CPU (cuDNN's default rounds via TF32)
            command = "NVIDIA_TF32_OVERRIDE=0 " + command
        setting = __doc__.split("\n\n")[2].strip()  # the docstring's paragraph on the setting and the cost
        Path(args.out).write_text(
            "# BA's floor on digits: the scheme with exact node velocities\n\nProduced by\n\n"
            f"    {command.strip()}\n\n{setting}\n\n{text}\n\n"
            f"Errors: trajectory error ± half the 95% interval, {args.samples} samples, one seed (seed 0's noise and "
            "labels), CFG 2, reference at rtol = atol = 1e-5; the oracle's exact solves at rtol = atol = "
            f"{args.oracle_tol:g}.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
