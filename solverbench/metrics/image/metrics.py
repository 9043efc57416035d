"""FID, sFID, KID, precision/recall and Inception Score of a cell's images, through torch-fidelity.

Each compares the features of the cell's samples (``backbone.to_images``) with the cached
reference features of the backbone's data, both from the grid's feature extractor (metric
option ``feature_extractor``, else the backbone's ``default_feature_extractor``).  FID and
sFID use the backend named by the metric option ``backend`` (torch-fidelity or clean-fid);
KID, precision/recall and IS are torch-fidelity's.

Every value has its 95% interval (``solverbench.uncertainty``): FID, sFID, KID and IS from
the spread of the metric over bootstrap draws of the cell's samples, the reference held
fixed (a KID draw averages 10 subsets instead of ``kid_subsets``, which widens the interval
a little); precision from the binomial standard error over the samples, recall over the
reference points (a bootstrap draw's repeated samples would have k-NN radius 0).  Each also
has its data-versus-data value ``<metric>_floor``: the metric for a fresh draw of as many
data images, with the cell's labels, in place of the samples.

With the metric option ``reference_batch`` (an ADM evaluation reference batch) the reference
is the batch instead: its stored statistics for FID and sFID, its images' features for KID
and precision/recall; ``reference_batch`` says which floors it gives.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from solverbench.metrics.context import MetricContext
from solverbench.metrics.image.cell_features import (
    CellFeatures,
    cell_features,
    check_image_grid,
    image_metrics_apply,
    image_option_files,
)
from solverbench.metrics.image.frechet import frechet_distance, frechet_distance_resampled
from solverbench.metrics.image.options import OPTIONS, parse_image_options
from solverbench.registry import register_metric
from solverbench.uncertainty import OPTIONS as UNCERTAINTY_OPTIONS
from solverbench.uncertainty import bootstrap_replicates, interval_from_replicates, normal_interval, with_interval

PRC_NEIGHBORHOOD = 3  # k of the k-NN manifolds (Kynkaanniemi et al. 2019; ADM's evaluator)
KID_SUBSET_SIZE = 1000
KID_SUBSETS_PER_DRAW = 10  # subsets averaged in each bootstrap draw of KID


def image_metric(name: str) -> Callable:
    """Register an image metric that reads the grid's image ``metric_options`` (checked with the grid)."""
    def register(fn: Callable) -> Callable:
        fn.options = {**OPTIONS, **UNCERTAINTY_OPTIONS}
        fn.check_options = parse_image_options
        fn.applies = image_metrics_apply
        fn.check_grid = check_image_grid
        fn.files = image_option_files
        return register_metric(name)(fn)
    return register


def _measured(ctx: MetricContext, column: str, value: Callable[[torch.Tensor], float], features: torch.Tensor,
              resampled: Callable[[torch.Tensor], Callable[[torch.Tensor], float]],
              strata: Optional[torch.Tensor], nonnegative: bool = False) -> dict[str, float]:
    estimate = value(features)
    replicates = bootstrap_replicates(resampled(features), len(features), seed=ctx.seed, name=column,
                                      resamples=ctx.resamples, strata=strata, memo=ctx.memo)
    if not column.endswith("_floor"):  # the cell's own value, not the data-versus-data floor
        ctx.keep("bootstrap", column, replicates)
    return with_interval(column, estimate, interval_from_replicates(estimate, replicates, nonnegative))


Measure = Callable[[torch.Tensor, Optional[str], Optional[torch.Tensor]], dict[str, float]]


def _with_floor(ctx: MetricContext, features: CellFeatures, metric: str, layer: str, measure: Measure,
                against_reference_images: bool = False) -> dict[str, float]:
    """``measure(features, suffix, strata)`` of the samples' features (stratified by the cell's labels),
    and of a data draw's (suffix "floor")."""
    floor = features.floor(ctx, metric, layer, lambda data, strata: measure(data, "floor", strata),
                           against_reference_images)
    return {**measure(features.samples[layer], None, ctx.labels), **floor}


