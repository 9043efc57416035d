"""The authors' SideNet files (HKUST-LongGroup/BA-solver), read into ``architecture: official``.

Their training script (train_BA_side.py) saves ``{"side_model", "ema_side_model", "optimizer",
"step"}``; their sampler (generate.py) takes ``ema_side_model`` where present, else
``side_model``, else the file as a bare state dict, and strips ``"module."`` from the keys.
This reads the same three layouts, in the same order of preference (``"_orig_mod."``, the
prefix of a ``torch.compile``d module, is stripped too).

Such a file holds weights only, so the architecture is read off their shapes: width
(``input_conv``), input channels, conditioning width (``emb_fusion``), sinusoid size, number
of classes (the label table has one row more), depth (the ``blocks``) and where the
attention block sits.  The heads (4) and the latent's height and width are not in the
weights: the heads are the authors' fixed 4 and the latent shape is the backbone's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from solverbench.weights_file import first_keys
from solvers.ba.sidenet.official import HEADS

ENTRIES = ("ema_side_model", "side_model")  # train_BA_side.py's entries, EMA preferred (as generate.py)
PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel / accelerate, torch.compile
MARKERS = ("input_conv.weight", "emb_fusion.0.weight")  # keys only the authors' SideNet has
PROJECT_MARKERS = ("input.weight", "conditioning.t_mlp.0.weight")  # keys of this project's SideNets


def strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def weights_in(stored: Any, entries: tuple[str, ...] = ENTRIES) -> tuple[Optional[dict[str, torch.Tensor]],
                                                                           Optional[str]]:
    """The state dict a file holds (prefixes stripped) and the entry it came from (None: the
    file itself), the first of ``entries`` present; ``(None, None)`` where there is none."""
    if not isinstance(stored, Mapping):
        return None, None
    entry = next((k for k in entries if tensor_mapping(stored.get(k))), None)
    weights = stored[entry] if entry else stored
    if not tensor_mapping(weights):
        return None, None
    return {strip_prefixes(k): v for k, v in weights.items()}, entry


def is_official(weights: Optional[Mapping[str, torch.Tensor]]) -> bool:
    return weights is not None and all(k in weights for k in MARKERS)


def is_project(weights: Optional[Mapping[str, torch.Tensor]]) -> bool:
    return weights is not None and all(k in weights for k in PROJECT_MARKERS)


def official_spec(weights: Mapping[str, torch.Tensor], path: Path, backbone: Any) -> dict[str, Any]:
    """The ``OfficialImageSideNet`` spec that fits ``weights`` and ``backbone``; a ValueError
    (one line naming the file) where the weights do not say it or the backbone does not match."""
    needed = ("input_conv.weight", "emb_fusion.0.weight", "t_embedder.mlp.0.weight",
              "y_embedder.embedding_table.weight")
    absent = [k for k in needed if k not in weights]
    if absent:
        raise ValueError(f"SideNet checkpoint {str(path)!r} looks like the authors' SideNet but lacks {first_keys(absent)}, "
                         "which its architecture is read from")
    width, double_channels = weights["input_conv.weight"].shape[:2]
    embed_dim = weights["emb_fusion.0.weight"].shape[0]
    frequency_dim = weights["t_embedder.mlp.0.weight"].shape[1]
    classes = weights["y_embedder.embedding_table.weight"].shape[0] - 1
    blocks = sorted({int(k.split(".")[1]) for k in weights if k.startswith("blocks.") and k.split(".")[1].isdigit()})
    depth = len(blocks)
    attention = [i for i in blocks if f"blocks.{i}.qkv.weight" in weights]
    if blocks != list(range(depth)) or attention != [depth // 2]:
        raise ValueError(f"SideNet checkpoint {str(path)!r} has blocks {blocks} with attention at {attention}; the "
                         f"authors' SideNet of depth {depth} has blocks 0..{depth - 1} with attention at {depth // 2}")
    shape = tuple(backbone.sample_shape)
    if len(shape) != 3 or shape[0] != double_channels // 2:
        raise ValueError(f"SideNet checkpoint {str(path)!r} holds the authors' SideNet for "
                         f"{double_channels // 2}-channel images; the backbone's samples have shape {shape}")
    if classes != (backbone.num_classes or 0):
        raise ValueError(f"SideNet checkpoint {str(path)!r} holds the authors' SideNet for {classes} classes (its "
                         f"label table has {classes + 1} rows, the last for the null label); the backbone has "
                         f"{backbone.num_classes or 'no'} classes")
    return {"kind": "image", "architecture": "official", "sample_shape": list(shape),
            "num_classes": backbone.num_classes, "null_label": backbone.null_label, "width": int(width),
            "depth": depth, "embed_dim": int(embed_dim), "heads": HEADS, "frequency_dim": int(frequency_dim)}


def training_stats(stored: Mapping[str, Any], entry: Optional[str]) -> dict[str, Any]:
    """What the file says of its training: where the weights came from and the step it was saved at."""
    step = stored.get("step") if entry else None
    return {"source": "authors' checkpoint (HKUST-LongGroup/BA-solver)", "weights": entry or "state dict",
            "iterations": step if isinstance(step, int) else None}
