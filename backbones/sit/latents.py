"""An ImageFolder's SD-VAE latents, encoded once and cached on disk as shards; drawn by class.

Each image is center-cropped as ADM does (``imagefolder.center_crop``), encoded by the
AutoencoderKL in the ``vae`` folder and stored as one posterior sample times 0.18215
(``vae.encode_posterior``).  The sample's noise comes from the image's index and a fixed
seed (``solverbench.noise.sample_generator``), never from the batch or the device, so the
cache is reproducible and a resumed encoding writes what an unbroken one would.

On disk: ``<cache root>/<hash of the key>/`` holds ``manifest.json`` (the key, the class
names, the number of images and the shard size) and ``shard-00000.npy``, ... : the float32
latents (S, 4, r/8, r/8) of images ``k S .. (k + 1) S - 1`` in the listing's order (by class,
as torchvision's ImageFolder orders them).  The key is the data's identity (the folder's
digest: class names and every image's relative path, size and modification time; the VAE's
digest: its config and weights; the resolution; the crop; the scale; the posterior seed),
the format and the shard size.  A shard is written to a temporary file and renamed, so a
shard file is always whole: a killed encoding resumes at the first missing shard, and two
processes encoding at once only repeat each other's work.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from solverbench.progress import progress_bar

from backbones.sit.imagefolder import ImageListing, check_layout, list_images, load_center_crop
from backbones.sit.vae import DOWNSAMPLING, LATENT_SCALE, encode_posterior, load_vae, vae_digest
from solverbench.hashing import spec_hash
from solverbench.noise import sample_generator

FORMAT = 1
SHARD_SIZE = 1024  # images per shard file (16 MiB of latents at 256 px)
ENCODE_BATCH = 32  # images per VAE call
POSTERIOR_SEED = 0
POSTERIOR_STREAM = 7  # a stream of solverbench.noise's per-index generators no run draws from
LATENT_CHANNELS = 4
DEFAULT_CACHE = Path("results") / ".cache" / "sit_latents"


def posterior_noise(indices: range, shape: tuple[int, ...]) -> torch.Tensor:
    """The standard normal draw of each image's posterior sample, from its index alone."""
    return torch.stack([torch.randn(shape, generator=sample_generator(POSTERIOR_SEED, i, POSTERIOR_STREAM))
                        for i in indices])