def _frechet(ctx: MetricContext, metric: str) -> dict[str, float]:
    layer, features = cell_features(ctx, metric)
    reference = features.reference.frechet_statistics(metric, layer)
    dim, theirs = features.samples[layer].shape[1], len(reference["mu"])
    if dim != theirs:
        raise ValueError(f"{metric}: the reference statistics ({features.reference.path}) are {theirs}-D but the "
                         f"{metric} features of feature extractor {features.extractor!r} are {dim}-D")

    def measure(x: torch.Tensor, suffix: Optional[str], strata: Optional[torch.Tensor]) -> dict[str, float]:
        return _measured(ctx, metric + (f"_{suffix}" if suffix else ""),
                         lambda f: frechet_distance(f, reference, features.options.backend), x,
                         lambda f: frechet_distance_resampled(f, reference), strata, nonnegative=True)

    return _with_floor(ctx, features, metric, layer, measure)


@image_metric("fid")
def fid(ctx: MetricContext) -> dict[str, float]:
    """Frechet Inception Distance (Heusel et al. 2017) on the extractor's FID features."""
    return _frechet(ctx, "fid")


@image_metric("sfid")
def sfid(ctx: MetricContext) -> dict[str, float]:
    """Spatial FID (Nash et al. 2021): FID on Inception's first 7 mixed_6/conv channels, 17x17."""
    return _frechet(ctx, "sfid")


@image_metric("kid")
def kid(ctx: MetricContext) -> dict[str, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2, cubic kernel, over random subsets."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    layer, features = cell_features(ctx, "kid")
    theirs, options = features.reference.features[layer], features.options

    def kid_of(mine: torch.Tensor, subsets: int) -> dict[str, float]:
        subset = options.kid_subset_size or min(KID_SUBSET_SIZE, len(mine), len(theirs))
        return kid_features_to_metric(mine, theirs, kid_subsets=subsets, kid_subset_size=subset, verbose=False)

    def measure(x: torch.Tensor, suffix: Optional[str], strata: Optional[torch.Tensor]) -> dict[str, float]:
        out = _measured(ctx, "kid" + (f"_{suffix}" if suffix else ""),
                        lambda f: kid_of(f, options.kid_subsets)[KEY_METRIC_KID_MEAN], x,
                        lambda f: lambda idx: kid_of(f[idx], KID_SUBSETS_PER_DRAW)[KEY_METRIC_KID_MEAN], strata)
        if suffix is None:
            out["kid_std"] = kid_of(x, options.kid_subsets)[KEY_METRIC_KID_STD]
        return out

    return _with_floor(ctx, features, "kid", layer, measure, against_reference_images=True)


def _proportion(column: str, p: float, n: int) -> dict[str, float]:
    """A fraction of n independent yes/no outcomes, with its binomial interval."""
    return with_interval(column, p, normal_interval(p, (p * (1 - p) / max(n - 1, 1)) ** 0.5))


@image_metric("precision_recall")
def precision_recall(ctx: MetricContext) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k = 3 nearest-neighbour manifolds."""
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    layer, features = cell_features(ctx, "prc")
    theirs = features.reference.features[layer]

    def measure(x: torch.Tensor, suffix: Optional[str], strata: Optional[torch.Tensor]) -> dict[str, float]:
        out = prc_features_to_metric(x, theirs, prc_neighborhood=PRC_NEIGHBORHOOD, verbose=False)
        end = f"_{suffix}" if suffix else ""
        return {**_proportion(f"precision{end}", out[KEY_METRIC_PRECISION], len(x)),
                **_proportion(f"recall{end}", out[KEY_METRIC_RECALL], len(theirs))}

    return _with_floor(ctx, features, "precision_recall", layer, measure, against_reference_images=True)


@image_metric("inception_score")
def inception_score(ctx: MetricContext) -> dict[str, float]:
    """Inception Score (Salimans et al. 2016) from the extractor's classifier logits, 10 splits."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    layer, features = cell_features(ctx, "isc")

    def measure(x: torch.Tensor, suffix: Optional[str], strata: Optional[torch.Tensor]) -> dict[str, float]:
        column = "inception_score" + (f"_{suffix}" if suffix else "")
        out = _measured(ctx, column, lambda f: isc_features_to_metric(f)[KEY_METRIC_ISC_MEAN], x,
                        lambda f: lambda idx: isc_features_to_metric(f[idx])[KEY_METRIC_ISC_MEAN], strata)
        if suffix is None:
            out["inception_score_std"] = isc_features_to_metric(x)[KEY_METRIC_ISC_STD]
        return out

    return _with_floor(ctx, features, "inception_score", layer, measure)
