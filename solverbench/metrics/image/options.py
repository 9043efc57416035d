"""The grid's ``metric_options`` that image metrics read, parsed and checked before any work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from solverbench.metrics.image.frechet import BACKENDS
from solverbench.registry import FEATURE_EXTRACTORS

OPTIONS = {
    "feature_extractor": "registered feature extractor for the image metrics (default: the backbone's "
                         "default_feature_extractor)",
    "feature_extractor_weights_path": "weights file of extractors that take one (inception-file); a relative path "
                                      "is read next to the grid file",
    "backend": "whose Frechet-distance math gives fid and sfid: torch-fidelity (default) or clean-fid",
    "reference_samples": "data samples behind the reference statistics (default 10000)",
    "reference_batch": "an ADM evaluation reference batch (.npz with mu, sigma, mu_s, sigma_s and arr_0 images) to "
                       "compare with instead of the backbone's data; a relative path is read next to the grid file",
    "feature_batch_size": "images per feature-extractor batch (default 250; does not change results)",
    "kid_subsets": "KID: number of random subsets (default 100)",
    "kid_subset_size": "KID: subset size (default min(1000, samples, reference samples))",
}


@dataclass(frozen=True)
class ImageMetricOptions:
    feature_extractor: Optional[str] = None
    feature_extractor_weights_path: Optional[str] = None
    backend: str = "torch-fidelity"
    reference_samples: int = 10000
    reference_batch: Optional[str] = None  # as written; solverbench.metrics.image.reference_batch resolves it
    feature_batch_size: int = 250
    kid_subsets: int = 100
    kid_subset_size: Optional[int] = None


def grid_relative(value: str, grid_dir: Optional[Path]) -> Path:
    """A file a metric option names: a relative path is read next to the grid file (``grid_dir``; the
    working directory outside a grid)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(grid_dir if grid_dir is not None else Path.cwd()) / path


def weights_file(options: ImageMetricOptions, grid_dir: Optional[Path]) -> Optional[str]:
    """The extractor's weights file the options name, resolved (None where they name none)."""
    if options.feature_extractor_weights_path is None:
        return None
    return str(grid_relative(options.feature_extractor_weights_path, grid_dir))


def _positive_int(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"metric option {key}: bad value {value!r}; allowed: a positive integer")
    return value


def parse_image_options(options: dict[str, Any]) -> ImageMetricOptions:
    """The image-metric keys of ``options`` (others belong to other metrics), checked."""
    mine = {k: v for k, v in options.items() if k in OPTIONS}
    extractor = mine.get("feature_extractor")
    if extractor is not None and extractor not in FEATURE_EXTRACTORS:
        raise ValueError(f"metric option feature_extractor: unknown {extractor!r}; known feature extractors: "
                         + ", ".join(FEATURE_EXTRACTORS.names()))
    weights = mine.get("feature_extractor_weights_path")
    if weights is not None and not (isinstance(weights, str) and weights.strip()):
        raise ValueError(f"metric option feature_extractor_weights_path: bad value {weights!r}; allowed: the path "
                         "of a weights file")
    if mine.get("backend", "torch-fidelity") not in BACKENDS:
        raise ValueError(f"metric option backend: bad value {mine['backend']!r}; allowed: {', '.join(BACKENDS)}")
    batch = mine.get("reference_batch")
    if batch is not None and not (isinstance(batch, str) and batch.strip()):
        raise ValueError(f"metric option reference_batch: bad value {batch!r}; allowed: the path of an ADM reference "
                         "batch (.npz)")
    if batch is not None and "reference_samples" in mine:
        raise ValueError("metric options reference_samples and reference_batch: the reference is the batch's, so "
                         "reference_samples has no use; give one of them")
    for key in ("reference_samples", "feature_batch_size", "kid_subsets", "kid_subset_size"):
        if mine.get(key) is not None:
            _positive_int(key, mine[key])
    return ImageMetricOptions(**mine)
