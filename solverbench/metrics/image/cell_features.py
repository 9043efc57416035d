"""What an image metric compares in one cell: the samples' features and the cached reference.

The first image metric of a cell extracts the features of its samples (every feature the
extractor gives, in one pass) and loads or builds the reference; the others reuse them
through ``MetricContext.extras``.  The sweep puts the grid's ``metric_options`` and its
cache directory there (``extras["metric_options"]``, ``extras["cache_dir"]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from solverbench.backbone import data_identity, has_data
from solverbench.hashing import canonical_json
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
    extractor: str
    extract: Callable[[torch.Tensor], dict[str, torch.Tensor]]  # data samples -> every feature of their images

    def floor(self, ctx: MetricContext, metric: str, layer: str,
              measure: Callable[[torch.Tensor], dict[str, float]]) -> dict[str, float]:
        """``measure`` of the features of a fresh data draw of the cell's size and labels in place of
        the samples (the metric's data-versus-data value): drawn and measured once per run."""
        labels = None if ctx.labels is None else ctx.labels.tolist()
        draw = (canonical_json(data_identity(ctx.backbone)), ctx.seed, len(ctx.samples), canonical_json(labels),
                self.extractor, self.options)
        data = ctx.memoised(("image data features", *draw), lambda: self.extract(ctx.data(len(ctx.samples))[0]))
        return ctx.memoised(("image floor", metric, layer, ctx.resamples, *draw), lambda: measure(data[layer]))


def extractor_name(ctx: MetricContext, options: ImageMetricOptions) -> str:
    name = options.feature_extractor or getattr(ctx.backbone, "default_feature_extractor", None)
    if name is None:
        raise ValueError(f"no feature extractor for the image metrics: {type(ctx.backbone).__name__} names no "
                         "default_feature_extractor; set metric_options: {feature_extractor: NAME} in the grid")
    return name


def image_metrics_apply(backbone: Any, guidance: Any = None) -> Optional[str]:
    """Why the image metrics have no meaning for ``backbone``, or None."""
    if not callable(getattr(backbone, "to_images", None)):
        return "the backbone does not make images (no to_images)"
    if not has_data(backbone):
        return "the backbone cannot draw data samples for the reference statistics"
    return None


def cell_features(ctx: MetricContext, metric: str) -> tuple[str, CellFeatures]:
    """The feature ``metric`` uses and the cell's features; NotApplicable where there are none."""
    why = image_metrics_apply(ctx.backbone)
    if why:
        raise NotApplicable(why)
    if ctx.extras.get("cache_dir") is None:
        raise ValueError("image metrics need MetricContext.extras['cache_dir'] for their reference statistics "
                         "(a sweep sets results/.cache)")
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

    def extract(x: torch.Tensor) -> dict[str, Any]:
        return extract_features(extractor, image_batches(ctx.backbone, x.to(device), batch), device)

    samples = extract(ctx.samples)
    layers = metric_layers(name, weights, device)
    frechet_layers = tuple(dict.fromkeys(layers[m] for m in FRECHET_METRICS if m in layers))
    reference = reference_set(
        ctx.backbone, extractor_name=name, extractor=extractor, weights_digest=weights_digest(name, weights, device),
        n=options.reference_samples, frechet_layers=frechet_layers, batch_size=batch, device=device,
        cache_dir=cache_dir,
    )
    return CellFeatures(samples, reference, options, name, extract)
