"""Accuracy per FLOP, pushed: every SideNet training attempt of attempts.yaml, with what it cost and the trajectory
error it reached, written to a committed table.

    OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_attempts [--results results] [--only gmm64|digits]
        [--missing train|keep] [--names NAME [NAME ...]] [--out research/sidenet/findings/sidenet_attempts.md]

``--out`` rewrites the tables and keeps the file's hand-written ``## Reading`` section; with ``--only`` it
keeps the other backbone's table as it is.  ``--missing keep`` does not train the SideNets missing from the
cache (hours on a CPU): their rows are copied from the ``--out`` file's earlier run, and the notes say which.
``--names`` measures the named attempts only, training their SideNets where not cached together with those of
the attempts they continue (also measured), and copies every other row from the ``--out`` file's earlier run:
one row rebuilt from a fresh clone, where ``--missing train`` would train every attempt of the table.

Each attempt (attempts.yaml) is a set of SideNet settings or a shipped checkpoint.  Its errors come from the engine:
BA at NFE 5 and 10 in the setting of configs/ba_gmm.yaml (gmm64, no guidance, 1024 samples, reference at 1e-9) or
configs/digits.yaml (digits, CFG 2, 500 samples, reference at 1e-5), with Euler at NFE 100 as the goal line.  A
SideNet that is not cached under RESULTS/.cache/sidenet/ is trained by the run (``python -m solverbench
train-sidenet ... `` with the same settings writes the same cache entry).  Training times are those recorded in
each checkpoint, on the machine and load it was trained under (see the notes).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import solverbench as sb
from research.sidenet import ROOT
from research.sidenet.attempts import ATTEMPTS, SETTINGS, Attempt, attempts_named
from solverbench.engine import run_grid
from solverbench.grid import parse_grid
from solverbench.report.tables.model import format_number, format_with_interval

NFES = (5, 10)
GOAL_NFE = 100


def entry(attempt: Attempt, results: str) -> dict:
    spec = {"name": attempt.schedule} if isinstance(attempt.schedule, str) else attempt.schedule
    return {"name": "ba", "params": attempt.params(results), **({"schedule": spec} if spec else {})}


def measure(backbone: str, attempts: list[Attempt], results: str) -> tuple[dict, dict]:
    """Per attempt: {nfe: row}; and Euler's goal row at NFE 100."""
    raw = {**SETTINGS[backbone], "name": f"sidenet_attempts_{backbone}", "schedule": "uniform", "seeds": [0],
           "nfe": list(NFES), "metrics": ["trajectory_error"], "save_samples": 0, "device": "cpu", "dtype": "float32"}
    for stage in stages(attempts):  # an attempt that continues another is parsed (its init_from checked) after it
        raw["solvers"] = [entry(a, results) for a in stage] + [{"name": "euler", "nfe": [GOAL_NFE]}]
        grid = parse_grid(raw, path=ROOT / "configs" / f"{raw['name']}.yaml")
        rows = run_grid(grid, results, progress=True).frame  # all of its cells: other scripts run subsets of this grid
    rows = rows[(rows["grid"] == grid.name) & (rows["status"] == "ok")]
    out = {}
    for attempt in attempts:
        mine = rows[(rows["solver_label"] == sb.get_solver("ba", **attempt.params(results)).label())
                    & rows["schedule"].map(lambda recorded: same_schedule(recorded, attempt.schedule))]
        out[attempt.name] = {int(r["nfe"]): r for _, r in mine.iterrows()}
    goal = rows[(rows["solver"] == "euler") & (rows["nfe"] == GOAL_NFE)].iloc[0]
    return out, goal


def stages(attempts: list[Attempt]) -> list[list[Attempt]]:
    """``attempts`` in the order they can be trained: first those that start from a shipped file or from scratch,
    then those that continue one of them, and so on (always at least one stage, for the goal's row)."""
    def depth(attempt: Attempt) -> int:
        before = attempt.continues()
        return 0 if before is None else 1 + depth(before)
    depths = [depth(a) for a in attempts]
    return [[a for a, d in zip(attempts, depths) if d == k] for k in range(max(depths, default=0) + 1)]


