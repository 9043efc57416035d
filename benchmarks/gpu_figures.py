"""The GPU figures in one run: images/s, the SideNet's share and peak memory.

    python benchmarks/gpu_figures.py                                  # SiT-XL/2 on the GPU (see below)
    python benchmarks/gpu_figures.py --size tiny --resolution 32 --batch-sizes 4 --repeats 1   # CPU smoke run

SiT-XL/2 with random weights at 256 px, NFE 10, CFG 4 on the paper's interval (0, 0.7]
(t = 1 is noise), batch 64 and 256, in two modes: ``fp32``: float32 eager (the grid's
``dtype: float32``), and ``bf16-compiled``: ``dtype: bfloat16`` + ``compile: true`` +
``tf32: true`` (solverbench.precision, as a grid runs them).  For every mode and batch
size it times euler, flow-dpm, flow-unipc, and ba and ba-single once per SideNet variant
(``--variants``; untrained SideNets: what they cost, not what they are worth), each after
one untimed warm-up run (which compiles), as the median of ``--repeats`` runs, and gives
images/s, the SideNet's share of the wall time (its own timer, ``sidenet_time``) and the
peak GPU memory of the timed runs.

It writes ``OUT/gpu_figures_<device>.csv`` after every row (a run cut short keeps what it
measured) and ``OUT/gpu_figures_<device>.md``: the table, then two targets
checked: euler at least 90 images/s at NFE 10 with CFG in bf16-compiled, and BA's wall
time at most 1.05 x euler's at equal NFE (each mode, batch and variant).
"""
from __future__ import annotations

import argparse
import re
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import solverbench as sb
from backbones.sit.backbone import SiTBackbone
from solverbench.guidance import Guidance
from solverbench.precision import Precision

THROUGHPUT = runpy.run_path(str(Path(__file__).with_name("sit_throughput.py")))  # the script beside this one
UNTRAINED_SIDENET, uses_sidenet = THROUGHPUT["UNTRAINED_SIDENET"], THROUGHPUT["uses_sidenet"]

MODES = {"fp32": Precision("float32"), "bf16-compiled": Precision("bfloat16", tf32=True, compile=True)}
SOLVERS = ("euler", {"name": "flow-dpm", "order": 2}, {"name": "flow-unipc", "variant": "bh2", "order": 2},
           "ba", "ba-single")
# SideNet variants (SideNet settings, as a grid's solver_settings: {ba: ...} gives them)
# (python -m research.sidenet.sidenet_variants compares what they cost on a CPU and what they are worth)
VARIANTS = {"official": {"architecture": "official"}, "project": {}, "poly": {"output_head": "poly"},
            "poly-slim": {"output_head": "poly", "width": 64, "depth": 2}}
EULER_TARGET = 90.0  # images/s at NFE 10 with CFG, bf16 + compile
BA_TARGET = 1.05  # BA's wall time / euler's at equal NFE


def solver_runs(variants: list[str]) -> list[tuple[dict, str | None]]:
    """(solver spec, SideNet variant or None) for every solver, SideNet solvers once per variant."""
    runs = []
    for spec in SOLVERS:
        spec = {"name": spec} if isinstance(spec, str) else spec
        runs += [(spec, v) for v in variants] if uses_sidenet(sb.SOLVERS.get(spec["name"])) else [(spec, None)]
    return runs


def build(spec: dict, variant: str | None, backbone, precision: Precision, device: torch.device, cache: str):
    params = {k: v for k, v in spec.items() if k != "name"}
    solver = sb.get_solver(spec["name"], **params)
    if variant is not None:
        solver.prepare(backbone, sb.PrepareContext(cache_dir=cache, settings=UNTRAINED_SIDENET | VARIANTS[variant],
                                                   device=str(device), progress=False))
    solver.use_precision(precision)
    return solver


