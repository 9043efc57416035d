"""The one provenance row: the columns every study kind's rows begin with.

What the row is of (grid, backbone, solver, guidance, seed) and how it was made (grid hash,
package versions, git commit, device, time, and the host and process id that computed it),
so a number can be trusted months later.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any

from solverbench.grid.values import BackboneSpec, Grid, SolverSpec
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json
from solverbench.provenance import device_name, git_commit, package_versions


def row_head(grid: Grid, kind: str, cell_id: str, backbone: BackboneSpec, solver: SolverSpec, guidance: Guidance,
             seed: int) -> dict[str, Any]:
    instance = solver.instance
    return {
        "grid": grid.name, "kind": kind, "cell_id": cell_id,
        "backbone": backbone.name, "backbone_params": canonical_json(backbone.params),
        "solver": solver.name, "solver_params": canonical_json(solver.params), "solver_label": solver.label,
        "solver_order": instance.order, "analysis_only": instance.analysis_only,
        "cfg_scale": guidance.scale, "cfg_lo": guidance.interval[0], "cfg_hi": guidance.interval[1],
        "cfg_convention": guidance.convention, "seed": seed, "label_rule": grid.labels,
        "num_samples": grid.num_samples, "dtype": grid.dtype, "tf32": grid.precision.tf32,
        "compiled": grid.precision.compile, "device": grid.device,
        "device_name": device_name(grid.device), "config_hash": cell_id, "grid_hash": grid.hash,
        "versions": canonical_json(package_versions()), "git_commit": git_commit(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "pid": os.getpid(),
    }


def cell_identity(grid: Grid, backbone: BackboneSpec, solver: SolverSpec, guidance: Guidance, seed: int,
                  **specific: Any) -> dict[str, Any]:
    """What defines a cell's numbers, for its id: the study kind adds its own (``specific``)."""
    settings = grid.settings_for(solver)
    files = {**{f"backbone.{k}": v for k, v in backbone.files.items()},
             **{f"solver.{k}": v for k, v in solver.files.items()}}
    return {
        "kind": grid.kind, "backbone": backbone.name, "backbone_params": backbone.params, "solver": solver.name,
        "solver_params": solver.params, "cfg_scale": guidance.scale, "cfg_interval": list(guidance.interval),
        **({"cfg_convention": guidance.convention} if guidance.convention else {}), "seed": seed,
        **({"labels": grid.labels} if grid.labels != "uniform" else {}),
        "num_samples": grid.sequential.identity() if grid.sequential is not None else grid.num_samples,
        "dtype": grid.dtype, **grid.precision.identity(),
        "reference": {"rtol": grid.tolerance.rtol, "atol": grid.tolerance.atol}, **specific,
        **({"solver_settings": settings} if settings else {}), **({"file_sha256": files} if files else {}),
    }
