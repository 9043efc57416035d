"""The Backbone contract: a velocity network with the conventions of docs/ba-solver.md ("Conventions").

``forward(x, t, y=None) -> v`` with ``x_t = (1 - t) x0 + t eps`` (t = 1 noise, t = 0 data)
and ``v = dx/dt = eps - x0``.  ``t`` arrives as a tensor of shape ``(batch,)``.
A backbone declares

- ``sample_shape``: the shape of one sample, e.g. ``(64,)`` or ``(4, 32, 32)``;
- ``num_classes``: the number of class labels, or ``None`` for an unconditional model;
- ``null_label``: the label meaning "no label" (used for classifier-free guidance), or
  ``None`` when the model has none;

and may offer ``sample_data(n, generator, labels=None) -> (x0, y)`` (draws from its data
distribution), ``identity() -> dict`` (what distinguishes it, for cache keys) and
``data_identity() -> dict`` (what distinguishes its data, for caches of data statistics:
two checkpoints of one data set share them; the default is ``identity()``).

A conditional backbone whose labels stand for something with a feature vector (a prompt set's
prompts: their pooled text embeddings) may offer ``label_features(y) -> (batch, F)``: the
float features of the labels ``y`` (0 .. num_classes - 1, and ``null_label``), of one width F
whatever the label set.  A network beside the backbone (a learned solver's) then conditions
on them instead of a table of the labels, and serves any label set of width F.  Such a backbone
names in ``label_identity`` the keys of its ``identity()`` that only say which labels it has
(a prompt set's digest), which such a network's checks leave aside.

A backbone whose parameters name files lists them in ``path_params``: in a grid file,
a relative path there is read next to the grid file (as plugins and solvers' checkpoints
are), not from the working directory, and the file's bytes are part of each cell's id
(``solverbench.file_params``).

Image backbones also offer ``to_images(samples) -> uint8 tensor (N, 3 or 1, H, W)``
(decoding latents where needed) and name the ``default_feature_extractor`` (a name in the
feature-extractor registry) that image metrics use unless a grid says otherwise.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn

from solverbench.registry import BACKBONES

REQUIRED_ATTRIBUTES = ("sample_shape", "num_classes", "null_label")


class Backbone(nn.Module):
    """Base class for built-in backbones (any object meeting the contract works too)."""

    sample_shape: tuple[int, ...]
    num_classes: Optional[int] = None
    null_label: Optional[int] = None
    path_params: tuple[str, ...] = ()  # parameters that name files (see the module docstring)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What makes this backbone itself: used in cache keys of references and of what solvers prepare for it."""
        return {"class": type(self).__qualname__}

    @property
    def has_data(self) -> bool:
        return type(self).sample_data is not Backbone.sample_data

    def sample_data(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
        raise NotImplementedError(f"{type(self).__name__} cannot draw data samples")


def resolve_backbone(backbone: Any, **params: Any) -> Any:
    """A registered name (built with ``params``) or an object meeting the contract."""
    if isinstance(backbone, str):
        backbone = BACKBONES.get(backbone)(**params)
    elif params:
        raise TypeError("backbone parameters can only be given with a registered backbone name")
    check_backbone(backbone)
    return backbone


def check_backbone(backbone: Any) -> None:
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(backbone, a)]
    if missing or not callable(backbone):
        what = f"lacks the attributes {', '.join(missing)}" if missing else "is not callable"
        raise TypeError(
            f"{type(backbone).__name__} is not a backbone: it {what}. A backbone is callable as "
            f"forward(x, t, y=None) -> velocity and declares {', '.join(REQUIRED_ATTRIBUTES)}"
        )


def backbone_identity(backbone: Any) -> dict[str, Any]:
    if hasattr(backbone, "identity"):
        return dict(backbone.identity())
    return {"class": f"{type(backbone).__module__}.{type(backbone).__qualname__}"}


def label_feature_width(backbone: Any) -> Optional[int]:
    """F, the width of the backbone's ``label_features``; None where it offers none (or has no labels)."""
    features = getattr(backbone, "label_features", None)
    if not callable(features) or not backbone.num_classes:
        return None
    return int(features(torch.zeros(1, dtype=torch.long)).shape[-1])


def label_feature_table(backbone: Any) -> torch.Tensor:
    """(num_classes + 1, F): the features of labels 0 .. num_classes - 1, then the null label's (zeros where the
    backbone has none); a ValueError where it offers no ``label_features``."""
    if label_feature_width(backbone) is None:
        raise ValueError(f"the backbone {type(backbone).__name__} offers no label_features")
    features = backbone.label_features(torch.arange(backbone.num_classes)).float()
    null = backbone.label_features(torch.tensor([backbone.null_label])).float() \
        if backbone.null_label is not None else torch.zeros_like(features[:1])
    return torch.cat([features, null.to(features.device)])


def label_identity(backbone: Any) -> tuple[str, ...]:
    """The keys of the backbone's identity that only name its labels (``label_identity``; none by default)."""
    return tuple(getattr(backbone, "label_identity", ()))


def data_identity(backbone: Any) -> dict[str, Any]:
    """What ``sample_data`` draws from: the backbone's ``data_identity()``, else its identity."""
    if hasattr(backbone, "data_identity"):
        return dict(backbone.data_identity())
    return backbone_identity(backbone)


def has_data(backbone: Any) -> bool:
    if isinstance(backbone, Backbone):
        return backbone.has_data
    return callable(getattr(backbone, "sample_data", None))


def weights_dtypes(backbone: Any) -> set[torch.dtype]:
    """The dtypes of the backbone's floating-point parameters: an ``nn.Module``'s own, or those of the modules
    an object holds as attributes (a wrapper's); empty for a backbone without any (a closed-form velocity,
    such as ``gmm``'s, whose tensors are buffers)."""
    modules = [backbone] if isinstance(backbone, nn.Module) else \
        [v for v in vars(backbone).values() if isinstance(v, nn.Module)] if hasattr(backbone, "__dict__") else []
    return {p.dtype for module in modules for p in module.parameters() if p.is_floating_point()}


def has_network(backbone: Any) -> bool:
    """Whether the backbone computes through a network of floating-point parameters (``weights_dtypes``): what
    reduced precision (autocast) would change."""
    return bool(weights_dtypes(backbone))


def backbone_in_dtype(backbone: Any, dtype: torch.dtype) -> Any:
    """The backbone with weights in ``dtype`` (a copy) where it has floating-point parameters."""
    if isinstance(backbone, nn.Module):
        params = [p for p in backbone.parameters() if p.is_floating_point()]
        if params and any(p.dtype != dtype for p in params):
            return copy.deepcopy(backbone).to(dtype)
    return backbone
