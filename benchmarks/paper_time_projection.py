"""Projected GPU time of configs/imagenet256_paper.yaml, from a measured SiT-XL/2 throughput file.

    python benchmarks/paper_time_projection.py
    python benchmarks/paper_time_projection.py --throughput docs/benchmarks/sit_xl_h100_fp32_cfg1.txt --gpus 8
    python benchmarks/paper_time_projection.py --workers 8 16 32

A projection, not a measurement.  It takes euler's median time per NFE for a batch of the
throughput file (float32, no guidance; every training-free solver costs the same per NFE
there) and counts, for each cell of the paper grid, the rows the backbone would see: each
solver samples a tiny stand-in backbone with the cell's guidance (scale and interval of its
NFE) and NFE budget, and a guided evaluation counts its two branches.  It assumes a row
costs the same guided or not (the GPU is saturated at batch 64); BA is counted with its
SideNet off (the same backbone evaluations; the SideNet's own time is not included).  VAE
decoding and Inception features are not included.  On ``--gpus`` GPUs under torchrun every
cell's batches are dealt round-robin to the ranks, so a cell takes as long as its busiest
rank's ``ceil(batches / gpus)`` batches of the grid's ``batch_size``.

With ``--workers W`` it also projects the grid's wall time on W workers, each taking whole
cells by claim as ``run --workers`` and Slurm workers do (``--gpus-per-worker G``: each cell
split over the worker's G GPUs, as torchrun splits it).  A worker that comes free takes the next
cell not taken, in the grid's order (list scheduling); beside it, the perfect division
``total / W``, the lower bound ``max(total / W, longest cell)`` and the packing with the longest
cells first (LPT), which is what ordering the cells could buy.  Start-up, the model's load per
worker and the time a worker waits for a claim are not counted.
"""
from __future__ import annotations

import argparse
import heapq
import re
import statistics
import sys
from pathlib import Path

import torch
import yaml

import solverbench as sb
from solverbench.guidance import Guidance

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "configs" / "imagenet256_paper.yaml"
THROUGHPUT = ROOT / "docs" / "benchmarks" / "sit_xl_h100_fp32_cfg1.txt"


class RowCounter(torch.nn.Module):
    """A zero-velocity class-conditional stand-in that counts the rows it is evaluated on."""

    sample_shape, num_classes, null_label = (1,), 1000, 1000

    def __init__(self):
        super().__init__()
        self.rows = 0

    def forward(self, x, t, y=None):
        self.rows += len(x)
        return torch.zeros_like(x)


def measured_ms_per_nfe(path: Path) -> tuple[float, int]:
    """euler's median milliseconds per NFE for one batch, and the batch size, from a sit_throughput output."""
    text = path.read_text()
    batch = int(re.search(r"batch (\d+)", text).group(1))
    times = [float(line.split()[3]) for line in text.splitlines() if line.startswith("euler ")]
    if not times:
        raise SystemExit(f"{path}: no euler rows")
    return statistics.median(times), batch


def solver_of(entry) -> sb.Solver:
    """The grid entry's solver; BA with its SideNet off (the same backbone evaluations, no file needed)."""
    name, params = (entry, {}) if isinstance(entry, str) else (entry["name"], dict(entry.get("params", {})))
    if name == "ba":
        params = {k: v for k, v in params.items() if k in ("rule", "nodes", "a")} | {"sidenet": "off"}
    return sb.get_solver(name, **params)


def rows_per_sample(solver: sb.Solver, nfe: int, guidance: Guidance) -> float:
    backbone, n = RowCounter(), 4
    sb.sample(backbone, solver, torch.zeros(n, 1), torch.arange(n), nfe=nfe, guidance=guidance)
    return backbone.rows / n


def list_schedule(durations: list[float], workers: int) -> float:
    """The makespan of ``durations`` taken in order, each by the worker that comes free first (the
    lowest-numbered one among those free at once), as workers taking cells by claim take them."""
    free = [(0.0, w) for w in range(workers)]
    for duration in durations:
        start, w = heapq.heappop(free)
        heapq.heappush(free, (start + duration, w))
    return max(end for end, _ in free)