def same_schedule(recorded: str, wanted: Optional[str | dict]) -> bool:
    """Whether a row's schedule (JSON: a name, or a spec with one) is the attempt's: uniform where it names none,
    a learned one by name, a fixed one's spec whole."""
    value = json.loads(recorded)
    if isinstance(wanted, dict):
        return value == wanted
    return (value if isinstance(value, str) else value["name"]) == (wanted or "uniform")


def error(row) -> str:
    return format_with_interval(row["trajectory_error"], row["trajectory_error_ci_low"], row["trajectory_error_ci_high"])


def table(backbone: str, attempts: list[Attempt], measured: dict, goal, kept: Optional[dict] = None,
          named: bool = False) -> str:
    """The backbone's section; ``kept``: rows copied whole from an earlier run, by attempt name (``named``: the
    others were picked by ``--names``, and the note names those instead)."""
    kept = kept or {}
    lines = [f"### {backbone}: goal, Euler at NFE {GOAL_NFE}: {error(goal)}", "",
             "| attempt | settings | training (s) | parameters | NFE 5 | NFE 10 | why |", "|---|---|--:|--:|--:|--:|---|"]
    for attempt in attempts:
        if attempt.name in kept:
            lines.append(kept[attempt.name])
            continue
        rows = measured[attempt.name]
        first = next(iter(rows.values()), None)
        seconds = "?" if first is None else format_number(first["train_seconds"], 3)
        params = "?" if first is None else f"{int(first['trainable_params']):,}"
        setting = ", ".join(f"{k}={v}" for k, v in attempt.settings.items()) or f"checkpoint {attempt.checkpoint}"
        if attempt.init:
            setting = f"from {attempt.init}, " + setting
        if isinstance(attempt.schedule, dict):
            setting += ", sampled on time grid " + ", ".join(f"{k}={v}" for k, v in attempt.schedule.items())
        elif attempt.schedule:
            setting += f", time grid {attempt.schedule} (learned per NFE through BA)"
        cells = [error(rows[n]) if n in rows else "–" for n in NFES]
        lines.append(f"| {attempt.name} | {setting} | {seconds} | {params} | {' | '.join(cells)} | {attempt.why} |")
    if kept:
        if named:
            lines += ["", "Measured by this run (`--names` and the attempts they continue): " + "; ".join(
                a.name for a in attempts if a.name not in kept) + ". Every other row is kept from the earlier run "
                      "of this file."]
        else:
            lines += ["", "Kept from the earlier run of this file, their SideNets not in this run's cache (`--missing "
                      "keep`): " + "; ".join(name for name in kept) + "."]
    return "\n".join(lines)


def earlier_sections(text: str) -> dict[str, str]:
    """An earlier output's sections by backbone: from its ``### backbone:`` heading to the next heading or the
    notes."""
    sections = {}
    for chunk in text.split("\n### ")[1:]:
        body = "### " + chunk.split("\n\nErrors: ")[0].split("\n\n## ")[0].rstrip()
        sections[chunk.split(":")[0]] = body
    return sections