def timed_runs(backbone, solver, noise, labels, nfe: int, guidance: Guidance, repeats: int) -> dict:
    device = noise.device
    sb.sample(backbone, solver, noise, labels, nfe=nfe, guidance=guidance)  # warm-up (compiles)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    runs = [sb.sample(backbone, solver, noise, labels, nfe=nfe, guidance=guidance) for _ in range(repeats)]
    seconds = statistics.median(r.wall_time for r in runs)
    sidenet = statistics.median(r.counters.get("sidenet_time", 0.0) for r in runs)
    return {"nfe": runs[0].nfe, "seconds": seconds, "images_per_second": len(noise) / seconds,
            "sidenet_seconds": sidenet, "sidenet_share": sidenet / seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def targets(table: pd.DataFrame) -> list[str]:
    """The two targets, checked on the table, one line each."""
    lines = []
    euler = table[(table["solver"] == "euler") & (table["mode"] == "bf16-compiled")]
    for _, row in euler.iterrows():
        verdict = "met" if row["images_per_second"] >= EULER_TARGET else "NOT met"
        lines.append(f"- euler, bf16-compiled, batch {row['batch_size']}: {row['images_per_second']:.1f} images/s "
                     f"(target >= {EULER_TARGET:g}: {verdict})")
    for (mode, batch), group in table.groupby(["mode", "batch_size"], sort=False):
        base = group[group["solver"] == "euler"]["seconds"]
        if base.empty:
            continue
        for _, row in group[group["solver"].str.startswith("ba")].iterrows():
            ratio = row["seconds"] / base.iloc[0]
            verdict = "met" if ratio <= BA_TARGET else "NOT met"
            lines.append(f"- {row['solver']} [{row['variant']}], {mode}, batch {batch}: {ratio:.3f} x euler's wall "
                         f"time (target <= {BA_TARGET:g}: {verdict}; SideNet share {100 * row['sidenet_share']:.1f}%)")
    return lines


def markdown(table: pd.DataFrame, header: str, command: str) -> str:
    shown = table.assign(
        variant=table["variant"].fillna(""), seconds=table["seconds"].map("{:.3f}".format),
        images_per_second=table["images_per_second"].map("{:.1f}".format),
        sidenet_share=table["sidenet_share"].map(lambda s: f"{100 * s:.1f}%"),
        peak_memory_gib=table["peak_memory_gib"].map(lambda m: "" if pd.isna(m) else f"{m:.1f}"))
    columns = ["mode", "batch_size", "solver", "variant", "nfe", "seconds", "images_per_second", "sidenet_share",
               "peak_memory_gib"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for _, r in shown.iterrows()]
    return "\n".join([f"# {header}", "", f"    {command}", "", *rows, "", "Targets:", "", *targets(table), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="XL", help="S, B, L, XL or tiny (default: XL)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--cfg-interval", type=float, nargs=2, default=[0.0, 0.7])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the median is reported")
    parser.add_argument("--out", default="docs/benchmarks", help="folder of the .csv and .md (default: docs/benchmarks)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = SiTBackbone(size=args.size, resolution=args.resolution, random_weights=True).to(device).eval()
    guidance = Guidance(args.cfg_scale, tuple(args.cfg_interval))
    header = (f"SiT-{args.size}/2 (random weights), {args.resolution} px, NFE {args.nfe}, CFG {args.cfg_scale:g} on "
              f"{tuple(args.cfg_interval)}, {name}, torch {torch.__version__}, median of {args.repeats} runs")
    command = "python benchmarks/gpu_figures.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(header, flush=True)
    rows: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        for mode in args.modes:
            precision = MODES[mode]
            sampler = precision.backbone(backbone)  # compiled once per mode; shapes compile on first use
            for batch in args.batch_sizes:
                g = torch.Generator().manual_seed(0)
                noise = torch.randn(batch, *backbone.sample_shape, generator=g).to(device)
                labels = torch.randint(backbone.num_classes, (batch,), generator=g).to(device)
                for spec, variant in solver_runs(args.variants):
                    solver = build(spec, variant, backbone, precision, device, cache)
                    with precision.matmuls():
                        row = timed_runs(sampler, solver, noise, labels, args.nfe, guidance, args.repeats)
                    rows.append({"mode": mode, "batch_size": batch, "solver": solver.label(), "variant": variant,
                                 **row, "device_name": name})
                    print(f"{mode:>14} batch {batch:>4} {solver.label():<32} {variant or '':<9} "
                          f"{row['images_per_second']:>8.1f} images/s  SideNet {100 * row['sidenet_share']:5.1f}%  "
                          f"[{time.perf_counter() - start:.0f} s]", flush=True)
                    pd.DataFrame(rows).to_csv(out / f"gpu_figures_{slug}.csv", index=False)
    table = pd.DataFrame(rows)
    (out / f"gpu_figures_{slug}.md").write_text(markdown(table, header, command))
    print("\n".join(targets(table)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