def longest_first(durations: list[float], workers: int) -> float:
    """The makespan of list scheduling with the longest cells first (LPT)."""
    return list_schedule(sorted(durations, reverse=True), workers)


def lower_bound(durations: list[float], workers: int) -> float:
    """No packing on ``workers`` ends before ``max(total / workers, longest cell)``."""
    return max(sum(durations) / workers, max(durations))


def split_over(minutes: float, batches: int, gpus: int) -> float:
    """A cell's time with its ``batches`` dealt round-robin to ``gpus`` ranks: its busiest rank's share."""
    return minutes * -(-batches // gpus) / batches


def worker_table(cells: list[float], counts: list[int], gpus_per_worker: int, batches: int) -> list[str]:
    """The projected wall time (hours) of the cells on each count of workers, by each packing."""
    durations = [split_over(c, batches, gpus_per_worker) for c in cells]
    lines = [f"{'workers':>7} {'GPUs':>5} {'total/W':>8} {'bound':>8} {'grid order':>10} {'longest first':>13}",
             f"{'':>7} {'':>5} {'(h)':>8} {'(h)':>8} {'(h)':>10} {'(h)':>13}"]
    for w in counts:
        perfect = sum(durations) / w
        lines.append(f"{w:>7} {w * gpus_per_worker:>5} {perfect / 60:>8.2f} {lower_bound(durations, w) / 60:>8.2f} "
                     f"{list_schedule(durations, w) / 60:>10.2f} {longest_first(durations, w) / 60:>13.2f}")
    idle = [w for w in counts if w > len(cells)]
    if idle:
        lines += [f"with {w} workers {w - len(cells)} would have no cell: the grid has {len(cells)} (run --workers "
                  "refuses more workers than cells)" for w in idle]
    return lines


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=Path, default=GRID)
    parser.add_argument("--throughput", type=Path, default=THROUGHPUT)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of one torchrun launch that splits every cell")
    parser.add_argument("--workers", type=int, nargs="+", default=[], metavar="W",
                        help="worker counts to project the wall time for, cells taken whole by claim")
    parser.add_argument("--gpus-per-worker", type=int, default=1, metavar="G",
                        help="GPUs of each worker, every cell split over them by batch (default 1)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("gpus", "gpus_per_worker"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give at least 1")
    if any(w < 1 for w in args.workers):
        parser.error(f"--workers {' '.join(map(str, args.workers))}: give counts of at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    raw = yaml.safe_load(args.grid.read_text())
    ms, batch = measured_ms_per_nfe(args.throughput)
    scales, interval = raw["guidance"]["scale"], tuple(raw["guidance"]["interval"])
    print(f"{args.throughput.name}: euler {ms:.1f} ms per NFE per batch of {batch} (no guidance)")
    solvers = [solver_of(entry) for entry in raw["solvers"]]
    width = max(len(s.label()) for s in solvers) + 8
    print(f"{'cell':<{width}} {'rows/sample':>11} {'GPU minutes':>11}")
    cells = []
    for solver in solvers:
        for nfe in raw["nfe"]:
            rows = rows_per_sample(solver, nfe, Guidance(scales[nfe], interval))
            minutes = raw["num_samples"] / batch * rows * ms / 1000 / 60
            cells.append(minutes)
            print(f"{f'{solver.label()} NFE {nfe}':<{width}} {rows:>11.0f} {minutes:>11.0f}")
    batches = -(-raw["num_samples"] // raw["batch_size"])  # torchrun deals the grid's batches
    split = sum(split_over(c, batches, args.gpus) for c in cells)
    print(f"total {sum(cells) / 60:.1f} GPU-hours; on {args.gpus} GPUs under torchrun {split / 60:.1f} h (each cell's "
          f"{batches} batches of {raw['batch_size']} dealt to the {args.gpus} ranks)")
    if args.workers:
        each = "1 GPU each" if args.gpus_per_worker == 1 else \
            f"{args.gpus_per_worker} GPUs each, every cell split over them by batch"
        print(f"\nwall time on W workers taking whole cells by claim ({each}):")
        print("\n".join(worker_table(cells, args.workers, args.gpus_per_worker, batches)))


if __name__ == "__main__":
    main()
