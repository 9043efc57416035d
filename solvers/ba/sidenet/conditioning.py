"""Conditioning of a SideNet: ``t``, ``h`` and the label ``y`` fused into one vector.

``t`` and ``h`` each get a sinusoidal embedding and an MLP; ``y`` an embedding table with one
extra row for the null label (classifier-free guidance), or, where the backbone offers
``label_features`` (a prompt's pooled text embedding: solverbench/backbone.py), a learned linear
map of the label's feature vector (``LabelFeatures``).  The sum modulates the feature maps of
every block by a scale and a shift (``modulate``).

A batch's conditioning vectors are few: a solver's step puts one ``t`` and one ``h`` (or a few
offsets) on every sample, and the samples share a few labels.  ``Conditioning`` therefore computes
each distinct ``(t, h, y)`` once (``SharedRows``), and so does every ``Modulation``; a sample's
vector is the same as if it had been computed for it alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from solverbench.backbone import label_feature_table


def sinusoidal_embedding(s: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """``[cos(scale s f_k), sin(scale s f_k)]`` with ``f_k = 10000^(-k / (dim/2))``; ``s`` of shape (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=s.device, dtype=torch.float32) / half)
    args = scale * s.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def embedding_mlp(embed_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embed_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class LabelFeatures(nn.Module):
    """A label's embedding as ``W f(y) + b``, ``f(y)`` the backbone's feature vector of label ``y``
    (``label_features``, width F), in place of a row of a table: one network serves any label set
    of that width (prompts it never saw).  ``bind`` reads the features of a backbone's labels into
    ``table`` (rows 0..P-1 its labels, row P its null label, zeros where it has none), a buffer
    that is no part of the weights: a SideNet is bound to each backbone it is built or loaded for."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.width = width
        self.proj = nn.Linear(width, dim)
        self.register_buffer("table", torch.zeros(0, width), persistent=False)
        self.null_label: Optional[int] = None

    def bind(self, backbone) -> None:
        """Read ``backbone``'s label features (ValueError where their width is not F)."""
        table = label_feature_table(backbone)
        if table.shape[1] != self.width:
            raise ValueError(f"the SideNet takes label features of width {self.width}; the backbone "
                             f"{type(backbone).__name__} gives width {table.shape[1]}")
        self.table = table.to(self.proj.weight.device, torch.float32)
        self.null_label = backbone.null_label

    def forward(self, y: Optional[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
        if not len(self.table):
            raise RuntimeError("this SideNet is conditioned on label features and is bound to no backbone: "
                               "call sidenet.bind_labels(backbone) first")
        null_row = len(self.table) - 1
        if y is None:
            rows = torch.full((n,), null_row, dtype=torch.long, device=device)
        else:
            rows = y.long() if self.null_label is None else torch.where(y == self.null_label, null_row, y).long()
        return self.proj(self.table[rows.to(self.table.device)].to(self.proj.weight.dtype))


@dataclass(frozen=True)
class SharedRows:
    """A batch of vectors held as its distinct rows: sample ``i``'s vector is ``rows[index[i]]``."""

    rows: torch.Tensor  # (U, dim), U the number of distinct vectors
    index: torch.Tensor  # (B,), long

    @staticmethod
    def each(vectors: torch.Tensor) -> "SharedRows":
        """Every row of ``vectors`` its own (nothing shared)."""
        return SharedRows(vectors, torch.arange(len(vectors), device=vectors.device))

    def expanded(self, per_row: torch.Tensor) -> torch.Tensor:
        """``per_row`` (one row per distinct vector, computed from ``rows``) given to every sample: (B, ...)."""
        return per_row.index_select(0, self.index)


def distinct(keys: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first sample of each distinct combination of ``keys`` (tensors of shape (B,)), and each sample's
    combination: ``(first, index)`` with sample ``i`` alike sample ``first[index[i]]``."""
    combinations, index = torch.unique(keys[0].detach(), return_inverse=True)
    for key in keys[1:]:  # the combinations so far and this key's values, numbered as the two digits of one integer
        values, number = torch.unique(key.detach(), return_inverse=True)
        combinations, index = torch.unique(index * len(values) + number, return_inverse=True)
    positions = torch.arange(len(index), device=index.device)
    first = torch.full((len(combinations),), len(index), dtype=torch.long, device=index.device)
    return first.scatter_reduce_(0, index, positions, reduce="amin"), index


class Conditioning(nn.Module):
    """``c = MLP_t(emb(t)) + MLP_h(emb(h)) + E[y]`` (no table for an unconditional backbone; no ``h``
    term with ``with_h=False``, the polynomial head's); with ``label_features`` F, ``E[y]`` is
    ``LabelFeatures`` of width F instead of the table."""

    def __init__(self, dim: int, embed_dim: int, num_classes: Optional[int], null_label: Optional[int],
                 with_h: bool = True, label_features: Optional[int] = None):
        super().__init__()
        self.embed_dim = embed_dim
        self.t_mlp = embedding_mlp(embed_dim, dim)
        self.h_mlp = embedding_mlp(embed_dim, dim) if with_h else None  # None: c does not depend on h
        self.num_classes = num_classes
        self.null_label = null_label
        with_table = num_classes and label_features is None
        self.labels = nn.Embedding(num_classes + 1, dim) if with_table else None  # row num_classes: null
        self.features = LabelFeatures(label_features, dim) if label_features is not None else None

    def forward(self, t: torch.Tensor, h: Optional[torch.Tensor], y: Optional[torch.Tensor]) -> SharedRows:
        """``c`` of every sample, each distinct ``(t, h, y)`` computed once."""
        keys = [t] + [key for key in (None if self.h_mlp is None else h, y) if key is not None]
        first, index = distinct(keys)

        def pick(key: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if key is None else key.index_select(0, first)

        return SharedRows(self.vectors(pick(t), pick(h), pick(y)), index)

    def vectors(self, t: torch.Tensor, h: Optional[torch.Tensor], y: Optional[torch.Tensor]) -> torch.Tensor:
        """``c``, (B, dim), row by row."""
        c = self.t_mlp(sinusoidal_embedding(t, self.embed_dim))
        if self.h_mlp is not None:
            c = c + self.h_mlp(sinusoidal_embedding(h, self.embed_dim))
        if self.labels is not None:
            if y is None:
                row = torch.full((len(t),), self.num_classes, dtype=torch.long, device=t.device)
            else:
                row = torch.where(y == self.null_label, self.num_classes, y).long()
            c = c + self.labels(row)
        if self.features is not None:
            c = c + self.features(y, len(t), t.device)
        return c


def modulate(features: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``features (1 + scale) + shift``, with (B, C) scale/shift broadcast over trailing axes."""
    extra = (1,) * (features.dim() - 2)
    return features * (1 + scale.reshape(*scale.shape, *extra)) + shift.reshape(*shift.shape, *extra)


class Modulation(nn.Module):
    """Conditioning (``SharedRows``) -> ``n`` pairs (scale, shift), each (B, channels); zero-initialised."""

    def __init__(self, cond_dim: int, channels: int, n: int = 1):
        super().__init__()
        self.n = n
        self.proj = nn.Linear(cond_dim, 2 * n * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, c: SharedRows) -> list[torch.Tensor]:
        return list(c.expanded(self.proj(nn.functional.silu(c.rows))).chunk(2 * self.n, dim=1))


class RMSNorm(nn.Module):
    """RMS normalisation over the channel axis (axis 1), with a learned gain."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = self.gain.reshape(1, -1, *(1,) * (x.dim() - 2))
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps) * gain
