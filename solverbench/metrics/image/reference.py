"""Reference features and FID statistics of a backbone's data, cached on disk and reused.

The reference set is ``backbone.sample_data(n, generator seeded with REFERENCE_SEED)``,
turned into images by ``backbone.to_images``.  Its features (every feature the extractor
gives) and the Frechet statistics (mean, covariance) of the features FID and sFID use are
stored under ``<cache dir>/image_reference/`` keyed by the data's identity (the backbone's
``data_identity()``: every checkpoint of a data set shares it), the extractor (name and a
digest of its weights) and ``n``; an entry that cannot be used (torn, foreign, of another key) is
moved aside, named in one line and computed again (``solverbench.cache_entry``), and one that
lacks the statistics of a feature gets them from its stored features.  Under torchrun the ranks
split the reference images' batches, and rank 0 alone reads, mends and writes the cache.
(Where the grid names an ADM reference batch instead, it is the reference: ``reference_batch``.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from solverbench.backbone import data_identity
from solverbench.cache_entry import UnfitEntry, load_tensors, read_shared_entry, save_atomically
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
    ranks = world()
    stored = read_shared_entry(path, "cached image reference", lambda p: read_reference(p, key, frechet_layers))
    if stored is not None:
        if ranks.main and stored.get("added"):  # statistics of more features, from the stored features
            save_atomically({"key": canonical_json(key), "features": stored["features"],
                             "statistics": stored["statistics"]}, path)
        return ReferenceSet(stored["statistics"], path, lambda: stored["features"])
    x0, _ = backbone.sample_data(n, torch.Generator().manual_seed(REFERENCE_SEED))
    features = features_of(extractor, backbone, x0, batch_size, device)
    statistics = {layer: frechet_statistics(features[layer]) for layer in frechet_layers}
    if ranks.main:  # rank 0 writes the cache
        save_atomically({"key": canonical_json(key), "features": features, "statistics": statistics}, path)
    return ReferenceSet(statistics, path, lambda: features)


def read_reference(path: Path, key: dict[str, Any], frechet_layers: tuple[str, ...]) -> dict[str, Any]:
    """A reference cache file, checked: written for ``key``, with features of every layer in
    ``frechet_layers``; statistics it lacks are computed from its features (``added`` says so)."""
    stored = load_tensors(path, ("key", "features", "statistics"))
    if stored["key"] != canonical_json(key):
        raise UnfitEntry("was written for another reference than its name says (stored key differs)")
    features, statistics = stored["features"], stored["statistics"]
    if not (isinstance(features, dict) and isinstance(statistics, dict)
            and all(isinstance(v, torch.Tensor) for v in features.values())):
        raise UnfitEntry("holds no features and statistics by feature name")
    missing = [layer for layer in frechet_layers if layer not in statistics]
    unknown = [layer for layer in missing if layer not in features]
    if unknown:
        raise UnfitEntry(f"has no features {', '.join(map(repr, unknown))}")
    for layer in missing:
        statistics[layer] = frechet_statistics(features[layer])
    return {"features": features, "statistics": statistics, "added": bool(missing)}