def earlier_rows(section: str) -> dict[str, str]:
    """The table rows of an earlier section, by attempt name."""
    return {line[2:].split(" | ")[0]: line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| attempt |", "|---"))}


NOTES = """Errors: trajectory error at NFE 5 and 10 ± half the 95% interval, one seed (gmm64: 1024 samples,
no guidance, reference at 1e-9; digits: 500 samples, CFG 2, reference at 1e-5). Training time:
what each checkpoint recorded, on one CPU thread of the 2-core machine with other jobs beside it
(the 136k digits SideNet on one H100, its README says; the rows with a bank of 4096 at batch 1024 on
one H200, four trainings side by side, gpu_sidenet_attempts.py), with the training it started from
and the solving of its bank; a learned time grid's own learning is not counted in it."""
READING = "\n## Reading"  # a hand-written section of the output file, kept when the tables are rewritten


def write(path: Path, command: str, text: str, remark: str = "") -> None:
    """The tables and notes (``remark``: a paragraph after the command), followed by the ``## Reading`` section the
    file already has, if any."""
    old = path.read_text() if path.is_file() else ""
    reading = old[old.index(READING):] if READING in old else ""
    path.write_text(f"# SideNet training attempts: accuracy per FLOP\n\nProduced by\n\n    {command.strip()}\n\n"
                    + (f"{remark}\n\n" if remark else "") + f"{text}\n\n{NOTES}\n{reading}")


def keep_plan(earlier: dict[str, str], results: str, only: str | None) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``--missing keep``: per backbone, the earlier rows kept for the attempts whose SideNet is not cached; and the
    attempts that are neither cached nor in the earlier file, which a run would have to train."""
    kept, missing = {}, []
    for backbone in SETTINGS:
        if only and backbone != only:
            continue
        rows = earlier_rows(earlier.get(backbone, ""))
        uncached = [a.name for a in ATTEMPTS if a.backbone == backbone and not a.cached(results)]
        kept[backbone] = {name: rows[name] for name in uncached if name in rows}
        missing += [name for name in uncached if name not in rows]
    return kept, missing


def named_plan(earlier: dict[str, str], names: list[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``--names``: per backbone of a named attempt, the earlier rows kept for the attempts neither named nor
    continued by a named one (those are measured); and the kept ones that have no earlier row."""
    chosen = attempts_named(names)
    measured = set()
    for attempt in chosen:
        while attempt is not None:
            measured.add(attempt.name)
            attempt = attempt.continues()
    kept, missing = {}, []
    for backbone in dict.fromkeys(a.backbone for a in chosen):
        rows = earlier_rows(earlier.get(backbone, ""))
        others = [a.name for a in ATTEMPTS if a.backbone == backbone and a.name not in measured]
        kept[backbone] = {name: rows[name] for name in others if name in rows}
        missing += [name for name in others if name not in rows]
    return kept, missing


def unmeasurable(earlier: dict[str, str], results: str, only: str | None) -> list[str]:
    """The attempts ``--missing keep`` could neither measure (their SideNet not cached) nor copy (no row in the
    earlier file): a run would have to train them."""
    return keep_plan(earlier, results, only)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--only", choices=sorted(SETTINGS), default=None)
    parser.add_argument("--missing", choices=("train", "keep"), default="train",
                        help="SideNets not in the cache: train them (default), or keep their rows from --out's file")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="measure these attempts only (and those they continue), keeping every other row from "
                        "--out's file")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if args.missing == "keep" and not args.out:
        parser.error("--missing keep copies rows from the --out file's earlier run: give --out")
    if args.names and (args.only or args.missing == "keep" or not args.out):
        parser.error("--names picks its backbones and keeps every other row from the --out file's earlier run: give "
                     "--out, and neither --only nor --missing keep")
    earlier = earlier_sections(Path(args.out).read_text()) if args.out and Path(args.out).is_file() else {}
    if args.names:
        try:
            kept_by, untrained = named_plan(earlier, args.names)
        except ValueError as exc:
            parser.error(str(exc))
        if untrained:
            parser.error(f"--names: {'; '.join(untrained)}: not named and no row in {args.out} to keep")
        backbones = list(kept_by)
    else:
        kept_by, untrained = keep_plan(earlier, args.results, args.only) if args.missing == "keep" else ({}, [])
        if untrained:
            parser.error(f"--missing keep: {'; '.join(untrained)}: not cached and no row in {args.out}; train them "
                         "first (python -m solverbench train-sidenet with their settings writes the cache entry) or "
                         "run with --names or --missing train")
        backbones = [args.only] if args.only else list(SETTINGS)
    parts = []
    for backbone in SETTINGS:
        if backbone not in backbones:
            if backbone in earlier:
                parts.append(earlier[backbone])  # as it was
            continue
        attempts = [a for a in ATTEMPTS if a.backbone == backbone]
        kept = kept_by.get(backbone, {})
        measured, goal = measure(backbone, [a for a in attempts if a.name not in kept], args.results)
        parts.append(table(backbone, attempts, measured, goal, kept, named=bool(args.names)))
    text = "\n\n".join(parts)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_attempts " + shlex.join(argv or sys.argv[1:])
        kept = [b for b in SETTINGS if b not in backbones and b in earlier]
        remark = (f"The {', '.join(kept)} table is the one this file held before (this run measured "
                  f"{', '.join(backbones)} only).") if kept else ""
        write(Path(args.out), command, text, remark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
