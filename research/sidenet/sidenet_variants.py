"""What each SideNet variant costs beside SiT-XL/2, and the trajectory error it reaches.

    OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_variants [--results results] [--repeats 3]
        [--digits-iterations 300] [--out research/sidenet/findings/sidenet_variants.md]

For each variant of ``variants()`` (the authors' SideNet, the project's default gated head, the
polynomial head of degree 3, 2 and 5, both heads on a slim trunk):

(a) FLOPs of the SideNet's work in one BA interval (Lobatto, m = 2: the forward probe at
    ``a H, (1 - a) H, H`` and the backward refinement at ``-a H``) as a fraction of one
    SiT-XL/2 NFE, counted by ``torch.utils.flop_counter.FlopCounterMode`` at SiT-XL/2's latent
    size (4 x 32 x 32, batch 1, 1000 classes; random weights).  "no CFG" is the conditional
    branch alone (what guidance-off nodes cost now), "CFG" both branches against a CFG-pair NFE
    (batch 2).  The counter counts matrix products and convolutions (2 FLOPs per multiply-add),
    not the element-wise work (norms, activations); attention's CPU kernel is added to its table.
(b) the SideNet's share of a BA interval's CPU time at that size, ``s / (s + b)``, with ``s``
    the SideNet's work above and ``b`` one backbone NFE, each the median of ``--repeats`` runs
    on ONE CPU thread (torch.set_num_threads(1)).
(c) the trajectory error at NFE 5 and 10 (``trajectory_error`` with its 95% bootstrap
    interval, run through the engine: rows land in RESULTS/sidenet_variants_gmm64/ and
    RESULTS/sidenet_variants_digits/) on gmm64 (configs/ba_gmm.yaml's recipe: 1200 iterations,
    SideNet trained in the run and cached) and on digits (configs/digits.yaml's backbone,
    guidance 2, 500 samples), where a full training (2400 iterations, about 3 hours on one CPU
    thread) does not fit: every digits variant is trained for ``--digits-iterations`` at width
    64, the shipped digits.pt's recipe otherwise; the shipped checkpoints (gated, 1200 / 2400
    iterations) are their own rows.  The authors' SideNet exists for images only (no gmm64
    row) and is not trained on digits here.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

import solverbench as sb
from research.sidenet import CHECKPOINTS, ROOT
from solverbench.grid import parse_grid
from solverbench.report.tables.model import format_with_interval
from solvers.ba.config import SideNetConfig
from solvers.ba.quadrature import bi_anchor_rule
from solvers.ba.sidenet import SideNet, sidenet_for

SIT_SHAPE, SIT_CLASSES = (4, 32, 32), 1000
NFES = (5, 10)


class Variant:
    """A SideNet variant: its settings at SiT-XL/2 size, on gmm64 and on digits (None: no row)."""

    def __init__(self, name: str, about: str, sit: dict, gmm: Optional[dict], digits: Optional[dict]):
        self.name, self.about, self.sit, self.gmm, self.digits = name, about, sit, gmm, digits


def variants(digits_iterations: int) -> list[Variant]:
    digits = {"width": 64, "iterations": digits_iterations}  # the shipped digits.pt's width
    return [
        Variant("official", "the authors' SideNet (architecture: official; width 256, depth 4, plain head)",
                {"architecture": "official"}, None, None),
        Variant("gated", "the project's default (width 128, depth 3, gated head)", {}, {}, digits),
        Variant("poly", "polynomial head (output_head: poly, P = 3; trunk of (t, y) only)",
                {"output_head": "poly"}, {"output_head": "poly"}, {**digits, "output_head": "poly"}),
        *(Variant(f"poly P={p}", f"polynomial head of degree {p} (gmm64 only)", {"output_head": "poly", "poly_degree": p},
                  {"output_head": "poly", "poly_degree": p}, None) for p in (2, 5)),
        Variant("gated-slim", "the gated head on a slim trunk (width 64, depth 2; gmm64 only)",
                {"width": 64, "depth": 2}, {"width": 64, "depth": 2}, None),
        Variant("poly-slim", "polynomial head on a slim trunk (width 64, depth 2; gmm64 only)",
                {"output_head": "poly", "width": 64, "depth": 2}, {"output_head": "poly", "width": 64, "depth": 2},
                None),
    ]


# -- cost ------------------------------------------------------------------------------------
def cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """The CPU kernel of scaled_dot_product_attention, which the counter does not know: counted
    as the counter counts the GPU kernels (QK^T and AV)."""
    return sdpa_flop_count(query, key, value)


def flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` by torch.utils.flop_counter (matrix products, convolutions, attention)."""
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return counter.get_total_flops()


def seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    times = []
    with torch.no_grad():
        fn()
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class Samples(NamedTuple):
    """What a SideNet is built for: the backbone's sample shape and labels (the null label after the classes)."""
    sample_shape: tuple
    num_classes: int
    null_label: int


def sidenet_at(settings: dict, shape=SIT_SHAPE, classes: int = SIT_CLASSES) -> SideNet:
    """An image SideNet of ``settings`` for samples of ``shape``, random (non-zero) weights."""
    net = sidenet_for(Samples(tuple(shape), classes, classes), SideNetConfig.from_settings(settings).network)
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return net.eval().requires_grad_(False)


def interval_work(sidenet: SideNet, cfg: bool, shape=SIT_SHAPE, classes: int = SIT_CLASSES, t: float = 0.5,
                  H: float = 0.1) -> Callable[[], Any]:
    """The SideNet's work in one bi-anchor interval (Lobatto, m = 2) for one sample: the forward
    probe from ``t`` and the backward refinement from ``t - H``, both branches where ``cfg``."""
    interior = bi_anchor_rule("lobatto", 2, None).interior
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(1, *shape, generator=g), torch.randn(1, *shape, generator=g)
    y, null = torch.tensor([1]), torch.tensor([classes])
    questions = [(t, [c * H for c in interior] + [H]), (t - H, [-(1 - c) * H for c in interior if c >= 0.5])]

    def work():
        for t0, offsets in questions:
            sidenet.cfg_velocities_at(x, v, v if cfg else None, t0, offsets, [cfg] * len(offsets), y, null)
    return work


def backbone_work(backbone: Any, cfg: bool, shape=SIT_SHAPE, classes: int = SIT_CLASSES) -> Callable[[], Any]:
    """One NFE for one sample (a CFG pair: batch 2)."""
    n = 2 if cfg else 1
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, classes][:n])
    t = torch.full((n,), 0.5)
    return lambda: backbone(x, t, y)


def costs(variant_list: list[Variant], repeats: int) -> tuple[dict, str]:
    """Per variant: parameters, FLOP fractions and CPU time shares, without and with CFG."""
    from backbones.sit.backbone import SiTBackbone
    sit = SiTBackbone(size="XL", random_weights=True)
    out: dict[str, dict] = {}
    nfe_flops = {cfg: flops(backbone_work(sit, cfg)) for cfg in (False, True)}
    nfe_seconds = {cfg: seconds(backbone_work(sit, cfg), repeats) for cfg in (False, True)}
    for variant in variant_list:
        net = sidenet_at(variant.sit)
        row = {"params": net.parameter_count()}
        for cfg in (False, True):
            work = interval_work(net, cfg)
            s = seconds(work, repeats)
            row[cfg] = {"flops": flops(work) / nfe_flops[cfg], "share": s / (s + nfe_seconds[cfg]), "seconds": s}
        out[variant.name] = row
    sit_params = sum(p.numel() for p in sit.parameters())
    note = (f"SiT-XL/2 ({sit_params / 1e6:.0f}M parameters, random weights): one NFE = {nfe_flops[False] / 1e9:.1f} "
            f"GFLOP at batch 1 ({nfe_flops[True] / 1e9:.1f} for a CFG pair), {nfe_seconds[False]:.2f} s "
            f"({nfe_seconds[True]:.2f} s) on one CPU thread, torch {torch.__version__}, median of {repeats}")
    return out, note


# -- error -----------------------------------------------------------------------------------
def ba_entry(settings: Optional[dict] = None, checkpoint: Optional[Path] = None) -> dict:
    return {"name": "ba", "params": {"checkpoint": str(checkpoint)} if checkpoint else dict(settings or {})}


