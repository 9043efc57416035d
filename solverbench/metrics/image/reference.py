"""Reference features and FID statistics of a backbone's data, cached on disk and reused.

The reference set is ``backbone.sample_data(n, generator seeded with REFERENCE_SEED)``,
turned into images by ``backbone.to_images``.  Its features (every feature the extractor
gives) and the Frechet statistics (mean, covariance) of the features FID and sFID use are
stored under ``<cache dir>/image_reference/`` keyed by the data's identity (the backbone's
``data_identity()``: every checkpoint of a data set shares it), the extractor (name and a
digest of its weights) and ``n``.  Under torchrun the ranks split the reference images' batches.  (Where the grid names an ADM reference batch instead, it is the
reference: ``reference_batch``.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from solverbench.backbone import data_identity
from solverbench.distributed import world
from solverbench.hashing import canonical_json, spec_hash
from solverbench.metrics.image.extractors import extract_features
from solverbench.metrics.image.frechet import frechet_statistics

REFERENCE_SEED = 0
CACHE_SUBDIR = "image_reference"


@dataclass
class ReferenceSet:
    """What the image metrics compare with: Frechet statistics per feature name, and every feature of
    the reference images (``features``, loaded on first use)."""

    statistics: dict[str, dict[str, torch.Tensor]]  # feature name -> {"mu", "sigma"}
    path: Path  # the cache file, or the reference batch
    load_features: Callable[[], dict[str, torch.Tensor]] = field(repr=False)
    batch: Optional[Any] = None  # a ReferenceBatch where the reference is an ADM reference batch

    @cached_property
    def features(self) -> dict[str, torch.Tensor]:
        return self.load_features()

    def frechet_statistics(self, metric: str, layer: str) -> dict[str, torch.Tensor]:
        """The statistics ``metric`` (fid or sfid) compares with; a reference batch without them is refused."""
        if self.batch is not None:
            self.batch.require(metric)
        return self.statistics[layer]


def image_batches(backbone: Any, x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """``backbone.to_images`` of ``x`` in batches (decoding latents where the backbone needs to)."""
    for chunk in x.split(batch_size):
        yield backbone.to_images(chunk)


def features_of(extractor: Any, backbone: Any, x: torch.Tensor, batch_size: int, device: str
                ) -> dict[str, torch.Tensor]:
    """Every feature of the images of ``x`` (``extract_features`` of ``image_batches``), on the CPU; under
    torchrun each rank extracts its batches and all gather them (the same features)."""
    chunks = x.split(batch_size)

    def batch(b: int) -> dict[str, torch.Tensor]:
        return extract_features(extractor, [backbone.to_images(chunks[b])], device)

    parts = world().map_batch_dicts(batch, len(chunks))
    return {key: torch.cat([part[key].cpu() for part in parts]) for key in (parts[0] if parts else {})}


def reference_key(backbone: Any, extractor: str, weights_digest: str, n: int) -> dict[str, Any]:
    return {"data": data_identity(backbone), "extractor": extractor, "extractor_weights": weights_digest,
            "reference_samples": n, "seed": REFERENCE_SEED}


def reference_set(backbone: Any, *, extractor_name: str, extractor: Any, weights_digest: str, n: int,
                  frechet_layers: tuple[str, ...], batch_size: int, device: str, cache_dir: Path) -> ReferenceSet:
    """The cached reference of ``backbone``'s data for ``extractor``, computed on the first call only."""
    key = reference_key(backbone, extractor_name, weights_digest, n)
    path = Path(cache_dir) / CACHE_SUBDIR / f"{spec_hash(key)}.pt"
    if world().decide(path.is_file):
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored["key"] == canonical_json(key) and set(frechet_layers) <= set(stored["statistics"]):
            return ReferenceSet(stored["statistics"], path, lambda: stored["features"])
    x0, _ = backbone.sample_data(n, torch.Generator().manual_seed(REFERENCE_SEED))
    features = features_of(extractor, backbone, x0, batch_size, device)
    statistics = {layer: frechet_statistics(features[layer]) for layer in frechet_layers}
    if not world().main:  # rank 0 writes the cache
        return ReferenceSet(statistics, path, lambda: features)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save({"key": canonical_json(key), "features": features, "statistics": statistics}, partial)
    os.replace(partial, path)
    return ReferenceSet(statistics, path, lambda: features)
