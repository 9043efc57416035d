"""OpenAI's ADM evaluation files (guided-diffusion ``evaluations/evaluator.py``): ``.npz`` batches.

A ``.npz`` is numpy's zip of ``.npy`` arrays (``numpy.savez``, stored, not compressed).

- A sample batch: ``arr_0`` the images, uint8 ``(N, H, W, 3)`` (NHWC, RGB), and ``arr_1`` their
  class labels (int64 ``(N,)``) where the model is class-conditional, as ADM's
  ``image_sample.py`` writes them (``np.savez(path, arr, label_arr)``; the BA-solver's and
  REPA's ``generate.py`` write ``arr_0`` only).
- A reference batch: ``arr_0``, images of the data set (ADM's: 10,000, for precision and
  recall), and the Frechet statistics of the whole data set: ``mu``, ``sigma`` (Inception
  ``pool_3``, 2048-D: FID) and ``mu_s``, ``sigma_s`` (the first 7 channels of ``mixed_6/conv``,
  17 x 17 x 7 = 2023-D: sFID).

Images are read and written in batches straight from and into the zip member, as ADM's
evaluator reads them, so 50,000 images of 256 x 256 (10 GB) are never in memory at once.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional

import numpy as np
import torch

IMAGES, LABELS = "arr_0", "arr_1"
STATISTICS = {"fid": ("mu", "sigma"), "sfid": ("mu_s", "sigma_s")}  # metric -> its keys in a reference batch


class BatchFileError(ValueError):
    """A file that is not a usable ADM batch; the message names it and what it holds."""


@dataclass(frozen=True)
class ArrayInfo:
    shape: tuple[int, ...]
    dtype: np.dtype


def _read_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy array at the stream's start."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f".npy format {version[0]}.{version[1]} (numpy writes it only for non-Latin-1 field names)")


def npz_arrays(path: Path) -> dict[str, ArrayInfo]:
    """The arrays of the ``.npz`` at ``path`` with their shapes and types (headers only, no data read)."""
    path = Path(path)
    if not path.is_file():
        raise BatchFileError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    if not zipfile.is_zipfile(path):
        raise BatchFileError(f"{path} is not an .npz file (numpy.savez's zip of .npy arrays)")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    raise ValueError(f"it holds {member!r}, not an .npy array")
                with archive.open(member) as stream:
                    shape, _, dtype = _read_header(stream)
                arrays[member[:-len(".npy")]] = ArrayInfo(tuple(shape), dtype)
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise BatchFileError(f"{path} is not an .npz file of numpy arrays ({err})") from None
    return arrays


def read_array(path: Path, key: str) -> np.ndarray:
    """One (small) array of the ``.npz``, e.g. a reference batch's ``mu``."""
    with np.load(path, allow_pickle=False) as archive:
        return archive[key]


def image_layout(path: Path, info: ArrayInfo) -> None:
    """Refuse ``arr_0`` unless it is uint8 images ``(N, H, W, C)``, C 3 (RGB) or 1 (gray)."""
    if info.dtype != np.uint8 or len(info.shape) != 4 or info.shape[3] not in (1, 3):
        raise BatchFileError(f"{path}: {IMAGES} is {info.dtype} {info.shape}; an ADM batch holds uint8 images "
                             "(N, H, W, 3)")


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """``size`` bytes of the stream, or all that is left where it ends first."""
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_images(path: Path, batch_size: int) -> Iterator[torch.Tensor]:
    """``arr_0`` in batches of uint8 images ``(B, C, H, W)``, streamed from the zip member."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{IMAGES}.npy") as stream:
        shape, fortran, dtype = _read_header(stream)
        image_layout(Path(path), ArrayInfo(tuple(shape), dtype))
        if fortran:
            raise BatchFileError(f"{path}: {IMAGES} is stored in Fortran order; write it with numpy.savez "
                                 "from a C-ordered array")
        per_image = int(np.prod(shape[1:]))
        for start in range(0, shape[0], batch_size):
            count = min(batch_size, shape[0] - start)
            data = _read_exactly(stream, count * per_image)
            if len(data) != count * per_image:
                raise BatchFileError(f"{path}: {IMAGES} ends after {start} of its {shape[0]} images (truncated)")
            batch = np.frombuffer(data, dtype=np.uint8).reshape(count, *shape[1:])
            yield torch.from_numpy(batch.copy()).permute(0, 3, 1, 2).contiguous()


class BatchWriter:
    """Writes an ADM batch: ``arr_0`` from uint8 image batches ``(B, C, H, W)`` in order (gray images
    are written as RGB: ADM's evaluator takes 3 channels), then ``arr_1`` and any further arrays.

    The file appears, by a rename, only once ``close()`` has written all ``num_images``;
    ``abort()`` (or an exception inside ``with``) leaves nothing.
    """

    def __init__(self, path: Path, num_images: int):
        self.path, self.num_images, self.written = Path(path), num_images, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.archive = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.stream: Optional[IO[bytes]] = None

    def add(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"an ADM batch takes uint8 images (B, 1 or 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        nhwc = images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        if self.stream is None:
            self.shape = (self.num_images, *nhwc.shape[1:])
            self.stream = self.archive.open(f"{IMAGES}.npy", "w", force_zip64=True)
            np.lib.format.write_array_header_1_0(self.stream, {"descr": "|u1", "fortran_order": False,
                                                               "shape": self.shape})
        if nhwc.shape[1:] != self.shape[1:] or self.written + len(nhwc) > self.num_images:
            raise ValueError(f"{self.path}: images {nhwc.shape} do not continue {self.shape} after "
                             f"{self.written} images")
        self.stream.write(nhwc.tobytes())
        self.written += len(nhwc)

    def add_array(self, key: str, value: np.ndarray) -> None:
        """A further array (``arr_1`` labels, a reference batch's statistics), after the images."""
        self._end_images()
        with self.archive.open(f"{key}.npy", "w", force_zip64=True) as stream:
            np.lib.format.write_array(stream, np.ascontiguousarray(value), allow_pickle=False)

    def _end_images(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self.written != self.num_images:
            raise ValueError(f"{self.path}: {self.written} images written of {self.num_images}")

    def close(self) -> Path:
        try:
            self._end_images()
        except BaseException:
            self.abort()
            raise
        self.archive.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            if self.stream is not None:
                self.stream.close()
            self.archive.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_batch(path: Path, images: Iterable[torch.Tensor] | torch.Tensor, num_images: int,
                labels: Optional[torch.Tensor] = None, **arrays: np.ndarray) -> Path:
    """An ADM batch at ``path``: ``arr_0`` from ``images`` (a tensor, or batches of them), ``arr_1`` the
    labels where given, then ``arrays`` (e.g. ``mu``, ``sigma``, ``mu_s``, ``sigma_s``)."""
    with BatchWriter(path, num_images) as writer:
        for batch in ([images] if isinstance(images, torch.Tensor) else images):
            writer.add(batch)
        if labels is not None:
            writer.add_array(LABELS, labels.cpu().numpy().astype(np.int64))
        for key, value in arrays.items():
            writer.add_array(key, np.asarray(value))
    return Path(path)
