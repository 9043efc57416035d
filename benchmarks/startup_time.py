"""How long the command line takes to start, and what it imports.

    python benchmarks/startup_time.py [--runs 10] [--out docs/benchmarks/startup_time.txt]

Each command runs ``--runs`` times, each time in a fresh process (``python -m solverbench ...``,
output thrown away), timed from start to exit; the table gives the median and the spread in
wall seconds, and, from one more run under ``python -X importtime``, whether the command
imported torch and which optional heavy packages it imported.  For scale, the same is done for
``python -c "import torch"``, and the median of torch's own import time (``-X importtime``,
cumulative) is given.  Run it on an idle machine: the figures are whole-process times.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [["--help"], ["run", "--help"], ["list", "--help"], ["train-sidenet", "--help"], ["list"]]
HEAVY = ("torch", "diffusers", "torch_fidelity", "cleanfid", "transformers", "sklearn", "scipy", "pandas",
         "matplotlib")
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)")  # cumulative microseconds, module


def wall_seconds(argv: list[str], runs: int) -> list[float]:
    """Start-to-exit wall seconds of ``runs`` fresh processes of ``argv``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def imports(argv: list[str]) -> dict[str, float]:
    """Every module ``argv`` imports -> its cumulative import seconds, from one run under ``-X importtime``."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    return {match.group(2): int(match.group(1)) / 1e6 for match in map(IMPORT_LINE.match, done.stderr.splitlines())
            if match}


def table(runs: int) -> list[str]:
    python = sys.executable
    cases = [("python -c 'import torch'", [python, "-c", "import torch"])]
    cases += [("python -m solverbench " + " ".join(args), [python, "-m", "solverbench", *args]) for args in COMMANDS]
    torch_import = statistics.median(imports([python, "-c", "import torch"])["torch"] for _ in range(runs))
    width = max(len(name) for name, _ in cases)
    lines = [f"torch's own import time (-X importtime, cumulative): {torch_import:.2f} s (median of {runs})", "",
             f"{'command':<{width}}  median    min    max  heavy packages imported"]
    for name, argv in cases:
        times = wall_seconds(argv, runs)
        packages = {module.split(".")[0] for module in imports(argv)}
        heavy = [package for package in HEAVY if package in packages]
        lines.append(f"{name:<{width}}  {statistics.median(times):5.2f}  {min(times):5.2f}  {max(times):5.2f}  "
                     f"{', '.join(heavy) or 'none'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per command (default 10)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "startup_time.txt"),
                        help="where to write the table (default: docs/benchmarks/startup_time.txt)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    header = [f"# python benchmarks/startup_time.py --runs {args.runs}",
              f"# wall seconds from start to exit, each run a fresh process, {args.runs} runs per command; "
              f"{os.cpu_count()} CPUs, load average {load:.2f} at the start; Python {sys.version.split()[0]}", ""]
    text = "\n".join(header + table(args.runs)) + "\n"
    Path(args.out).write_text(text)
    print(text, end="")
    print(f"written to {shlex.quote(args.out)}")


if __name__ == "__main__":
    main()