def run_errors(name: str, base: dict, entries: dict[str, dict], results: str) -> dict[str, dict[int, str]]:
    """``trajectory_error ± half its 95% interval`` per entry label and NFE, through the engine."""
    from solverbench.engine import run_grid
    raw = {**base, "name": name, "solvers": list(entries.values()), "nfe": list(NFES), "seeds": [0],
           "metrics": ["trajectory_error"], "save_samples": 0, "device": "cpu", "dtype": "float32"}
    grid = parse_grid(raw, path=ROOT / "configs" / f"{name}.yaml")
    rows = run_grid(grid, results, progress=False).current()
    rows = rows[(rows["grid"] == grid.name) & (rows["status"] == "ok")]
    out: dict[str, dict[int, str]] = {}
    for label, entry in entries.items():
        mine = rows[rows["solver_label"] == sb.get_solver("ba", **entry["params"]).label()]
        out[label] = {}
        for nfe in NFES:
            cell = mine[mine["nfe"] == nfe]
            if len(cell) != 1:
                out[label][nfe] = "?"
                continue
            r = cell.iloc[0]
            out[label][nfe] = format_with_interval(r["trajectory_error"], r["trajectory_error_ci_low"],
                                                   r["trajectory_error_ci_high"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--digits-iterations", type=int, default=300)
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    parser.add_argument("--skip-errors", action="store_true", help="costs only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    variant_list = variants(args.digits_iterations)
    cost, note = costs(variant_list, args.repeats)

    errors: dict[str, dict[str, dict[int, str]]] = {"gmm64": {}, "digits": {}}
    if not args.skip_errors:
        gmm_base = {"backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}], "schedule": "uniform",
                    "guidance": {"scale": 1.0}, "num_samples": 1024, "batch_size": 1024,
                    "reference": {"rtol": 1e-9, "atol": 1e-9}}
        digits_base = {"backbones": ["digits"], "schedule": "uniform", "guidance": {"scale": 2.0},
                       "num_samples": 500, "batch_size": 500, "reference": {"rtol": 1e-5, "atol": 1e-5}}
        gmm = {v.name: ba_entry(v.gmm) for v in variant_list if v.gmm is not None}
        gmm["gated, shipped gmm64.pt"] = ba_entry(checkpoint=CHECKPOINTS / "gmm64.pt")
        digits = {v.name: ba_entry(v.digits) for v in variant_list if v.digits is not None}
        digits["gated, shipped digits.pt"] = ba_entry(checkpoint=CHECKPOINTS / "digits.pt")
        errors["gmm64"] = run_errors("sidenet_variants_gmm64", gmm_base, gmm, args.results)
        errors["digits"] = run_errors("sidenet_variants_digits", digits_base, digits, args.results)

    labels = [v.name for v in variant_list] + ["gated, shipped gmm64.pt", "gated, shipped digits.pt"]
    lines = ["| variant | SideNet params at SiT-XL/2 | FLOPs / interval ÷ NFE, no CFG | with CFG "
             "| CPU time share, no CFG | with CFG | gmm64 NFE 5 | gmm64 NFE 10 | digits NFE 5 | digits NFE 10 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label in labels:
        c = cost.get(label)
        cells = ([f"{c['params']:,}", f"{100 * c[False]['flops']:.2f}%", f"{100 * c[True]['flops']:.2f}%",
                  f"{100 * c[False]['share']:.1f}%", f"{100 * c[True]['share']:.1f}%"] if c else ["(as gated)"] * 5)
        cells += [errors[b].get(label, {}).get(n, "–") for b in ("gmm64", "digits") for n in NFES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    about = "\n".join(f"- {v.name}: {v.about}" for v in variant_list)
    report = (f"{text}\n\n{about}\n\n{note}.\nSideNet work per interval: forward probe (3 offsets) + backward "
              f"refinement (1 offset); the polynomial head runs its trunk once per anchor (2 passes per interval).\n"
              f"digits SideNets of this run: {args.digits_iterations} iterations (shipped digits.pt: 2400).")
    print(report)
    if args.out:
        command = "OMP_NUM_THREADS=1 python -m research.sidenet.sidenet_variants " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text(f"# SideNet variants: cost beside SiT-XL/2 and trajectory error\n\n"
                                  f"Produced by\n\n    {command.strip()}\n\n{report}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
