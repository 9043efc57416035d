"""``sit``: SiT-S/B/L/XL (patch 2) on SD-VAE latents, loading public SiT and REPA checkpoints.

Time and sign conventions.  The project integrates ``x_t = (1 - t) x0 + t eps`` from
t = 1 (noise) to t = 0 (data) and wants ``v = dx/dt = eps - x0``.  Checkpoints come from
two code bases whose networks mean different things:

- ``"repa"`` (REPA's ``train.py`` with ``--path-type=linear --prediction=v``, the paper's
  SiT-XL/2 + REPA): the network is trained on ``x_t = (1 - t) x0 + t eps`` with target
  ``eps - x0`` -- the project's own convention, so ``v(x, t) = net(x, t, y)``.  Its head
  has 4 output channels (no learned variance), and its files hold REPA's projector heads
  ``projectors.*`` (only its training loss uses them; they are ignored here).
- ``"sit"`` (the original SiT code base, willisma/SiT, Linear path): time ``s = 1 - t`` runs
  from noise (s = 0) to data (s = 1) with target ``x0 - eps``, so
  ``v(x, t) = -net(x, 1 - t, y)[:, :4]``.  Its checkpoints keep DiT's learned-variance head
  (8 output channels); the velocity is the first 4.

How the convention is chosen.  ``convention: auto`` (the default) reads it from the file:
an 8-channel head (``final_layer.linear`` with 8 x patch^2 outputs) and no ``projectors.*``
means ``sit``; ``projectors.*`` keys with a 4-channel head mean ``repa``.  A 4-channel head
without projectors fits both code bases (a stripped REPA file, or SiT trained with
``learn_sigma=False``), so ``auto`` refuses it and asks for ``convention: repa`` or
``convention: sit``.  An explicit convention is checked against the same evidence: every
combination that would give a wrong velocity (``repa`` on an 8-channel head, ``sit`` on a
file with projectors, a file holding both) is refused with one line naming the file, what
it holds and what to set.  So is a file whose stored training ``args`` name another path
than the linear one or another prediction than the velocity.  With ``random_weights``,
``auto`` means ``repa``.  The head's width always comes from the file; ``learn_sigma`` is
an optional check (``true``: an 8-channel head, which only ``sit`` has) that must agree
with the file, and with random weights it picks the head of a ``sit`` network.  The
identity (cache keys) records the convention actually used and the head, so an auto-
detected and an explicit choice of the same convention share results.

Labels 0-999; the null label 1000 (the extra row of the label table) is the
unconditional branch, also used when ``y`` is None.  Weights come from ``checkpoint``
(a plain state dict, or one under "ema"/"model" -- "ema" first -- with or without a
"module." prefix), or ``random_weights: true`` (for throughput runs and tests).
``to_images`` decodes latents with the AutoencoderKL saved in the local folder ``vae``.
Nothing is ever downloaded.

Data.  With ``data`` (an ImageFolder: one subfolder of images per class, class index =
sorted subfolder order, so ImageNet's 1000 synset folders give labels 0-999) the backbone
draws data (``sample_data``) for the image metrics' reference statistics, the distribution
metrics and the BA-solver's SideNet chains: the images center-cropped as ADM does, encoded
once by the ``vae`` (posterior sample x 0.18215) and cached as latent shards under
``latent_cache`` (default ``results/.cache/sit_latents``, read from the working directory);
see ``backbones/sit/latents.py``.  ``data_identity()`` names the folder's and the VAE's
digests and the resolution, and ``identity()`` carries it (a SideNet trained on data is kept
apart from one trained without).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from backbones.checkpoints import CheckpointError, extract_state_dict, fit_state_dict, read_checkpoint
from backbones.class_labels import labels_or_null
from backbones.sit.sizes import SIT_SIZES
from backbones.sit.transformer import SiTTransformer
from backbones.sit.latents import ImageFolderLatents
from backbones.sit.vae import DOWNSAMPLING, check_vae_folder, decode_latents
from solverbench import Backbone, register_backbone
from solverbench.hashing import file_sha256

LATENT_CHANNELS = 4
NUM_CLASSES = 1000
PROJECTOR_PREFIX = "projectors."  # REPA's representation-alignment heads: in its files, never used here
HEAD_KEY = "final_layer.linear.weight"
CONVENTIONS = ("auto", "repa", "sit")
# resolved convention -> (network time is 1 - t, sign of the velocity)
VELOCITY_MAPS = {"repa": (False, 1.0), "sit": (True, -1.0)}
CODE_BASES = {
    "repa": "REPA's code base (train.py --path-type=linear --prediction=v: v = net(x, t, y))",
    "sit": "the original SiT code base (willisma/SiT, Linear path: v = -net(x, 1 - t, y)[:, :4])",
}


@dataclass(frozen=True)
class FileLayout:
    """What a checkpoint says about the code base that wrote it."""

    head_channels: Optional[int]  # output channels of the final layer; None: no head of this patch size
    has_projectors: bool  # REPA's projectors.* keys

    @property
    def learned_variance(self) -> bool:
        return self.head_channels == 2 * LATENT_CHANNELS

    @property
    def convention(self) -> Optional[str]:
        """The convention the file proves, or None when it fits both (or neither)."""
        if self.head_channels == 2 * LATENT_CHANNELS and not self.has_projectors:
            return "sit"
        if self.head_channels == LATENT_CHANNELS and self.has_projectors:
            return "repa"
        return None

    def describe(self) -> str:
        head = ("an 8-channel learned-variance head" if self.learned_variance else
                f"a {self.head_channels}-channel head")
        if self.convention == "sit":
            return f"{head} and no projectors.* keys, as {CODE_BASES['sit']} writes"
        if self.convention == "repa":
            return f"REPA's projectors.* keys and {head}, as {CODE_BASES['repa']} writes"
        if self.has_projectors:
            return f"{head} and REPA's projectors.* keys, which no known code base writes together"
        return f"{head} and no projectors.* keys, which both code bases can write"


def file_layout(state: Mapping[str, torch.Tensor], patch_size: int) -> FileLayout:
    weight = state.get(HEAD_KEY)
    outputs = patch_size * patch_size
    channels = None
    if weight is not None and weight.dim() == 2 and weight.shape[0] % outputs == 0:
        channels = weight.shape[0] // outputs
        if channels not in (LATENT_CHANNELS, 2 * LATENT_CHANNELS):
            channels = None
    return FileLayout(channels, any(k.startswith(PROJECTOR_PREFIX) for k in state))


def resolve_convention(convention: str, learn_sigma: Optional[bool], layout: FileLayout, path: Path) -> str:
    """The convention to load ``path`` with, or a CheckpointError for any choice that would
    give a wrong velocity (one line: the file, what it holds, what to set)."""
    where = f"sit checkpoint file {str(path)!r} holds {layout.describe()}"
    found = layout.convention
    if layout.learned_variance and layout.has_projectors:
        raise CheckpointError(f"{where}; neither convention: sit nor convention: repa is known to give its "
                              "velocity, so it is refused")
    if convention == "auto":
        if found is None:
            raise CheckpointError(f"{where}, so the convention cannot be read from it: set convention: repa "
                                  f"for {CODE_BASES['repa']} or convention: sit for {CODE_BASES['sit']}")
        convention = found
    elif found is not None and found != convention:
        raise CheckpointError(f"{where}; convention: {convention} would give a wrong velocity: "
                              f"set convention: {found} (or convention: auto, the default)")
    if learn_sigma is not None and learn_sigma != layout.learned_variance:
        raise CheckpointError(f"{where}, but learn_sigma: {str(learn_sigma).lower()} asks for "
                              f"{'an 8-channel' if learn_sigma else 'a 4-channel'} head: leave learn_sigma out "
                              f"(the head is read from the file) and keep convention: {convention}")
    return convention


def check_training_args(stored: Any, path: Path) -> None:
    """Refuse a file whose stored training ``args`` (SiT's and REPA's train.py keep them) name
    another path than the linear one, or another prediction than the velocity."""
    args = stored.get("args") if isinstance(stored, Mapping) else None
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, Mapping):
        return
    path_type, prediction = args.get("path_type"), args.get("prediction")
    if path_type is not None and str(path_type).lower() != "linear":
        problem = f"path_type {path_type!r}"
    elif prediction is not None and str(prediction).lower() not in ("v", "velocity"):
        problem = f"prediction {prediction!r}"
    else:
        return
    raise CheckpointError(f"sit checkpoint file {str(path)!r} was trained with {problem} (its stored args); "
                          "convention: repa and convention: sit both mean the linear path with velocity "
                          "prediction, so its velocity would be wrong")


@register_backbone("sit")
class SiTBackbone(Backbone):
    """SiT-S/B/L/XL on SD-VAE latents (SiT/REPA checkpoints); 1000 classes, null label 1000."""

    path_params = ("checkpoint", "vae", "data")

    num_classes = NUM_CLASSES
    null_label = NUM_CLASSES
    default_feature_extractor = "inception-tf"

    def __init__(self, size: str = "XL", resolution: int = 256, patch_size: int = 2,
                 checkpoint: Optional[str | Path] = None, weights_key: Optional[str] = None,
                 random_weights: bool = False, seed: int = 0, convention: str = "auto",
                 learn_sigma: Optional[bool] = None, vae: Optional[str | Path] = None,
                 data: Optional[str | Path] = None, latent_cache: Optional[str | Path] = None):
        super().__init__()
        if size not in SIT_SIZES:
            raise ValueError(f"unknown SiT size {size!r}; known sizes: {', '.join(SIT_SIZES)}")
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown SiT convention {convention!r}; known: {', '.join(CONVENTIONS)} "
                             f"(auto reads it from the checkpoint; repa: {CODE_BASES['repa']}; "
                             f"sit: {CODE_BASES['sit']})")
        if learn_sigma is not None and not isinstance(learn_sigma, bool):
            raise ValueError(f"learn_sigma must be true or false (or left out: it is read from the checkpoint), "
                             f"not {learn_sigma!r}")
        if resolution % (DOWNSAMPLING * patch_size):
            raise ValueError(f"resolution {resolution} is not a multiple of {DOWNSAMPLING * patch_size} "
                             f"(VAE downsampling {DOWNSAMPLING} x patch size {patch_size})")
        if (checkpoint is None) == (not random_weights):
            raise ValueError("sit needs its weights: give checkpoint=PATH (a SiT/REPA checkpoint) "
                             "or random_weights=true (throughput runs and tests), not both")
        if vae is not None:
            check_vae_folder(vae, LATENT_CHANNELS)
        if data is None and latent_cache is not None:
            raise ValueError("sit: latent_cache names where the latents of a data folder are kept; give data=FOLDER "
                             "(an ImageFolder) with it, or leave latent_cache out")
        if data is not None and vae is None:
            raise ValueError(f"sit: data folder {str(data)!r} is encoded into latents by the SD-VAE: give vae=FOLDER "
                             "(a local AutoencoderKL folder, e.g. stabilityai/sd-vae-ft-ema) with it")
        data_source = None if data is None else ImageFolderLatents(data, vae, resolution, latent_cache)
        if checkpoint is not None:
            path = Path(checkpoint)
            stored = read_checkpoint(path)
            state = extract_state_dict(stored, path, key=weights_key)
            check_training_args(stored, path)
            layout = file_layout(state, patch_size)
            if layout.head_channels is None:  # no head a SiT of this patch size has: fit_state_dict says why
                learned_variance = False
                convention = "repa" if convention == "auto" else convention
            else:
                convention = resolve_convention(convention, learn_sigma, layout, path)
                learned_variance = layout.learned_variance
        else:
            if convention == "auto":
                convention = "repa"  # the project's own convention
            if convention == "repa" and learn_sigma:
                raise ValueError("sit: learn_sigma: true asks for a learned-variance head, which REPA's SiT does not "
                                 "have (random weights with convention: auto mean convention: repa); "
                                 "set convention: sit for the original SiT code base's head")
            learned_variance = convention == "sit" if learn_sigma is None else learn_sigma
        self.flip_time, self.sign = VELOCITY_MAPS[convention]
        self.learn_sigma = learned_variance
        latent = resolution // DOWNSAMPLING
        self.sample_shape = (LATENT_CHANNELS, latent, latent)
        with torch.device("meta"):  # shapes only: every tensor is filled below, from the file or at random
            net = SiTTransformer(SIT_SIZES[size], input_size=latent, patch_size=patch_size, in_channels=LATENT_CHANNELS,
                                 out_channels=LATENT_CHANNELS * (2 if learned_variance else 1), num_classes=NUM_CLASSES)
        self.net = net.to_empty(device="cpu")
        self.settings = {"size": size, "resolution": resolution, "patch_size": patch_size, "convention": convention,
                         "learn_sigma": learned_variance}
        if checkpoint is not None:
            hint = (f"The model expects SiT-{size}/{patch_size} at {resolution}x{resolution} px (latents "
                    f"{latent}x{latent}) with a {LATENT_CHANNELS}- or {2 * LATENT_CHANNELS}-channel head "
                    f"({LATENT_CHANNELS * patch_size ** 2} or {2 * LATENT_CHANNELS * patch_size ** 2} outputs of "
                    "final_layer.linear); check size, resolution and patch_size")
            fit_state_dict(self.net, state, path, ignore_prefixes=(PROJECTOR_PREFIX,), hint=hint)
            self.weights = {"checkpoint_sha256": file_sha256(path), "weights_key": weights_key}
        else:
            self.net.randomize(torch.Generator().manual_seed(int(seed)))
            self.weights = {"random_weights_seed": int(seed)}
        self.net.eval().requires_grad_(False)
        self.vae = None if vae is None else str(vae)
        self.data = data_source

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = labels_or_null(y, x.shape[0], self.null_label, x.device, "SiT")
        t = t.to(x)
        out = self.net(x, 1 - t if self.flip_time else t, y)[:, :LATENT_CHANNELS]
        return self.sign * out

    def identity(self) -> dict[str, Any]:
        data = {} if self.data is None else {"data": self.data.identity()}
        return {"class": "sit", **self.settings, **self.weights, **data}

    @property
    def has_data(self) -> bool:
        return self.data is not None

    def data_identity(self) -> dict[str, Any]:
        """The data ``sample_data`` draws: the folder's and VAE's digests, the resolution, the recipe."""
        return self.identity() if self.data is None else self.data.identity()

    def sample_data(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
        """``n`` cached latents of the data folder (on the backbone's device) and their labels (CPU):
        uniformly, or each of its given label's class; distinct while the folder (the class) has images
        left.  The first call encodes what the cache lacks, on the backbone's device."""
        if self.data is None:
            raise ValueError("sit draws data only with data=FOLDER (an ImageFolder, encoded by the vae)")
        device = next(self.net.parameters()).device
        self.data.encode(device)
        index = self.data.draw_indices(n, generator, labels)
        return self.data.read(index).to(device), self.data.labels[index]

    def to_images(self, samples: torch.Tensor) -> torch.Tensor:
        """Latents (N, 4, h, w) -> uint8 RGB images (N, 3, 8h, 8w), decoded by the VAE in ``vae``."""
        if self.vae is None:
            raise ValueError("sit makes images only with vae=FOLDER: a local folder holding diffusers' "
                             "AutoencoderKL (save_pretrained), e.g. stabilityai/sd-vae-ft-ema")
        return decode_latents(self.vae, samples)
