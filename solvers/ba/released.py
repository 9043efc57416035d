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
weights: the heads are the authors' fixed 4 and the latent's height and width, and the null
label, are the backbone's.  The file records no backbone, so loading it checks the channels
and classes its weights fix against the backbone's (checkpoint.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from solverbench.weights_file import first_keys
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet.official import HEADS
from solvers.ba.sidenet_file import CheckpointMismatchError, SideNetFile

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


def contents(stored: Any, path: Path, backbone: Any, weights: str = "ema") -> Optional[SideNetFile]:
    """What an authors' file holds, as ``architecture: official`` (its ``weights``: ``ema`` prefers
    ``ema_side_model`` as generate.py does, ``raw`` prefers ``side_model``); None where ``stored`` is
    not one.  Bare weights of this project's SideNet are refused: they lack the settings."""
    found, entry = weights_in(stored, ENTRIES if weights == "ema" else ENTRIES[::-1])
    if not is_official(found):
        if is_project(found):
            raise CheckpointMismatchError(
                f"SideNet checkpoint {str(path)!r} holds bare weights of this project's SideNet without their settings "
                "(not the authors' SideNet, which architecture: official reads); write it with "
                "solvers.ba.checkpoint.save_checkpoint, as train-sidenet does")
        return None
    spec = official_spec(found, path, backbone)
    config = SideNetConfig.from_settings({"architecture": "official", "width": spec["width"], "depth": spec["depth"],
                                          "embed_dim": spec["embed_dim"], "heads": spec["heads"]})
    return SideNetFile(path, "the authors' SideNet (models/side_net.py)", spec, found, config,
                       training_stats(stored, entry), trained_for={},
                       fit_hint="its sizes were read off input_conv, emb_fusion, t_embedder, y_embedder and blocks")


def official_spec(weights: Mapping[str, torch.Tensor], path: Path, backbone: Any) -> dict[str, Any]:
    """The ``OfficialImageSideNet`` spec that fits ``weights``: its channels and classes the weights', its
    latent's height and width and null label the backbone's; one line naming the file where the weights do
    not say it."""
    needed = ("input_conv.weight", "emb_fusion.0.weight", "t_embedder.mlp.0.weight",
              "y_embedder.embedding_table.weight")
    absent = [k for k in needed if k not in weights]
    if absent:
        raise CheckpointMismatchError(f"SideNet checkpoint {str(path)!r} looks like the authors' SideNet but lacks "
                                      f"{first_keys(absent)}, which its architecture is read from")
    width, double_channels = weights["input_conv.weight"].shape[:2]
    embed_dim = weights["emb_fusion.0.weight"].shape[0]
    frequency_dim = weights["t_embedder.mlp.0.weight"].shape[1]
    classes = weights["y_embedder.embedding_table.weight"].shape[0] - 1
    blocks = sorted({int(k.split(".")[1]) for k in weights if k.startswith("blocks.") and k.split(".")[1].isdigit()})
    depth = len(blocks)
    attention = [i for i in blocks if f"blocks.{i}.qkv.weight" in weights]
    if blocks != list(range(depth)) or attention != [depth // 2]:
        raise CheckpointMismatchError(
            f"SideNet checkpoint {str(path)!r} has blocks {blocks} with attention at {attention}; the authors' "
            f"SideNet of depth {depth} has blocks 0..{depth - 1} with attention at {depth // 2}")
    return {"kind": "image", "architecture": "official",
            "sample_shape": [int(double_channels) // 2, *list(backbone.sample_shape)[1:]],
            "num_classes": classes or None, "null_label": backbone.null_label, "width": int(width),
            "depth": depth, "embed_dim": int(embed_dim), "heads": HEADS, "frequency_dim": int(frequency_dim)}


def training_stats(stored: Mapping[str, Any], entry: Optional[str]) -> dict[str, Any]:
    """What the file says of its training: where the weights came from and the step it was saved at."""
    step = stored.get("step") if entry else None
    return {"source": "authors' checkpoint (HKUST-LongGroup/BA-solver)", "weights": entry or "state dict",
            "iterations": step if isinstance(step, int) else None}
