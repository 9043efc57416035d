"""FID, sFID, KID, precision/recall and Inception Score of a cell's images, through torch-fidelity.

Each compares the features of the cell's samples (``backbone.to_images``) with the cached
reference features of the backbone's data, both from the grid's feature extractor (metric
option ``feature_extractor``, else the backbone's ``default_feature_extractor``).  FID and
sFID use the backend named by the metric option ``backend`` (torch-fidelity or clean-fid);
KID, precision/recall and IS are torch-fidelity's.
"""
from __future__ import annotations

from typing import Callable

from solverbench.metrics.context import MetricContext
from solverbench.metrics.image.cell_features import cell_features
from solverbench.metrics.image.frechet import frechet_distance
from solverbench.metrics.image.options import OPTIONS, parse_image_options
from solverbench.registry import register_metric

PRC_NEIGHBORHOOD = 3  # k of the k-NN manifolds (Kynkaanniemi et al. 2019; ADM's evaluator)
KID_SUBSET_SIZE = 1000


def image_metric(name: str) -> Callable:
    """Register an image metric that reads the grid's image ``metric_options`` (checked with the grid)."""
    def register(fn: Callable) -> Callable:
        fn.options = OPTIONS
        fn.check_options = parse_image_options
        return register_metric(name)(fn)
    return register


def _frechet(ctx: MetricContext, metric: str) -> dict[str, float]:
    layer, features = cell_features(ctx, metric)
    distance = frechet_distance(features.samples[layer], features.reference.statistics[layer], features.options.backend)
    return {metric: distance}


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
    mine, theirs = features.samples[layer], features.reference.features[layer]
    options = features.options
    subset = options.kid_subset_size or min(KID_SUBSET_SIZE, len(mine), len(theirs))
    out = kid_features_to_metric(mine, theirs, kid_subsets=options.kid_subsets, kid_subset_size=subset, verbose=False)
    return {"kid": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD]}


@image_metric("precision_recall")
def precision_recall(ctx: MetricContext) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k = 3 nearest-neighbour manifolds."""
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    layer, features = cell_features(ctx, "prc")
    out = prc_features_to_metric(features.samples[layer], features.reference.features[layer],
                                 prc_neighborhood=PRC_NEIGHBORHOOD, verbose=False)
    return {"precision": out[KEY_METRIC_PRECISION], "recall": out[KEY_METRIC_RECALL]}


@image_metric("inception_score")
def inception_score(ctx: MetricContext) -> dict[str, float]:
    """Inception Score (Salimans et al. 2016) from the extractor's classifier logits, 10 splits."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    layer, features = cell_features(ctx, "isc")
    out = isc_features_to_metric(features.samples[layer])
    return {"inception_score": out[KEY_METRIC_ISC_MEAN], "inception_score_std": out[KEY_METRIC_ISC_STD]}
