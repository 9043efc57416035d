"""SideNet models: ``S_phi(x, v, t, h, y) -> dv``, chosen from the backbone's sample shape."""
from __future__ import annotations

from typing import Any

from solvers.ba.sidenet.base import SideNet
from solvers.ba.sidenet.image import ImageSideNet
from solvers.ba.sidenet.mlp import MLPSideNet

KINDS = {MLPSideNet.kind: MLPSideNet, ImageSideNet.kind: ImageSideNet}


def sidenet_kind(sample_shape) -> str:
    """``mlp`` for vector samples ``(D,)``, ``image`` for ``(C, H, W)``."""
    shape = tuple(sample_shape)
    if len(shape) == 1:
        return MLPSideNet.kind
    if len(shape) == 3:
        return ImageSideNet.kind
    raise ValueError(f"no SideNet for samples of shape {shape}: vector (D,) and image (C, H, W) samples have one")


def build_sidenet(spec: dict[str, Any]) -> SideNet:
    """A SideNet from its spec (``SideNet.spec``: kind, sample shape, labels, architecture)."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown SideNet kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[kind](spec.pop("sample_shape"), spec.pop("num_classes"), spec.pop("null_label"), **spec)


def sidenet_for(backbone: Any, architecture: dict[str, int]) -> SideNet:
    """A fresh (zero-output) SideNet for ``backbone``: its kind from the sample shape."""
    return build_sidenet({"kind": sidenet_kind(backbone.sample_shape), "sample_shape": list(backbone.sample_shape),
                          "num_classes": backbone.num_classes, "null_label": backbone.null_label, **architecture})


__all__ = ["SideNet", "MLPSideNet", "ImageSideNet", "build_sidenet", "sidenet_for", "sidenet_kind"]
