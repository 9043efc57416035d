"""Does a SideNet checkpoint's recipe reproduce it?  Trains its first N iterations again, from the settings the
file records (with the whole run's learning-rate schedule), and compares the per-iteration losses with those it
recorded, bit for bit.

    OMP_NUM_THREADS=1 python benchmarks/reproduce_checkpoint.py CHECKPOINT BACKBONE [--backbone-params YAML]
        [--iterations N] [--device cpu] [--bank-dir DIR]

Exit status 0 where all N losses are identical, 1 where one differs.  Bitwise identity is expected on the machine,
torch build and thread count the file was trained with (one thread for the shipped CPU checkpoints); elsewhere a
difference in the last bits says nothing about the recipe.
"""
from __future__ import annotations

import argparse

import torch
import yaml

from solverbench.backbone import resolve_backbone
from solvers.ba.config import SideNetConfig
from solvers.ba.training import train_sidenet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("backbone", help="the registered backbone it was trained for, e.g. gmm")
    parser.add_argument("--backbone-params", default="{}", help="a YAML mapping, e.g. '{preset: gmm64}'")
    parser.add_argument("--iterations", type=int, default=200, help="how many of its first iterations to redo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bank-dir", default=None, help="where its solve bank's batches were kept (train-sidenet's "
                        "--bank-dir): read back instead of solved again, to the same bits")
    args = parser.parse_args(argv)
    saved = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    recorded = saved["stats"]["loss"]
    if not 1 <= args.iterations <= len(recorded):
        parser.error(f"--iterations must be 1 to the {len(recorded)} the checkpoint recorded, got {args.iterations}")
    backbone = resolve_backbone(args.backbone, **(yaml.safe_load(args.backbone_params) or {}))
    if isinstance(backbone, torch.nn.Module):
        backbone = backbone.to(args.device).eval()
    config = SideNetConfig.from_settings(saved["config"], where=args.checkpoint)
    _, _, stats = train_sidenet(backbone, config, device=args.device, stop_after=args.iterations,
                                bank_dir=args.bank_dir)
    differing = [k for k, (a, b) in enumerate(zip(stats.loss, recorded)) if a != b]
    print(f"{args.checkpoint}: {args.iterations - len(differing)} of the first {args.iterations} iteration losses "
          f"identical to the bit" + (f"; the first differing is iteration {differing[0]} ({stats.loss[differing[0]]!r} "
                                     f"against {recorded[differing[0]]!r})" if differing else ""))
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
