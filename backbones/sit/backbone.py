"""``sit``: SiT-S/B/L/XL (patch 2) on SD-VAE latents, loading public SiT and REPA checkpoints.

Time and sign conventions.  The project integrates ``x_t = (1 - t) x0 + t eps`` from
t = 1 (noise) to t = 0 (data) and wants ``v = dx/dt = eps - x0``.  Checkpoints come in two
conventions, chosen with ``convention``:

- ``"repa"`` (default; REPA's ``train.py`` with ``--path-type=linear --prediction=v``, the
  paper's SiT-XL/2 + REPA): the network is trained on ``x_t = (1 - t) x0 + t eps`` with
  target ``eps - x0`` -- the project's own convention, so ``v(x, t) = net(x, t, y)``.
  Its output has 4 channels (REPA's SiT has no learned variance).
- ``"sit"`` (the original SiT code base, willisma/SiT, Linear path): time ``s = 1 - t`` runs
  from noise (s = 0) to data (s = 1) with target ``x0 - eps``, so
  ``v(x, t) = -net(x, 1 - t, y)``.  Those checkpoints keep DiT's learned-variance head
  (8 output channels); the velocity is the first 4 (``learn_sigma``).

Labels 0-999; the null label 1000 (the extra row of the label table) is the
unconditional branch, also used when ``y`` is None.  Weights come from ``checkpoint``
(a plain state dict, or one under "ema"/"model" -- "ema" first -- with or without a
"module." prefix; REPA's ``projectors.*`` heads are ignored), or ``random_weights: true``
(for throughput runs and tests).  ``to_images`` decodes latents with the AutoencoderKL
saved in the local folder ``vae``.  Nothing is ever downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from backbones.checkpoints import extract_state_dict, fit_state_dict, read_checkpoint
from backbones.class_labels import labels_or_null
from backbones.sit.sizes import SIT_SIZES
from backbones.sit.transformer import SiTTransformer
from backbones.sit.vae import DOWNSAMPLING, decode_latents
from solverbench import Backbone, register_backbone
from solverbench.hashing import file_sha256

LATENT_CHANNELS = 4
NUM_CLASSES = 1000
IGNORED_PREFIXES = ("projectors.",)  # REPA's representation-alignment heads
# convention -> (network time is 1 - t, sign of the velocity, learned-variance head by default)
CONVENTIONS = {"repa": (False, 1.0, False), "sit": (True, -1.0, True)}


@register_backbone("sit")
class SiTBackbone(Backbone):
    """SiT-S/B/L/XL on SD-VAE latents (SiT/REPA checkpoints); 1000 classes, null label 1000."""

    path_params = ("checkpoint", "vae")

    num_classes = NUM_CLASSES
    null_label = NUM_CLASSES
    default_feature_extractor = "inception-tf"

    def __init__(self, size: str = "XL", resolution: int = 256, patch_size: int = 2,
                 checkpoint: Optional[str | Path] = None, weights_key: Optional[str] = None,
                 random_weights: bool = False, seed: int = 0, convention: str = "repa",
                 learn_sigma: Optional[bool] = None, vae: Optional[str | Path] = None):
        super().__init__()
        if size not in SIT_SIZES:
            raise ValueError(f"unknown SiT size {size!r}; known sizes: {', '.join(SIT_SIZES)}")
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown SiT convention {convention!r}; known: {', '.join(CONVENTIONS)}")
        if resolution % (DOWNSAMPLING * patch_size):
            raise ValueError(f"resolution {resolution} is not a multiple of {DOWNSAMPLING * patch_size} "
                             f"(VAE downsampling {DOWNSAMPLING} x patch size {patch_size})")
        if (checkpoint is None) == (not random_weights):
            raise ValueError("sit needs its weights: give checkpoint=PATH (a SiT/REPA checkpoint) "
                             "or random_weights=true (throughput runs and tests), not both")
        self.flip_time, self.sign, default_learn_sigma = CONVENTIONS[convention]
        self.learn_sigma = default_learn_sigma if learn_sigma is None else bool(learn_sigma)
        latent = resolution // DOWNSAMPLING
        self.sample_shape = (LATENT_CHANNELS, latent, latent)
        with torch.device("meta"):  # shapes only: every tensor is filled below, from the file or at random
            net = SiTTransformer(SIT_SIZES[size], input_size=latent, patch_size=patch_size, in_channels=LATENT_CHANNELS,
                                 out_channels=LATENT_CHANNELS * (2 if self.learn_sigma else 1), num_classes=NUM_CLASSES)
        self.net = net.to_empty(device="cpu")
        self.settings = {"size": size, "resolution": resolution, "patch_size": patch_size, "convention": convention,
                         "learn_sigma": self.learn_sigma}
        if checkpoint is not None:
            path = Path(checkpoint)
            hint = (f"The model expects SiT-{size}/{patch_size} at {resolution}x{resolution} px (latents "
                    f"{latent}x{latent}) with {self.net.out_channels} output channels "
                    f"(learn_sigma={self.learn_sigma}); "
                    "check size, resolution, patch_size and learn_sigma")
            fit_state_dict(self.net, extract_state_dict(read_checkpoint(path), path, key=weights_key), path,
                           ignore_prefixes=IGNORED_PREFIXES, hint=hint)
            self.weights = {"checkpoint_sha256": file_sha256(path), "weights_key": weights_key}
        else:
            self.net.randomize(torch.Generator().manual_seed(int(seed)))
            self.weights = {"random_weights_seed": int(seed)}
        self.net.eval().requires_grad_(False)
        self.vae = None if vae is None else str(vae)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = labels_or_null(y, x.shape[0], self.null_label, x.device, "SiT")
        t = t.to(x)
        out = self.net(x, 1 - t if self.flip_time else t, y)[:, :LATENT_CHANNELS]
        return self.sign * out

    def identity(self) -> dict[str, Any]:
        return {"class": "sit", **self.settings, **self.weights}

    def to_images(self, samples: torch.Tensor) -> torch.Tensor:
        """Latents (N, 4, h, w) -> uint8 RGB images (N, 3, 8h, 8w), decoded by the VAE in ``vae``."""
        if self.vae is None:
            raise ValueError("sit makes images only with vae=FOLDER: a local folder holding diffusers' "
                             "AutoencoderKL (save_pretrained), e.g. stabilityai/sd-vae-ft-ema")
        return decode_latents(self.vae, samples)
