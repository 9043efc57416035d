"""Projected GPU time of configs/imagenet256_paper.yaml, from a measured SiT-XL/2 throughput file.

    python benchmarks/paper_time_projection.py
    python benchmarks/paper_time_projection.py --throughput docs/benchmarks/sit_xl_h100_fp32_cfg1.txt --gpus 8

A projection, not a measurement.  It takes euler's median time per NFE for a batch of the
throughput file (float32, no guidance; every training-free solver costs the same per NFE
there) and counts, for each cell of the paper grid, the rows the backbone would see: each
solver samples a tiny stand-in backbone with the cell's guidance (scale and interval of its
NFE) and NFE budget, and a guided evaluation counts its two branches.  It assumes a row
costs the same guided or not (the GPU is saturated at batch 64); BA is counted with its
SideNet off (the same backbone evaluations; the SideNet's own time is not included).  VAE
decoding and Inception features are not included.  On ``--gpus`` GPUs under torchrun every
cell's batches are dealt round-robin to the ranks, so a cell takes as long as its busiest
rank's ``ceil(batches / gpus)`` batches.
"""
from __future__ import annotations

import argparse
import re
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=Path, default=GRID)
    parser.add_argument("--throughput", type=Path, default=THROUGHPUT)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()

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
    batches = -(-raw["num_samples"] // batch)
    split = sum(cells) * -(-batches // args.gpus) / batches  # each cell: its busiest rank's batches
    print(f"total {sum(cells) / 60:.1f} GPU-hours; on {args.gpus} GPUs under torchrun {split / 60:.1f} h (each cell's "
          f"{batches} batches dealt to the {args.gpus} ranks)")


if __name__ == "__main__":
    main()
