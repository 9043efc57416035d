"""What an image metric compares in one cell: the samples' features and the cached reference.

The first image metric of a cell extracts the features of its samples (every feature the
extractor gives, in one pass) and loads or builds the reference (the backbone's data, or an
ADM reference batch: ``reference_batch``); the others reuse them through
``MetricContext.extras``.  The sweep puts there the grid's ``metric_options``, its cache
directory and the grid file's folder (``extras["metric_options"]``, ``extras["cache_dir"]``,
``extras["grid_dir"]``), and may ask for the samples' images as they are made
(``extras["sample_images"]``: called with each uint8 batch, in sample order; its export).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from solverbench.backbone import data_identity, has_data
from solverbench.hashing import canonical_json
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.metrics.image.adm_npz import BatchFileError
from solverbench.metrics.image.extractors import (
    build_extractor,
    declared_dims,
    declared_layers,
    extract_features,
    metric_layers,
    weights_digest,
)
from solverbench.metrics.image.options import ImageMetricOptions, parse_image_options, weights_file
from solverbench.metrics.image.reference import ReferenceSet, features_of, image_batches, reference_set
from solverbench.metrics.image.reference_batch import batch_path, batch_reference, floor_draw, open_reference_batch

FRECHET_METRICS = ("fid", "sfid")


@dataclass
class CellFeatures:
    samples: dict[str, torch.Tensor]
    reference: ReferenceSet
    options: ImageMetricOptions
    extractor: str
    extract: Callable[[torch.Tensor], dict[str, torch.Tensor]]  # data samples -> every feature of their images

    def floor(self, ctx: MetricContext, metric: str, layer: str,
              measure: Callable[[torch.Tensor, Optional[torch.Tensor]], dict[str, float]],
              against_reference_images: bool = False) -> dict[str, float]:
        """``measure(features, strata)`` of a fresh data draw of the cell's size and labels in place of
        the samples (the metric's data-versus-data value): drawn and measured once per run.

        With a reference batch the draw is images of the batch (unstratified; ``reference_batch``
        says when there is none: {} then, as for a metric that compares with those images)."""
        n = len(ctx.samples)
        if self.reference.batch is not None:
            if against_reference_images:
                return {}
            draw = (self.reference.batch.digest, ctx.seed, n, self.extractor, self.options)
            idx = ctx.memoised(("image batch floor draw", *draw), lambda: floor_draw(self.reference, n, ctx.seed))
            if idx is None:
                return {}
            return ctx.memoised(("image batch floor", metric, layer, ctx.resamples, *draw),
                                lambda: measure(self.reference.features[layer][idx], None))
        labels = None if ctx.labels is None else ctx.labels.tolist()
        draw = (canonical_json(data_identity(ctx.backbone)), ctx.seed, n, canonical_json(labels),
                self.extractor, self.options)
        data = ctx.memoised(("image data features", *draw), lambda: self.extract(ctx.data(n)[0]))
        return ctx.memoised(("image floor", metric, layer, ctx.resamples, *draw),
                            lambda: measure(data[layer], ctx.labels))


def extractor_name(ctx: MetricContext, options: ImageMetricOptions) -> str:
    name = options.feature_extractor or getattr(ctx.backbone, "default_feature_extractor", None)
    if name is None:
        raise ValueError(f"no feature extractor for the image metrics: {type(ctx.backbone).__name__} names no "
                         "default_feature_extractor; set metric_options: {feature_extractor: NAME} in the grid")
    return name


NO_DATA = ("the backbone cannot draw data samples for the reference statistics; name an ADM reference batch "
           "instead (metric_options: {reference_batch: FILE.npz})")
METRIC_KEYS = {"fid": "fid", "sfid": "sfid", "kid": "kid", "precision_recall": "prc", "inception_score": "isc"}


def image_metrics_apply(backbone: Any, guidance: Any = None) -> Optional[str]:
    """Why the image metrics have no meaning for ``backbone``, or None (whether it has data to compare
    with depends on the metric options: ``check_image_grid``)."""
    if not callable(getattr(backbone, "to_images", None)):
        return "the backbone does not make images (no to_images)"
    return None


def check_image_grid(grid: Any) -> None:
    """Refuse (ValueError, one line) before any work what a grid's image metrics cannot compute: a
    reference batch that is no ADM batch, lacks what the grid's metrics compare with or has statistics of
    another dimension than the extractor's features; or, without one, backbones that have no data."""
    options = parse_image_options(grid.metric_options or {})
    keys = [METRIC_KEYS[m] for m in grid.metrics if m in METRIC_KEYS]
    weights = weights_file(options, grid.base)
    if weights is not None and not Path(weights).is_file():
        raise ValueError(f"metric option feature_extractor_weights_path: {weights} is not an existing file "
                         "(relative paths are read next to the grid file)")
    makers = [spec.instance for spec in grid.backbones if image_metrics_apply(spec.instance) is None]
    if options.reference_batch is None:
        if makers and not any(has_data(b) for b in makers):
            names = ", ".join(m for m in grid.metrics if m in METRIC_KEYS)
            raise ValueError(f"no cell of this grid can compute {names}: {NO_DATA}")
        return
    try:
        batch = open_reference_batch(batch_path(options.reference_batch, grid.base), [k for k in keys if k != "isc"])
        for backbone in makers:
            name = options.feature_extractor or getattr(backbone, "default_feature_extractor", None)
            layers, dims = (declared_layers(name), declared_dims(name)) if name else (None, None)
            for key in keys:
                if key in FRECHET_METRICS and layers and dims and layers.get(key) in dims:
                    batch.check_dimension(key, dims[layers[key]], name)
    except BatchFileError as err:
        raise ValueError(f"metric option reference_batch: {err}") from None


def image_option_files(options: dict[str, Any], grid_dir: Optional[Path]) -> dict[str, Path]:
    """The files the image metric options name whose bytes define a cell's numbers: the reference batch
    and the extractor's weights file (the sweep puts their SHA-256 in the cell's id)."""
    parsed = parse_image_options(options or {})
    files = {} if parsed.reference_batch is None else {"reference_batch": batch_path(parsed.reference_batch, grid_dir)}
    weights = weights_file(parsed, grid_dir)
    return files if weights is None else {**files, "feature_extractor_weights_path": Path(weights)}


def cell_features(ctx: MetricContext, metric: str) -> tuple[str, CellFeatures]:
    """The feature ``metric`` uses and the cell's features; NotApplicable where there are none."""
    why = image_metrics_apply(ctx.backbone)
    if why:
        raise NotApplicable(why)
    if ctx.extras.get("cache_dir") is None:
        raise ValueError("image metrics need MetricContext.extras['cache_dir'] for their reference statistics "
                         "(a sweep sets results/.cache)")
    options = parse_image_options(ctx.extras.get("metric_options") or {})
    if options.reference_batch is None and not has_data(ctx.backbone):
        raise NotApplicable(NO_DATA)
    name = extractor_name(ctx, options)
    layer = metric_layers(name, weights_file(options, ctx.extras.get("grid_dir")), str(ctx.samples.device)).get(metric)
    if layer is None:
        raise NotApplicable(f"feature extractor {name!r} gives no features for {metric}"
                            + (" (it has no classifier head)" if metric == "isc" else ""))
    memo = ctx.extras.setdefault("image_features", {})
    if (name, options) not in memo:
        memo[name, options] = _extract(ctx, name, options, Path(ctx.extras["cache_dir"]))
    return layer, memo[name, options]


def _extract(ctx: MetricContext, name: str, options: ImageMetricOptions, cache_dir: Path) -> CellFeatures:
    device = str(ctx.samples.device)
    weights = weights_file(options, ctx.extras.get("grid_dir"))
    extractor = build_extractor(name, weights, device)
    batch = options.feature_batch_size

    def extract(x: torch.Tensor) -> dict[str, Any]:
        return features_of(extractor, ctx.backbone, x.to(device), batch, device)

    def sample_images() -> Iterator[torch.Tensor]:  # handed to the sweep's export as they are made, too
        sink = ctx.extras.get("sample_images")
        for images in image_batches(ctx.backbone, ctx.samples.to(device), batch):
            if sink is not None:
                sink(images)
            yield images

    if ctx.extras.get("sample_images") is None:  # split across torchrun's ranks
        samples = features_of(extractor, ctx.backbone, ctx.samples.to(device), batch, device)
    else:  # every image made here, in order, for the export
        samples = extract_features(extractor, sample_images(), device)
    layers = metric_layers(name, weights, device)
    digest = weights_digest(name, weights, device)
    if options.reference_batch is not None:
        reference = batch_reference(
            open_reference_batch(batch_path(options.reference_batch, ctx.extras.get("grid_dir"))),
            metric_layers=layers, extractor_name=name, extractor=extractor, weights_digest=digest, batch_size=batch,
            device=device, cache_dir=cache_dir)
    else:
        frechet_layers = tuple(dict.fromkeys(layers[m] for m in FRECHET_METRICS if m in layers))
        reference = reference_set(
            ctx.backbone, extractor_name=name, extractor=extractor, weights_digest=digest,
            n=options.reference_samples, frechet_layers=frechet_layers, batch_size=batch, device=device,
            cache_dir=cache_dir,
        )
    return CellFeatures(samples, reference, options, name, extract)
