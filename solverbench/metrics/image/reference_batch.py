"""An ADM reference batch as the image metrics' reference (metric option ``reference_batch``).

OpenAI's ADM evaluator compares a sample batch with a reference batch (``adm_npz``); so do the
image metrics where the grid names one, through the grid's feature extractor (``inception-tf``
is the TF-Inception network whose features the batch's statistics were computed with):

- FID and sFID: the samples' features against the batch's stored statistics, ``mu``, ``sigma``
  and ``mu_s``, ``sigma_s`` (ADM's: over the whole data set);
- KID and precision/recall (k = 3): against the features of its images ``arr_0``, extracted on
  first use and cached under ``<cache dir>/image_reference/``, keyed by the file's SHA-256 and
  the extractor's weights (a cache file that cannot be used is moved aside, named in one line,
  and extracted again: ``solverbench.cache_entry``; under torchrun rank 0 mends and writes it).

Intervals are unchanged: the bootstrap over the cell's samples, the reference held fixed.
The noise floor (``<metric>_floor``: a data draw of the cell's size in place of the samples)
comes from the batch's own images, where they can stand for such a draw:

- FID, sFID (and IS): as many images of ``arr_0`` as the cell has samples (drawn without
  replacement, seeded by the cell's seed) against the stored statistics; none where ``arr_0``
  has fewer images than the cell has samples (a smaller draw would overstate the floor: FID's
  bias grows as 1/n), or where the statistics are those of ``arr_0`` itself (the draw would be
  part of the set it is compared with; seen as ``arr_0``'s mean matching ``mu`` to within a
  tenth of its sampling error);
- KID, precision/recall: none, since they compare with ``arr_0`` itself and the file holds no
  other data images to stand in for the samples.

A relative path is read next to the grid file (the sweep gives the metrics its folder), else
from the current directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from solverbench.cache_entry import UnfitEntry, load_tensors, read_entry, save_atomically
from solverbench.distributed import world
from solverbench.hashing import canonical_json, file_sha256, spec_hash
from solverbench.metrics.image.adm_npz import (
    IMAGES,
    STATISTICS,
    ArrayInfo,
    BatchFileError,
    image_layout,
    npz_arrays,
    read_array,
    read_images,
)
from solverbench.metrics.image.extractors import extract_features
from solverbench.metrics.image.options import grid_relative
from solverbench.metrics.image.reference import CACHE_SUBDIR, ReferenceSet
from solverbench.noise import data_generator

FRECHET_METRICS = tuple(STATISTICS)
IMAGE_METRICS = ("kid", "prc")  # compare with the features of the batch's images
OWN_STATISTICS_TOLERANCE = 0.1  # arr_0's mean within this many sampling errors of mu: mu is arr_0's own


def batch_path(value: str, grid_dir: Optional[Path]) -> Path:
    """The reference batch a metric option names: a relative path is read next to the grid file."""
    return grid_relative(value, grid_dir)


@dataclass(frozen=True)
class ReferenceBatch:
    path: Path
    arrays: dict[str, ArrayInfo]

    @property
    def num_images(self) -> int:
        return self.arrays[IMAGES].shape[0] if IMAGES in self.arrays else 0

    @property
    def digest(self) -> str:
        return file_sha256(self.path)

    def listing(self) -> str:
        return ", ".join(self.arrays) or "none"

    def require(self, metric: str) -> None:
        """Refuse, naming the file and what it holds, a batch without what ``metric`` compares with
        (a metric key of the extractor contract: fid, sfid, kid, prc, isc)."""
        if metric in STATISTICS:
            missing = [key for key in STATISTICS[metric] if key not in self.arrays]
            if missing:
                raise BatchFileError(
                    f"reference batch {self.path} has no {', '.join(missing)} (its arrays: {self.listing()}); "
                    f"{metric} compares with the statistics an ADM reference batch stores: mu, sigma (fid) and "
                    "mu_s, sigma_s (sfid)")
            mu, sigma = (self.arrays[key] for key in STATISTICS[metric])
            if len(mu.shape) != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
                raise BatchFileError(f"reference batch {self.path}: {STATISTICS[metric][0]} {mu.shape} and "
                                     f"{STATISTICS[metric][1]} {sigma.shape} are not a mean (D,) and a covariance "
                                     "(D, D)")
        if metric in IMAGE_METRICS and IMAGES not in self.arrays:
            raise BatchFileError(f"reference batch {self.path} has no {IMAGES} images (its arrays: {self.listing()}); "
                                 f"{'precision_recall' if metric == 'prc' else metric} compares with the features "
                                 "of its images")

    def check_dimension(self, metric: str, dim: int, extractor: str) -> None:
        """Refuse statistics whose dimension is not that of the extractor's ``metric`` features."""
        mu_key = STATISTICS[metric][0]
        have = self.arrays[mu_key].shape[0]
        if have != dim:
            raise BatchFileError(
                f"reference batch {self.path}: its {metric} statistics ({mu_key}, ...) are {have}-D but the {metric} "
                f"features of feature extractor {extractor!r} are {dim}-D (an ADM reference batch holds "
                "TF-Inception statistics: feature_extractor: inception-tf)")

    def statistics(self) -> dict[str, dict[str, torch.Tensor]]:
        """metric (fid, sfid) -> {"mu", "sigma"} in float64, for those the file holds."""
        return {metric: {name: torch.from_numpy(read_array(self.path, key).astype(np.float64))
                         for name, key in zip(("mu", "sigma"), keys)}
                for metric, keys in STATISTICS.items() if all(key in self.arrays for key in keys)}