def distinct_draws(size: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` indices into ``range(size)``: random permutations one after another, so no index
    repeats before all ``size`` have been drawn."""
    rounds = max(-(-n // size), 1)
    return torch.cat([torch.randperm(size, generator=generator) for _ in range(rounds)])[:n]


class ImageFolderLatents:
    """The latents of the ImageFolder ``folder`` under the VAE in ``vae`` at ``resolution`` px."""

    def __init__(self, folder: str | Path, vae: str | Path, resolution: int, cache_root: str | Path | None = None,
                 shard_size: Optional[int] = None):
        self.folder, self.vae, self.resolution = Path(folder), Path(vae), int(resolution)
        self.classes = check_layout(self.folder)  # cheap: a bad folder is refused before any work
        self.cache_root = Path(DEFAULT_CACHE if cache_root is None else cache_root).expanduser().absolute()
        self.shard_size = int(SHARD_SIZE if shard_size is None else shard_size)
        side = self.resolution // DOWNSAMPLING
        self.latent_shape = (LATENT_CHANNELS, side, side)
        self._listing: Optional[ImageListing] = None
        self._identity: Optional[dict[str, Any]] = None
        self._class_start: Optional[torch.Tensor] = None  # first index and number of images of each class
        self._class_count: Optional[torch.Tensor] = None
        self._complete = False  # every shard was found on disk (then later draws look no further)

    def __deepcopy__(self, memo):  # one cache, shared by the copies of a backbone (e.g. in another dtype)
        return self

    @property
    def listing(self) -> ImageListing:
        if self._listing is None:
            self._listing = list_images(self.folder)
        return self._listing

    def identity(self) -> dict[str, Any]:
        """What the latents are: the folder's and the VAE's digests, the resolution and the recipe."""
        if self._identity is None:
            listing = self.listing
            self._identity = {
                "dataset": "imagefolder", "folder_sha256": listing.digest, "images": len(listing),
                "classes": len(listing.classes), "vae_sha256": vae_digest(self.vae), "resolution": self.resolution,
                "crop": "adm center_crop_arr", "latents": f"vae posterior sample x {LATENT_SCALE}",
                "posterior_seed": POSTERIOR_SEED,
            }
        return dict(self._identity)

    # -- the cache on disk ---------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        return self.cache_root / spec_hash(self.key())

    def key(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.identity(), "shard_size": self.shard_size}

    @property
    def num_shards(self) -> int:
        return -(-len(self.listing) // self.shard_size)

    def shard_path(self, shard: int) -> Path:
        return self.cache_dir / f"shard-{shard:05d}.npy"

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, len(self.listing)))

    def missing_shards(self) -> list[int]:
        return [k for k in range(self.num_shards) if not self.shard_path(k).is_file()]

    def encode(self, device: str | torch.device = "cpu", progress: bool = True) -> None:
        """Encode the shards not yet on disk (none: nothing is loaded, not even the VAE)."""
        if self._complete:
            return
        missing = self.missing_shards()
        if not missing:
            self._complete = True
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._write_manifest()
        vae = load_vae(str(self.vae)).to(device)
        done = len(self.listing) - sum(len(self.shard_range(k)) for k in missing)
        bar = progress_bar(total=len(self.listing), initial=done, unit="img", enabled=progress, off_terminal="total",
                   desc=f"sit: encoding {self.folder.name} into latents ({self.cache_dir})")
        workers = min(8, os.cpu_count() or 1)
        with bar, ThreadPoolExecutor(workers) as pool:
            for shard in missing:
                if self.shard_path(shard).is_file():  # another process wrote it meanwhile
                    bar.update(len(self.shard_range(shard)))
                    continue
                latents = []
                indices = self.shard_range(shard)
                # the whole shard's images load in the pool while the VAE encodes them batch by batch
                images = pool.map(lambda i: load_center_crop(self.listing.path(i), self.resolution), indices)
                for start in range(indices.start, indices.stop, ENCODE_BATCH):
                    batch = range(start, min(start + ENCODE_BATCH, indices.stop))
                    pixels = torch.from_numpy(np.stack([next(images) for _ in batch])).permute(0, 3, 1, 2)
                    latents.append(encode_posterior(vae, pixels, posterior_noise(batch, self.latent_shape)))
                    bar.update(len(batch))
                self._write_atomically(self.shard_path(shard), torch.cat(latents).numpy())
        self._complete = True

    def _write_manifest(self) -> None:
        path = self.cache_dir / "manifest.json"
        if not path.is_file():
            manifest = {"key": self.key(), "classes": list(self.listing.classes), "folder": str(self.folder),
                        "vae": str(self.vae), "shards": self.num_shards}
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(manifest, indent=1))
            os.replace(partial, path)

    @staticmethod
    def _write_atomically(path: Path, array: np.ndarray) -> None:
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
        np.save(partial, array)
        os.replace(partial, path)

    # -- drawing -----------------------------------------------------------------------------

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.listing.labels)

    def draw_indices(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` image indices: uniform over the folder, or one of each given label's class; distinct
        while the folder (or the class) has images left."""
        if labels is None:
            return distinct_draws(len(self.listing), n, generator)
        labels = labels.long().cpu()
        if labels.shape != (n,):
            raise ValueError(f"sit data: {n} samples asked with {tuple(labels.shape)} labels; give one label each")
        if self._class_start is None:
            counts = torch.bincount(self.labels, minlength=len(self.classes))
            self._class_start = torch.cumsum(counts, 0) - counts
            self._class_count = counts
        classes = len(self.classes)
        if torch.any((labels < 0) | (labels >= classes)):
            raise ValueError(f"sit data labels must lie in [0, {classes - 1}]: the data folder {str(self.folder)!r} "
                             f"has {classes} classes (asked: {sorted(set(labels.tolist()) - set(range(classes)))[:5]})")
        index = torch.empty(n, dtype=torch.long)
        for c in labels.unique().tolist():
            where = torch.nonzero(labels == c).squeeze(1)
            index[where] = self._class_start[c] + distinct_draws(int(self._class_count[c]), len(where), generator)
        return index

    def read(self, index: torch.Tensor) -> torch.Tensor:
        """The cached latents of images ``index`` (float32, on the CPU), read from their shards."""
        index = index.long().cpu()
        out = torch.empty(len(index), *self.latent_shape)
        shards = torch.div(index, self.shard_size, rounding_mode="floor")
        for shard in shards.unique().tolist():
            where = torch.nonzero(shards == shard).squeeze(1)
            path = self.shard_path(shard)
            if not path.is_file():
                raise ValueError(f"latent shard {str(path)!r} has gone (deleted while in use?); run again and it "
                                 "is encoded again")
            stored = np.load(path, mmap_mode="r")
            expected = (len(self.shard_range(shard)), *self.latent_shape)
            if stored.shape != expected or stored.dtype != np.float32:
                raise ValueError(f"latent shard {str(path)!r} holds {stored.dtype} {stored.shape}, not float32 "
                                 f"{expected}; delete it and it is encoded again")
            out[where] = torch.from_numpy(np.array(stored[(index[where] - shard * self.shard_size).numpy()]))
        return out
