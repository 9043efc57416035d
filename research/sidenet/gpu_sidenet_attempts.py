"""Train attempts of attempts.yaml side by side on one GPU, inside a wall-time budget.

    NVIDIA_TF32_OVERRIDE=0 python -m research.sidenet.gpu_sidenet_attempts --names NAME [NAME ...] --budget SECONDS
        --out DIR [--device cuda] [--bank-dir DIR]

A lent GPU is held for minutes, not hours, so the iterations are sized to the time there is:

1. **banks**: each solve bank the attempts draw from (attempts that differ only in the SideNet or the optimiser
   share one, bank_store.py) is solved by a one-iteration ``train-sidenet`` run into ``--bank-dir``, all of them
   side by side;
2. **sizing**: each attempt's iteration is timed alone on its bank, as the difference of two short trainings
   (``train_sidenet(..., stop_after=k)``, the real loop); ``SHARE`` of the time left, less a margin, is split evenly
   between the attempts, as if their iterations took turns on the GPU, and each gets the iterations that fit (a multiple
   of 100, at most the attempt's own ``iterations``);
3. **trainings**: ``python -m solverbench train-sidenet`` with the attempt's settings and those iterations, side by
   side, each writing the cache entry ``sidenet_attempts.py`` reads (``DIR/<hash>.pt``: copy it under
   ``RESULTS/.cache/sidenet/``, then set the attempt's ``iterations`` in attempts.yaml to the count used).

``DIR/commands.txt`` gets the exact commands (each reproduces its checkpoint on the same kind of device and torch
build, not to the bit on another) and ``DIR/log.txt`` every run's output.  ``NVIDIA_TF32_OVERRIDE=0`` keeps the
banks' velocities in full float32 (cuDNN's convolutions otherwise round through TF32).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
import torch

from research.sidenet import ROOT
from research.sidenet.attempts import ATTEMPTS, SETTINGS, Attempt, attempts_named, settings_backbone
from solvers.ba.bank_store import bank_key
from solvers.ba.cache import cache_path
from solvers.ba.config import SideNetConfig
from solvers.ba.training import train_sidenet

MARGIN_S = 45.0  # kept back from the budget: process starts, the bank's load, writing the checkpoints
SHARE = 0.65  # of the time left that the sized iterations are planned to fill: on an H200, four digits trainings
# side by side took 1.34 times what their iterations timed alone add up to (370 s for 277 s)
PILOT = (10, 60)  # the two short trainings whose difference times an iteration


def pick(names: list[str]) -> list[Attempt]:
    """The named attempts (exactly as attempts.yaml names them), refused unless each trains on solve banks."""
    chosen = attempts_named(names, ATTEMPTS)
    for a in chosen:
        if a.checkpoint or not SideNetConfig.from_settings(a.params()).uses_solve_bank:
            raise ValueError(f"attempt {a.name!r} trains no SideNet from a solve bank: this script sizes those only")
    return chosen


def options(settings: dict) -> list[str]:
    """``train-sidenet``'s options for SideNet ``settings``."""
    return [arg for key, value in settings.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


def command(attempt: Attempt, iterations: int, device: str, bank_dir: str, out: str) -> list[str]:
    """The ``train-sidenet`` command of ``attempt`` at ``iterations``, on the backbone its table runs on."""
    spec = SETTINGS[attempt.backbone]["backbones"][0]
    name, params = (spec, {}) if isinstance(spec, str) else (spec["name"], spec["params"])
    extra = ["--backbone-params", json.dumps(params)] if params else []
    return [sys.executable, "-m", "solverbench", "train-sidenet", name, *extra,
            *options({**attempt.params(), "iterations": iterations}), "--device", device, "--bank-dir", bank_dir,
            "--no-progress", "--out", out]


def bank_groups(attempts: list[Attempt], backbone, device: str) -> dict[str, list[Attempt]]:
    """The attempts by the solve bank they draw from (its key, bank_store.py)."""
    groups: dict[str, list[Attempt]] = {}
    for a in attempts:
        config = SideNetConfig.from_settings(a.params())
        key = repr(bank_key(backbone, config, torch.Generator().manual_seed(config.seed), device))
        groups.setdefault(key, []).append(a)
    return groups


def sized_iterations(seconds_per_iteration: list[float], caps: list[int], seconds_left: float) -> list[int]:
    """Per attempt, the iterations (a multiple of 100, at least 100, at most its cap) that fill ``SHARE`` of
    ``seconds_left`` split evenly between the attempts, as if their iterations took turns."""
    share = SHARE * seconds_left / len(caps)
    return [max(100, min(cap, int(share / per / 100) * 100)) for per, cap in zip(seconds_per_iteration, caps)]


def run_side_by_side(commands: list[list[str]], log: Path, deadline: float) -> list[int]:
    """Run ``commands`` at once, their output appended to ``log``; any still running at ``deadline`` is stopped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    running = []
    for cmd in commands:
        handle = open(log.with_suffix(f".{len(running)}.part"), "w")
        running.append((subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT), handle))
    codes = []
    for process, handle in running:
        try:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
        handle.close()
    with open(log, "a") as out:
        for k, cmd in enumerate(commands):
            part = log.with_suffix(f".{k}.part")
            out.write(f"$ {shlex.join(cmd)}\n[exit {codes[k]}]\n{part.read_text()}\n")
            part.unlink()
    return codes


def seconds_per_iteration(attempt: Attempt, backbone, device: str, bank_dir: str) -> float:
    """One iteration of ``attempt``'s training on its bank, alone: the difference of two short runs of the real
    loop over the difference of their lengths."""
    config = SideNetConfig.from_settings(attempt.params())
    spent = []
    for k in PILOT:  # each iteration waits for its loss (``.item()``), so the seconds are the device's too
        _, _, stats = train_sidenet(backbone, config, device=device, progress=False, bank_dir=bank_dir, stop_after=k)
        spent.append(stats.seconds)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return max(spent[1] - spent[0], 1e-3) / (PILOT[1] - PILOT[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", required=True, help="attempts of attempts.yaml, by name")
    parser.add_argument("--budget", type=float, required=True, help="wall seconds for the whole run (> 0)")
    parser.add_argument("--out", required=True, help="folder for the checkpoints, commands.txt and log.txt")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--bank-dir", default=None, help="where the banks' batches go (default: OUT/../banks; "
                        "keep it outside OUT, a bank is gigabytes)")
    args = parser.parse_args(argv)
    clock, start = time.monotonic, time.monotonic()
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget:g}")
    try:
        attempts = pick(args.names)
    except ValueError as err:
        parser.error(str(err))
    backbones = {a.backbone for a in attempts}
    if len(backbones) > 1:
        parser.error(f"the attempts must share one backbone, got {sorted(backbones)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device} but torch sees no CUDA device")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bank_dir = args.bank_dir or str(out.resolve().parent / "banks")
    Path(bank_dir).mkdir(parents=True, exist_ok=True)
    log, deadline = out / "log.txt", start + args.budget
    backbone = settings_backbone(attempts[0].backbone)
    if isinstance(backbone, torch.nn.Module):
        backbone = backbone.to(args.device).eval()

    groups = list(bank_groups(attempts, backbone, args.device).values())
    print(f"[{clock() - start:.0f} s] solving {len(groups)} bank(s)", flush=True)
    scratch = [str(Path(bank_dir) / f"probe_{k}.pt") for k in range(len(groups))]  # one iteration's SideNets
    codes = run_side_by_side([command(g[0], 1, args.device, bank_dir, s) for g, s in zip(groups, scratch)],
                             log, deadline - MARGIN_S)
    if any(codes):
        print(f"a bank's solve failed (exit codes {codes}); see {log}", file=sys.stderr)
        return 1

    print(f"[{clock() - start:.0f} s] timing an iteration of each attempt", flush=True)
    per = [seconds_per_iteration(a, backbone, args.device, bank_dir) for a in attempts]
    caps = [SideNetConfig.from_settings(a.params()).iterations for a in attempts]
    iterations = sized_iterations(per, caps, deadline - MARGIN_S - clock())
    paths = [out / cache_path(Path("."), backbone, SideNetConfig.from_settings({**a.params(), "iterations": n})).name
             for a, n in zip(attempts, iterations)]
    commands = [command(a, n, args.device, bank_dir, str(p)) for a, n, p in zip(attempts, iterations, paths)]
    with open(out / "commands.txt", "w") as listing:
        for a, p_s, n, cmd in zip(attempts, per, iterations, commands):
            listing.write(f"# {a.name}: {p_s * 1000:.1f} ms an iteration alone, {n} iterations\n"
                          f"NVIDIA_TF32_OVERRIDE=0 python {shlex.join(cmd[1:])}\n")
    print((out / "commands.txt").read_text(), flush=True)

    print(f"[{clock() - start:.0f} s] training {len(commands)} SideNets side by side", flush=True)
    codes = run_side_by_side(commands, log, deadline - 10)
    for a, code, p in zip(attempts, codes, paths):
        print(f"{a.name}: exit {code}" + (f", {p}" if code == 0 else f" (see {log})"), flush=True)
    print(f"[{clock() - start:.0f} s] done", flush=True)
    return 0 if not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