def open_reference_batch(path: Path, metrics: Iterable[str] = ()) -> ReferenceBatch:
    """The batch at ``path``, checked for what ``metrics`` (extractor metric keys) compare with."""
    batch = ReferenceBatch(Path(path), npz_arrays(path))
    if IMAGES in batch.arrays:
        image_layout(batch.path, batch.arrays[IMAGES])
    for metric in metrics:
        batch.require(metric)
    return batch


def batch_reference(batch: ReferenceBatch, *, metric_layers: dict[str, str], extractor_name: str, extractor: Any,
                    weights_digest: str, batch_size: int, device: str, cache_dir: Path) -> ReferenceSet:
    """The batch as a ``ReferenceSet``: its statistics under the extractor's feature names now, its
    images' features (cached on disk) when first used."""
    statistics = {}
    for metric, stats in batch.statistics().items():
        layer = metric_layers.get(metric)
        if layer is None:
            continue
        if layer in statistics:
            raise ValueError(f"feature extractor {extractor_name!r} gives fid and sfid the same feature {layer!r}; "
                             "a reference batch has other statistics for each")
        statistics[layer] = stats

    def load_features() -> dict[str, torch.Tensor]:
        batch.require("prc")  # images needed
        key = {"reference_batch_sha256": batch.digest, "extractor": extractor_name,
               "extractor_weights": weights_digest}
        path = Path(cache_dir) / CACHE_SUBDIR / f"{spec_hash(key)}.pt"
        stored = read_entry(path, "cached reference batch features", lambda p: read_features(p, key),
                            mend=world().main)
        if stored is not None:
            return stored
        features = extract_features(extractor, read_images(batch.path, batch_size), device)
        if world().main:  # rank 0 writes the cache
            save_atomically({"key": canonical_json(key), "features": features}, path)
        return features

    return ReferenceSet(statistics, batch.path, load_features, batch=batch)


def read_features(path: Path, key: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The features a reference batch's cache file holds, checked: written for ``key``."""
    stored = load_tensors(path, ("key", "features"))
    if stored["key"] != canonical_json(key):
        raise UnfitEntry("was written for another reference batch or extractor than its name says (stored key "
                         "differs)")
    features = stored["features"]
    if not (isinstance(features, dict) and all(isinstance(v, torch.Tensor) for v in features.values())):
        raise UnfitEntry("holds no features by feature name")
    return features


def own_statistics(reference: ReferenceSet) -> bool:
    """Whether the batch's statistics are those of its images ``arr_0``: their mean within a tenth of its
    sampling error (``sqrt(diag(sigma) / N)``) of ``mu`` (RMS over features), in every stored statistic."""
    for layer, stats in reference.statistics.items():
        x = reference.features[layer].double()
        error = (stats["sigma"].diagonal().clamp_min(1e-30) / len(x)).sqrt()
        z = (x.mean(dim=0) - stats["mu"]) / error
        if float(z.pow(2).mean().sqrt()) < OWN_STATISTICS_TOLERANCE:
            return True
    return False


def floor_draw(reference: ReferenceSet, n: int, seed: int) -> Optional[torch.Tensor]:
    """Indices of ``n`` images of ``arr_0`` standing in for a data draw of the cell's size (seeded by the
    cell's seed), or None where the batch cannot give one (see the module's docstring)."""
    if reference.batch.num_images < n or own_statistics(reference):
        return None
    order = torch.randperm(reference.batch.num_images, generator=data_generator(seed, 1))
    return order[:n].sort().values
