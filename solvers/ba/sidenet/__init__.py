"""SideNet models: ``S_phi(x, v, t, h, y) -> dv``, chosen from the backbone's sample shape.

Two architectures: ``project`` (this project's own, for vector and image samples; the
default) and ``official`` (the authors' image SideNet, ``official.py``)."""
from __future__ import annotations

from typing import Any, Mapping

from solverbench.backbone import label_feature_width
from solvers.ba.config import ARCHITECTURES, NetworkSettings
from solvers.ba.sidenet.base import ProjectSideNet, SideNet
from solvers.ba.sidenet.image import ImageSideNet
from solvers.ba.sidenet.mlp import MLPSideNet
from solvers.ba.sidenet.official import OfficialImageSideNet

KINDS = {MLPSideNet.kind: MLPSideNet, ImageSideNet.kind: ImageSideNet}
OFFICIAL = {ImageSideNet.kind: OfficialImageSideNet}  # the authors' SideNet, by kind


def sidenet_kind(sample_shape) -> str:
    """``mlp`` for vector samples ``(D,)``, ``image`` for ``(C, H, W)``."""
    shape = tuple(sample_shape)
    if len(shape) == 1:
        return MLPSideNet.kind
    if len(shape) == 3:
        return ImageSideNet.kind
    raise ValueError(f"no SideNet for samples of shape {shape}: vector (D,) and image (C, H, W) samples have one")


def build_sidenet(spec: dict[str, Any]) -> SideNet:
    """A SideNet from its spec (``SideNet.spec``: kind, architecture (``project`` where absent),
    sample shape, labels (a table's classes, or ``label_features``, the width of the label features
    it takes: bind it to a backbone with ``bind_labels``), sizes)."""
    spec = dict(spec)
    kind = spec.pop("kind")
    architecture = spec.pop("architecture", "project")
    if kind not in KINDS:
        raise ValueError(f"unknown SideNet kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown SideNet architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    if architecture == "official" and kind not in OFFICIAL:
        raise ValueError(f"the official (authors') SideNet exists for image samples (C, H, W) only, not for "
                         f"{kind} samples of shape {tuple(spec['sample_shape'])}; use architecture: project")
    cls = OFFICIAL[kind] if architecture == "official" else KINDS[kind]
    return cls(spec.pop("sample_shape"), spec.pop("num_classes"), spec.pop("null_label"), **spec)


def sidenet_for(backbone: Any, network: NetworkSettings | Mapping[str, Any]) -> SideNet:
    """A fresh (zero-output) SideNet for ``backbone``: its kind from the sample shape, its
    architecture and sizes from ``network`` (the settings' ``network`` group, or the mapping of
    sizes ``NetworkSettings.build_arguments`` gives).  Where the backbone offers ``label_features``
    the SideNet is conditioned on them (its spec: ``label_features`` F, no classes of its own) and
    bound to the backbone's; otherwise it has a table of the backbone's classes."""
    sizes = network.build_arguments() if isinstance(network, NetworkSettings) else network
    width = label_feature_width(backbone)
    labels = {"num_classes": backbone.num_classes, "null_label": backbone.null_label} if width is None else \
        {"num_classes": None, "null_label": None, "label_features": width}
    return build_sidenet({"kind": sidenet_kind(backbone.sample_shape), "sample_shape": list(backbone.sample_shape),
                          **labels, **sizes}).bind_labels(backbone)


__all__ = ["SideNet", "ProjectSideNet", "MLPSideNet", "ImageSideNet", "OfficialImageSideNet", "ARCHITECTURES",
           "build_sidenet", "sidenet_for", "sidenet_kind"]
