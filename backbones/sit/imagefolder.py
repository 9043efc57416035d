"""An image folder in torchvision's ImageFolder layout, and ADM's center crop of its images.

Layout: one subfolder per class under the root; class index = position of the subfolder
name in sorted order (ImageNet's 1000 synset folders give labels 0-999), every subfolder
counted, as torchvision's ``ImageFolder`` counts them; the images of a class are the files
with an image extension anywhere below its subfolder, in the order of torchvision's
``make_dataset`` (sorted ``os.walk``, following links, then sorted names).  Other files are
ignored, as torchvision ignores them.

``check_layout`` is cheap (one look at each class subfolder, up to its first image), so a bad
folder is refused while a grid is read; ``list_images`` reads the whole tree once (names,
sizes and modification times, for the folder's digest).

``center_crop`` is ADM's ``center_crop_arr`` (guided-diffusion's image_datasets.py, used by
REPA's ``dataset_tools.py convert --transform=center-crop-dhariwal`` for ImageNet): halve the
image with a BOX filter while its shorter side is at least twice the resolution, resize with
BICUBIC so the shorter side is the resolution, then crop the center square.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
MAX_CLASSES = 1000  # SiT's label table (labels 0-999; 1000 is the null label)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_images(folder: str) -> Iterator[str]:
    """Image files below ``folder`` (paths), in torchvision's make_dataset order."""
    for root, _, names in sorted(os.walk(folder, followlinks=True)):
        for name in sorted(names):
            if is_image(name):
                yield os.path.join(root, name)


def _has_image(folder: str) -> bool:
    """Whether an image file lies anywhere below ``folder`` (stops at the first one found)."""
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                elif is_image(entry.name):
                    return True
    return False


def check_layout(root: str | Path) -> list[str]:
    """The class subfolder names of the ImageFolder ``root`` (sorted: class index = position), or a
    ValueError naming the folder when it is no ImageFolder with images in every class."""
    root = Path(root)
    where = f"data folder {str(root)!r}"
    if not root.is_dir():
        raise ValueError(f"{where} is not a folder: give an ImageFolder (one subfolder of images per class)")
    with os.scandir(root) as entries:
        entries = list(entries)
    classes = sorted(e.name for e in entries if e.is_dir())
    loose = sorted(e.name for e in entries if not e.is_dir() and is_image(e.name))
    if loose:
        raise ValueError(f"{where} is not a class-subfolder layout: {len(loose)} image(s) lie directly in it "
                         f"(e.g. {loose[0]!r}); put the images in one subfolder per class, as torchvision's "
                         "ImageFolder reads them (class index = sorted subfolder order)")
    empty = [name for name in classes if not _has_image(str(root / name))]
    if not classes or len(empty) == len(classes):
        found = f"none in its {len(classes)} class subfolders" if classes else "no class subfolders, no images"
        raise ValueError(f"{where} holds no images ({found}; image files end in {', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        raise ValueError(f"{where}: class subfolder {empty[0]!r} holds no images ({len(empty)} of {len(classes)} "
                         "subfolders are empty); every subfolder is a class (as in torchvision's ImageFolder) and "
                         "needs at least one image")
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"{where} has {len(classes)} class subfolders; SiT has {MAX_CLASSES} classes "
                         f"(labels 0-{MAX_CLASSES - 1})")
    return classes


@dataclass(frozen=True)
class ImageListing:
    """Every image of an ImageFolder, grouped by class in torchvision's order."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]  # paths relative to root, '/'-separated
    labels: np.ndarray  # (N,) int64, non-decreasing
    digest: str  # SHA-256 of the class names and every file's relative path, size and mtime (whole seconds)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return self.root / self.files[index]


def list_images(root: str | Path) -> ImageListing:
    """Read the tree of the ImageFolder ``root`` once (after ``check_layout`` accepted it)."""
    root = Path(root)
    classes = check_layout(root)
    files, labels = [], []
    digest = hashlib.sha256()
    digest.update(("\n".join(classes) + "\n\n").encode())
    for label, name in enumerate(classes):
        for path in _walk_images(str(root / name)):
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            stat = os.stat(path)
            digest.update(f"{relative}\t{stat.st_size}\t{int(stat.st_mtime)}\n".encode())
            files.append(relative)
            labels.append(label)
    return ImageListing(root, tuple(classes), tuple(files), np.asarray(labels, dtype=np.int64), digest.hexdigest())


def center_crop(image: Image.Image, resolution: int) -> np.ndarray:
    """ADM's center crop (guided-diffusion ``center_crop_arr``): uint8 array (resolution, resolution, 3)."""
    image = image.convert("RGB")
    while min(image.size) >= 2 * resolution:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.Resampling.BOX)
    scale = resolution / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.Resampling.BICUBIC)
    pixels = np.asarray(image)
    top = (pixels.shape[0] - resolution) // 2
    left = (pixels.shape[1] - resolution) // 2
    return np.array(pixels[top:top + resolution, left:left + resolution])  # a writable copy


def load_center_crop(path: Path, resolution: int) -> np.ndarray:
    """The image at ``path`` (converted to RGB, as torchvision's loader and ADM do), center-cropped."""
    try:
        with Image.open(path) as image:
            image.load()
            return center_crop(image, resolution)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
