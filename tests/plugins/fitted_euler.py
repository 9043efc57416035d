"""A solver in one file, as a user writes one: it needs preparation, counts something of its own,
reads its family's grid settings and adds a CLI command; no line of solverbench/ knows it.

``fitted-euler`` is Euler's method with its step scaled by one scalar fitted per backbone
(the median over a few probes of |v(x, 1)| / |x| at t = 1, kept in the cache folder).  Its
family ``fitted`` reads ``solver_settings: {fitted: {probes: N}}``; it counts the Euler steps
it takes (``fitted_steps``); ``python -m solverbench --plugin THIS fit-scale gmm`` prints the
scalar of a backbone.
"""
from __future__ import annotations

import argparse
import json

import torch

from solverbench import PrepareContext, Solver, register_solver, resolve_backbone
from solverbench.backbone import backbone_identity
from solverbench.cli import command
from solverbench.hashing import spec_hash

DEFAULT_PROBES = 8


def fit_scale(backbone, probes: int) -> float:
    """The median of |v(x, 1)| / |x| over ``probes`` noise samples (seeded, so reproducible)."""
    x = torch.randn(probes, *backbone.sample_shape, generator=torch.Generator().manual_seed(0))
    labels = None if backbone.num_classes is None else torch.zeros(probes, dtype=torch.long)
    with torch.no_grad():
        v = backbone(x, torch.ones(probes), labels)
    return float((v.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).median())


@register_solver("fitted-euler")
class FittedEuler(Solver):
    """Euler with its step scaled by a scalar fitted once per backbone (a test of the plugin contract)."""

    order = 1
    family = "fitted"

    def __init__(self, damping: float = 0.0):
        self.damping = float(damping)  # the scalar's share in the step: 0 is plain Euler
        self.scale = None
        self.steps = 0

    def params(self):
        return {"damping": self.damping} if self.damping else {}

    def check_settings(self, settings):
        unknown = set(settings) - {"probes"}
        if unknown:
            raise ValueError(f"unknown fitted setting(s) {sorted(unknown)}; known: probes")
        probes = settings.get("probes", DEFAULT_PROBES)
        if not isinstance(probes, int) or probes < 1:
            raise ValueError(f"probes must be a positive integer, got {probes!r}")

    def prepare(self, backbone, context: PrepareContext = PrepareContext()) -> None:
        probes = context.settings.get("probes", DEFAULT_PROBES)
        path = None
        if context.cache_dir is not None:
            path = context.cache_dir / "fitted" / f"{spec_hash([backbone_identity(backbone), probes])}.json"
            if path.is_file():
                self.scale = json.loads(path.read_text())["scale"]
                return
        self.scale = fit_scale(backbone, probes)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"scale": self.scale, "probes": probes}))

    def solve(self, field, x, plan):
        if self.scale is None:
            raise RuntimeError("fitted-euler is not prepared: call prepare(backbone, PrepareContext(...)) first")
        factor = 1.0 + self.damping * (self.scale - 1.0)
        for t, t_next, _ in plan.steps():
            x = x + factor * (t_next - t) * field(x, t)
            self.steps += 1
        return x

    def counters(self):
        return {"fitted_steps": self.steps}

    def row_fields(self):
        return {"fitted_scale": self.scale}


@command("fit-scale", "print the fitted-euler scale of a backbone (a plugin's command)")
def fit_scale_command(parser: argparse.ArgumentParser):
    parser.add_argument("backbone", help="a registered backbone name, e.g. gmm")
    parser.add_argument("--probes", type=int, default=DEFAULT_PROBES, help="noise samples probed")

    def run(args: argparse.Namespace) -> int:
        print(f"fitted-euler scale of {args.backbone}: {fit_scale(resolve_backbone(args.backbone), args.probes):.6g}")
        return 0

    return run
