"""What an image metric compares in one cell: the samples' features and the cached reference.

The first image metric of a cell extracts the features of its samples (every feature the
extractor gives, in one pass) and loads or builds the reference; the others reuse them
through ``MetricContext.extras``.  The runner puts the grid's ``metric_options`` and its
cache directory there (``extras["metric_options"]``, ``extras["cache_dir"]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from solverbench.backbone import has_data
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.metrics.image.extractors import build_extractor, extract_features, metric_layers, weights_digest
from solverbench.metrics.image.options import ImageMetricOptions, parse_image_options
from solverbench.metrics.image.reference import ReferenceSet, image_batches, reference_set

FRECHET_METRICS = ("fid", "sfid")


@dataclass
class CellFeatures:
    samples: dict[str, torch.Tensor]
    reference: ReferenceSet
    options: ImageMetricOptions


def extractor_name(ctx: MetricContext, options: ImageMetricOptions) -> str:
    name = options.feature_extractor or getattr(ctx.backbone, "default_feature_extractor", None)
    if name is None:
        raise ValueError(f"no feature extractor for the image metrics: {type(ctx.backbone).__name__} names no "
                         "default_feature_extractor; set metric_options: {feature_extractor: NAME} in the grid")
    return name


def cell_features(ctx: MetricContext, metric: str) -> tuple[str, CellFeatures]:
    """The feature ``metric`` uses and the cell's features; NotApplicable where there are none."""
    backbone = ctx.backbone
    if not callable(getattr(backbone, "to_images", None)):
        raise NotApplicable("the backbone does not make images (no to_images)")
    if not has_data(backbone):
        raise NotApplicable("the backbone cannot draw data samples for the reference statistics")
    if ctx.extras.get("cache_dir") is None:
        raise ValueError("image metrics need MetricContext.extras['cache_dir'] for their reference statistics "
                         "(the runner sets results/.cache)")
    options = parse_image_options(ctx.extras.get("metric_options") or {})
    name = extractor_name(ctx, options)
    layer = metric_layers(name, options.feature_extractor_weights_path, str(ctx.samples.device)).get(metric)
    if layer is None:
        raise NotApplicable(f"feature extractor {name!r} gives no features for {metric}"
                            + (" (it has no classifier head)" if metric == "isc" else ""))
    memo = ctx.extras.setdefault("image_features", {})
    if (name, options) not in memo:
        memo[name, options] = _extract(ctx, name, options, Path(ctx.extras["cache_dir"]))
    return layer, memo[name, options]


def _extract(ctx: MetricContext, name: str, options: ImageMetricOptions, cache_dir: Path) -> CellFeatures:
    device = str(ctx.samples.device)
    weights = options.feature_extractor_weights_path
    extractor = build_extractor(name, weights, device)
    batch = options.feature_batch_size
    samples = extract_features(extractor, image_batches(ctx.backbone, ctx.samples, batch), device)
    layers = metric_layers(name, weights, device)
    frechet_layers = tuple(dict.fromkeys(layers[m] for m in FRECHET_METRICS if m in layers))
    reference = reference_set(
        ctx.backbone, extractor_name=name, extractor=extractor, weights_digest=weights_digest(name, weights, device),
        n=options.reference_samples, frechet_layers=frechet_layers, batch_size=batch, device=device,
        cache_dir=cache_dir,
    )
    return CellFeatures(samples, reference, options)
