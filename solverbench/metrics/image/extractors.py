"""The feature-extractor contract, and its registration with torch-fidelity.

A feature extractor is a factory registered with ``@register_feature_extractor(name)``.
``factory()`` (``factory(weights_path=PATH)`` where the grid sets the metric option
``feature_extractor_weights_path``) returns an ``nn.Module`` taking uint8 images
``(N, C, H, W)``, in one of two forms:

- plain: ``module(images) -> (N, D)`` features, used by FID, KID and precision/recall; a
  ``module.logits(images) -> (N, K)`` classifier head gives the Inception Score too;
- named: ``module(images) -> {feature name: (N, D)}``, and the factory declares
  ``metric_layers``, the feature each metric uses (keys among fid, kid, prc, isc, sfid).

A factory may also declare ``feature_dims`` (feature name -> dimension): a reference batch's
statistics are then checked against them while the grid is read, not only once features exist.
A metric the extractor has no feature for is not applicable with it.  Each extractor is
registered with torch-fidelity under its name (as a ``FeatureExtractorBase``), built
through it here, and usable in ``torch_fidelity.calculate_metrics(feature_extractor=name)``.
"""
from __future__ import annotations

import hashlib
import inspect
from functools import lru_cache
from typing import Any, Iterable, Optional

import torch
from torch import nn

from solverbench.registry import FEATURE_EXTRACTORS

METRIC_KEYS = ("fid", "kid", "prc", "isc", "sfid")
PLAIN_FEATURES, PLAIN_LOGITS = "features", "logits"


class PlainExtractor(nn.Module):
    """A plain-form extractor in the named form: ``{"features": module(x), "logits": module.logits(x)}``."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.has_classifier = callable(getattr(network, "logits", None))
        self.metric_layers = {"fid": PLAIN_FEATURES, "kid": PLAIN_FEATURES, "prc": PLAIN_FEATURES,
                              **({"isc": PLAIN_LOGITS} if self.has_classifier else {})}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {PLAIN_FEATURES: self.network(images)}
        if self.has_classifier:
            features[PLAIN_LOGITS] = self.network.logits(images)
        return features


def declared_layers(name: str) -> Optional[dict[str, str]]:
    """The ``metric_layers`` the factory of extractor ``name`` declares (named form), else None."""
    factory = FEATURE_EXTRACTORS.get(name)
    layers = getattr(factory, "metric_layers", None)
    if layers is not None and not (isinstance(layers, dict) and layers and set(layers) <= set(METRIC_KEYS)):
        raise TypeError(f"feature extractor {name!r}: metric_layers must map metrics among "
                        f"{', '.join(METRIC_KEYS)} to feature names, got {layers!r}")
    return None if layers is None else dict(layers)


def declared_dims(name: str) -> Optional[dict[str, int]]:
    """The ``feature_dims`` the factory of extractor ``name`` declares, else None."""
    dims = getattr(FEATURE_EXTRACTORS.get(name), "feature_dims", None)
    return None if dims is None else dict(dims)


def named_network(name: str, weights_path: Optional[str]) -> tuple[nn.Module, dict[str, str]]:
    """Extractor ``name`` built by its factory, in the named form, with the feature of each metric."""
    factory = FEATURE_EXTRACTORS.get(name)
    if weights_path is not None and "weights_path" not in inspect.signature(factory).parameters:
        raise ValueError(f"feature extractor {name!r} takes no weights file, but the metric option "
                         f"feature_extractor_weights_path names {weights_path!r}")
    network = factory() if weights_path is None else factory(weights_path=weights_path)
    if not isinstance(network, nn.Module):
        raise TypeError(f"feature extractor {name!r}: its factory returned a {type(network).__name__}, "
                        "not a torch.nn.Module")
    layers = declared_layers(name)
    if layers is None:
        network = PlainExtractor(network)
        layers = network.metric_layers
    return network.eval(), layers


@lru_cache(maxsize=None)
def torch_fidelity_class(name: str, layer_items: tuple[tuple[str, str], ...]) -> type:
    """Extractor ``name`` as a torch-fidelity ``FeatureExtractorBase``, registered there once."""
    from torch_fidelity import FeatureExtractorBase, register_feature_extractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    layers = dict(layer_items)
    provided = tuple(dict.fromkeys(layers.values()))

    class Extractor(FeatureExtractorBase):
        def __init__(self, name: str, features_list, feature_extractor_weights_path: Optional[str] = None,
                     network: Optional[nn.Module] = None, **_):
            super().__init__(name, features_list)
            self.network = network if network is not None else named_network(name, feature_extractor_weights_path)[0]

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features = self.network(images)
            return tuple(features[f].float() for f in self.features_list)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return provided

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return layers[metric]

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            raise NotImplementedError("solverbench's feature extractors are not compiled")

    Extractor.__name__ = Extractor.__qualname__ = f"SolverbenchExtractor[{name}]"
    if name in FEATURE_EXTRACTORS_REGISTRY:
        raise ValueError(f"torch-fidelity already has a feature extractor named {name!r} "
                         f"({FEATURE_EXTRACTORS_REGISTRY[name].__qualname__}); register solverbench's under another")
    register_feature_extractor(name, Extractor)
    return Extractor


@lru_cache(maxsize=4)
def build_extractor(name: str, weights_path: Optional[str], device: str) -> Any:
    """Extractor ``name`` with all its features, created by torch-fidelity, on ``device``; reused."""
    from torch_fidelity.utils import create_feature_extractor

    network, layers = named_network(name, weights_path)
    provided = torch_fidelity_class(name, tuple(sorted(layers.items()))).get_provided_features_list()
    extractor = create_feature_extractor(name, list(provided), cuda=False, verbose=False, network=network)
    extractor.metric_layers = layers
    return extractor.to(device)


def metric_layers(name: str, weights_path: Optional[str], device: str) -> dict[str, str]:
    """The feature each metric uses; a plain-form extractor is built (and kept) to see if it classifies."""
    declared = declared_layers(name)
    return declared if declared is not None else build_extractor(name, weights_path, device).metric_layers


@lru_cache(maxsize=4)
def weights_digest(name: str, weights_path: Optional[str], device: str) -> str:
    """SHA-256 of the extractor's parameters and buffers: reference caches follow its weights."""
    digest = hashlib.sha256()
    for key, value in build_extractor(name, weights_path, device).state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.inference_mode()
def extract_features(extractor: Any, batches: Iterable[torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    """All features of ``extractor`` for the uint8 image batches, concatenated on the CPU."""
    chunks: dict[str, list[torch.Tensor]] = {}
    for images in batches:
        features = extractor.convert_features_tuple_to_dict(extractor(images.to(device)))
        for key, value in features.items():
            chunks.setdefault(key, []).append(value.cpu())
    return {key: torch.cat(values) for key, values in chunks.items()}
