"""Checkpoint files of the trained backbones: read safely, fit to a model strictly, hash.

Files are read with ``torch.load(..., weights_only=True)`` (tensors and plain containers
only), by ``solverbench.weights_file.read_weights``, which says in one line what is wrong
with a missing, empty or unreadable file.  A state dict may sit at the top level or under
``"ema"`` / ``"model"`` (the layouts of DiT/SiT/REPA training scripts; ``"ema"`` is
preferred when both are present, since those are the weights their authors sample with),
and its keys may carry the ``"module."`` prefix that ``DistributedDataParallel`` adds.  Fitting is strict: a missing, unexpected or
wrongly-shaped key is an error that names the file and the first offending keys.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import nn

from solverbench.weights_file import first_keys, read_weights, state_dict_mismatches

STATE_DICT_KEYS = ("ema", "model")  # where training scripts put the weights, in order of preference
DDP_PREFIX = "module."


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or does not fit the model it is loaded into.

    A ValueError: the file is a bad parameter value, so a grid naming it fails validation."""


def read_checkpoint(path: str | Path) -> Any:
    """The object stored in ``path``, loaded on the CPU with ``weights_only=True``.

    ``argparse.Namespace`` is allowed besides tensors: REPA's training script stores its
    command-line arguments under ``"args"`` as one.
    """
    return read_weights(path, what="checkpoint file", safe_globals=[argparse.Namespace], error=CheckpointError)


def extract_state_dict(stored: Any, path: str | Path, key: Optional[str] = None) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint, with any ``"module."`` prefix removed.

    ``key`` names the entry to use (``"ema"``, ``"model"``, ...); ``None`` takes the first of
    ``"ema"``, ``"model"`` that is present, or the whole object when it is a plain state dict.
    """
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"checkpoint file {str(path)!r} holds a {type(stored).__name__}, not a state dict")
    if key is not None:
        if key not in stored:
            raise CheckpointError(f"checkpoint file {str(path)!r} has no entry {key!r}; "
                                  f"its top-level keys: {first_keys(stored)}")
        state = stored[key]
    else:
        state = next((stored[k] for k in STATE_DICT_KEYS if isinstance(stored.get(k), Mapping)), stored)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint file {str(path)!r} holds no state dict of tensors "
                              f"(top-level keys: {first_keys(stored)}); give the entry to use explicitly")
    return {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path,
                   ignore_prefixes: Iterable[str] = (), hint: str = "") -> None:
    """Load ``state`` into ``model``; every mismatch is an error naming the file and the keys.

    Keys starting with one of ``ignore_prefixes`` are dropped from ``state`` first (e.g. the
    REPA projector heads, which sampling never uses).
    """
    ignore = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    problems = state_dict_mismatches(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"checkpoint file {str(path)!r} does not fit {type(model).__name__}: "
                              + "; ".join(problems) + (f". {hint}" if hint else ""))
    model.load_state_dict(state, strict=True)


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Path:
    """Write ``{"state_dict", "config"}`` atomically (a half-written file never takes the name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
                "config": dict(config)}, tmp)
    tmp.replace(path)
    return path


