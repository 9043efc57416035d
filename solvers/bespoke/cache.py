"""Train theta once per (backbone, base, budget, guidance, training settings) and reuse it from disk.

The file is ``<cache_dir>/bespoke/<hash>.pt`` with the hash of its key: the backbone's identity,
the base solver, the budget and the steps it makes, the guidance (scale, interval, conventions)
and every training setting.  It holds plain tensors and values (read with
``torch.load(weights_only=True)``), written atomically (a temporary file renamed over it).
``load_transformation`` refuses, in one line naming the file and what differs, a file that
cannot be read or whose key or parameters do not fit what is asked; ``cached_transformation``
(what the solver reads its cache with) moves such a file aside, names it in one line, and
reads it as absent, so theta is trained again (``solverbench.cache_entry``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_identity
from solverbench.cache_entry import read_entry, save_atomically
from solverbench.distributed import world
from solverbench.guidance import Guidance
from solverbench.hashing import canonical_json, spec_hash
from solverbench.weights_file import read_weights, state_dict_mismatches
from solvers.bespoke.settings import TrainingSettings
from solvers.bespoke.transform import Layout, Transformation

FORMAT = "solverbench-bespoke/1"


class BespokeCacheError(ValueError):
    """A cached Bespoke transformation that cannot be read or does not fit what it is asked for."""


def guidance_key(guidance: Guidance) -> dict[str, Any]:
    return {"scale": guidance.scale, "interval": list(guidance.interval), "convention": guidance.convention}


def cache_key(backbone: Any, base: str, layout: Layout, guidance: Guidance, settings: TrainingSettings
              ) -> dict[str, Any]:
    return {"format": FORMAT, "backbone": backbone_identity(backbone), "base": base, "nfe": layout.nfe,
            "stages": list(layout.stages), "guidance": guidance_key(guidance), "training": settings.as_dict()}


def cache_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    return Path(cache_dir) / "bespoke" / f"{spec_hash(key)}.pt"


def save_transformation(path: str | Path, key: dict[str, Any], transformation: Transformation,
                        stats: dict[str, Any]) -> Path:
    """Write atomically (temporary file + rename), so the cache never holds half a file."""
    state = {"format": FORMAT, "key": canonical_json(key), "stats": dict(stats),
             "theta": {k: v.detach().cpu() for k, v in transformation.state_dict().items()}}
    return save_atomically(state, path)


def cached_transformation(path: str | Path, key: dict[str, Any], layout: Layout
                          ) -> Optional[tuple[Transformation, dict]]:
    """``load_transformation`` of the cache file at ``path``; None where there is none, or where it cannot
    be used (then moved aside and named in one line; under torchrun by rank 0 alone, which prepares first)."""
    return read_entry(path, "cached Bespoke transformation", lambda p: load_transformation(p, key, layout),
                      mend=world().main)


def key_differences(stored: Any, expected: Any, prefix: str = "") -> list[str]:
    """The fields where two keys differ, as ``field: file value != expected value``."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        return [d for k in sorted(set(stored) | set(expected))
                for d in key_differences(stored.get(k, "<absent>"), expected.get(k, "<absent>"), f"{prefix}{k}.")]
    if canonical_json(stored) != canonical_json(expected):
        return [f"{prefix.rstrip('.')}: {canonical_json(stored)} != {canonical_json(expected)}"]
    return []


def load_transformation(path: str | Path, key: dict[str, Any], layout: Layout) -> tuple[Transformation, dict]:
    """theta and its training statistics from ``path``, checked against ``key`` and ``layout``."""
    path = Path(path)
    name = f"cached Bespoke transformation {str(path)!r}"
    state = read_weights(path, what="cached Bespoke transformation", error=BespokeCacheError)
    if not (isinstance(state, dict) and state.get("format") == FORMAT and isinstance(state.get("theta"), dict)
            and all(isinstance(v, torch.Tensor) for v in state["theta"].values())):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise BespokeCacheError(f"{name} is not a Bespoke transformation of format {FORMAT} (found {found!r})")
    try:
        stored_key = json.loads(state.get("key", "null"))
    except (TypeError, ValueError):
        stored_key = None
    differences = key_differences(stored_key, json.loads(canonical_json(key)))
    if differences:
        raise BespokeCacheError(f"{name} was trained for something else; it differs in " + "; ".join(differences)
                                + " (file != asked)")
    transformation = Transformation(layout)
    problems = state_dict_mismatches(transformation.state_dict(), state["theta"])
    if problems:
        raise BespokeCacheError(f"{name} does not fit a transformation of {layout.nfe} NFE (steps "
                                f"{list(layout.stages)}): " + "; ".join(problems))
    transformation.load_state_dict(state["theta"], strict=True)
    transformation.requires_grad_(False)
    return transformation, dict(state.get("stats") or {})
