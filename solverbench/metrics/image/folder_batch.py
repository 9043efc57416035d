"""A folder of images as an ADM reference batch: the image metrics' reference for a backbone that draws no data.

``reference_batch_from_folder(FOLDER, OUT)`` reads every image under the folder (png, jpg, jpeg, webp, bmp;
sorted by path), as RGB uint8 of one size, and writes them as an ADM batch (``arr_0``) with the statistics the
image metrics compare with, computed through the named feature extractor as the project computes FID
statistics (torch-fidelity's, which are ADM's: the mean and ``np.cov``): ``mu``, ``sigma`` of the FID features and ``mu_s``, ``sigma_s``
(sFID's) where the extractor has them.  The grid then names the file (``metric_options: {reference_batch:
OUT, feature_extractor: NAME}``): FID and sFID compare with the statistics, KID and precision/recall with
the images' features.  The statistics are those of ``arr_0`` itself, so the cells get no noise floor
(``reference_batch``).  Images of different sizes are refused, naming the first that differs: nothing is
resized behind the user's back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from solverbench.metrics.image.adm_npz import STATISTICS, BatchWriter
from solverbench.metrics.image.extractors import build_extractor, extract_features
from solverbench.metrics.image.frechet import frechet_statistics

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_files(folder: Path) -> list[Path]:
    """The images under ``folder`` (any depth), sorted by path; a ValueError naming the folder where there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"image folder {str(folder)!r} holds no images ({', '.join(SUFFIXES)})")
    return files


def read_image(path: Path) -> np.ndarray:
    """One image as RGB uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def image_batches(files: list[Path], batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) batches of the files, every image of the first one's size."""
    size = None
    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            image = read_image(path)
            if size is None:
                size, first = image.shape, path
            elif image.shape != size:
                raise ValueError(f"image {str(path)!r} is {image.shape[1]}x{image.shape[0]}, the folder's first "
                                 f"image {str(first)!r} {size[1]}x{size[0]}: a reference batch holds images of "
                                 "one size (resize them first)")
            batch.append(image)
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)


def reference_batch_from_folder(folder: Path, out: Path, feature_extractor: str = "inception-tf",
                                weights_path: Optional[str] = None, device: str = "cpu",
                                batch_size: int = 64) -> Path:
    """Write the folder's images and their statistics under ``feature_extractor`` as an ADM batch at ``out``."""
    files = image_files(folder)
    extractor = build_extractor(feature_extractor, weights_path, device)
    layers = {metric: extractor.metric_layers.get(metric) for metric in STATISTICS}
    if not any(layers.values()):
        raise ValueError(f"feature extractor {feature_extractor!r} gives no FID features: nothing to store")

    with BatchWriter(Path(out), len(files)) as writer:

        def written(batches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
            for batch in batches:  # each image read once: written, then its features extracted
                writer.add(batch)
                yield batch

        features = extract_features(extractor, written(image_batches(files, batch_size)), device)
        for metric, (mu, sigma) in STATISTICS.items():
            if layers[metric] is not None:
                stats = frechet_statistics(features[layers[metric]])
                writer.add_array(mu, stats["mu"].numpy())
                writer.add_array(sigma, stats["sigma"].numpy())
    return Path(out)
