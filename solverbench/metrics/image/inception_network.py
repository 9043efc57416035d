"""The TF-compatible InceptionV3 of FID (graph ``inception-2015-12-05``), with ADM's sFID tap.

Built from torch-fidelity's TF-compatible blocks, with torch-fidelity's parameter names, so
a torch-fidelity Inception weights file loads as it is.  One forward pass gives

- ``2048``: the ``pool_3`` features of FID / KID / precision-recall;
- ``spatial_7x17x17``: sFID's features (Nash et al. 2021, as ADM's evaluator takes them):
  the first 7 channels of ``Mixed_6d.branch1x1`` (``mixed_6/conv`` in the TF graph), 17 x 17,
  flattened in TensorFlow's (H, W, C) order -> 2023 values;
- ``logits_unbiased``: the classifier's logits without bias, for the Inception Score, where
  the network has its classifier head (torch-fidelity's convention).

torch-fidelity (and with it torchvision, seconds to import) is imported when a network is
built, not when this module is.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

POOL_FEATURES = "2048"
SPATIAL_FEATURES = "spatial_7x17x17"
LOGITS = "logits_unbiased"
SPATIAL_CHANNELS = 7
INPUT_SIZE = 299
NUM_CLASSES = 1008  # the 2015-12-05 graph's classifier (1000 ImageNet classes + 8 unused)

# the blocks before the sFID tap (input of Mixed_6d) and after it, in order
_BEFORE_MIXED_6D = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                    "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                    "Mixed_6b", "Mixed_6c")
_FROM_MIXED_6D = ("Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


class InceptionV3Features(nn.Module):
    """uint8 images (N, 3 or 1, H, W) -> {feature name: (N, D) float32}; grayscale is repeated to RGB."""

    def __init__(self, with_classifier: bool):
        from torch_fidelity.feature_extractor_inceptionv3 import (
            BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE_1, InceptionE_2,
        )

        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE_1(1280)
        self.Mixed_7c = InceptionE_2(2048)
        self.fc = nn.Linear(2048, NUM_CLASSES) if with_classifier else None
        self.requires_grad_(False)
        self.eval()

    def load_checked(self, state: dict[str, torch.Tensor], source: str) -> "InceptionV3Features":
        """Load ``state`` strictly; a mismatch names ``source`` and the first offending keys."""
        expected = self.state_dict()
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in expected]
        reshaped = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in state.items()
                    if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
        if missing or unexpected or reshaped:
            raise ValueError(f"{source} does not match torch-fidelity's InceptionV3"
                             f"{'' if self.fc is not None else ' without classifier head'}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}, wrong shapes {reshaped[:5]}")
        self.load_state_dict(state, strict=False)
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Inception expects uint8 images (N, 3 or 1, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        x = images.expand(-1, 3, -1, -1).float()
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INPUT_SIZE, INPUT_SIZE), align_corners=False)
        x = (x - 128) / 128
        for name in _BEFORE_MIXED_6D:
            x = getattr(self, name)(x)
        spatial = self.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS]  # (N, 7, 17, 17)
        for name in _FROM_MIXED_6D:
            x = getattr(self, name)(x)
        pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
        out = {POOL_FEATURES: pool, SPATIAL_FEATURES: spatial.permute(0, 2, 3, 1).flatten(1)}
        if self.fc is not None:
            out[LOGITS] = pool @ self.fc.weight.T
        return out


# metric -> feature name, the layout the feature-extractor contract asks for
METRIC_LAYERS = {"fid": POOL_FEATURES, "kid": POOL_FEATURES, "prc": POOL_FEATURES, "sfid": SPATIAL_FEATURES}
METRIC_LAYERS_WITH_CLASSIFIER = {**METRIC_LAYERS, "isc": LOGITS}
# feature name -> its dimension (checked against a reference batch's statistics while the grid is read)
FEATURE_DIMS = {POOL_FEATURES: 2048, SPATIAL_FEATURES: SPATIAL_CHANNELS * 17 * 17}
FEATURE_DIMS_WITH_CLASSIFIER = {**FEATURE_DIMS, LOGITS: NUM_CLASSES}
