"""A local diffusers folder: a pipeline's (``model_index.json``, ``transformer/``, ``vae/``, ...) or one model's
(``config.json`` and its weights), its transformer found, checked and loaded.  Nothing is ever downloaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from backbones.diffusers_flow.architectures import BY_TRANSFORMER, Architecture
from solverbench.hashing import file_sha256

TRANSFORMER, VAE = "transformer", "vae"  # a pipeline folder's subfolders
DTYPES = ("float32", "float64", "bfloat16", "float16")


class ModelFolderError(ValueError):
    """A folder that holds no transformer the ``diffusers`` backbone runs (or no VAE where one is named).

    A ValueError: the folder is a bad parameter value, so a grid naming it fails while it is read."""


@dataclass(frozen=True)
class TransformerFolder:
    """Where a transformer lies: ``root`` (what was given) and ``subfolder`` (``transformer`` in a pipeline folder,
    None for a model folder); its config and the architecture its class has."""

    root: Path
    subfolder: Optional[str]
    config: dict[str, Any]
    architecture: Architecture

    @property
    def path(self) -> Path:
        return self.root / self.subfolder if self.subfolder else self.root

    def where(self) -> str:
        return f"{str(self.path)!r}"

    @property
    def pipeline_vae(self) -> Optional[Path]:
        """The VAE folder of the pipeline the transformer belongs to, where it has one."""
        folder = self.root / VAE
        return folder if self.subfolder and (folder / "config.json").is_file() else None


def read_config(path: Path, what: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"{what} {str(path)!r} cannot be read as JSON ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ModelFolderError(f"{what} {str(path)!r} holds no JSON object")
    return config


def find_transformer(model: str | Path) -> TransformerFolder:
    """The transformer of a pipeline folder (its ``transformer/``) or of a model folder, its class one the backbone
    runs; one line naming the folder otherwise."""
    root = Path(model).expanduser()
    known = ", ".join(BY_TRANSFORMER)
    if not root.is_dir():
        raise ModelFolderError(f"diffusers: model folder {str(root)!r} " + ("is a file" if root.exists() else
                               "does not exist") + f"; give a local pipeline folder (model_index.json, transformer/, "
                               f"...) or a model folder (config.json) of a {known}")
    subfolder = TRANSFORMER if (root / TRANSFORMER / "config.json").is_file() else None
    config_file = (root / subfolder if subfolder else root) / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"diffusers: folder {str(root)!r} holds no transformer: neither transformer/config.json "
                               f"(a pipeline folder) nor config.json (a model folder) of a {known}")
    config = read_config(config_file, "transformer config")
    name = config.get("_class_name")
    if name not in BY_TRANSFORMER:
        raise ModelFolderError(f"diffusers: {str(config_file.parent)!r} holds a model of class "
                               f"{name or '(none named)'}, not a flow-matching transformer the backbone runs: {known}")
    found = TransformerFolder(root, subfolder, config, BY_TRANSFORMER[name])
    found.architecture.check_config(config, found.where())
    return found


WEIGHTS = ("folder", "random")  # the backbone's weights: the folder's, or random from its config (costs only)
RANDOM_SEED = 0


def load_transformer(folder: TransformerFolder, dtype: torch.dtype, weights: str = "folder") -> torch.nn.Module:
    """The transformer in ``folder``, its weights in ``dtype``, in eval mode without gradients; never downloads.
    ``weights="random"``: built from its config alone, with diffusers' initialisation seeded by ``RANDOM_SEED``,
    created in ``dtype`` (and on torch's default device: ``with torch.device("cuda"):`` builds it there), for
    what an architecture costs without its weights."""
    import diffusers

    cls = getattr(diffusers, folder.architecture.transformer_class)
    if weights == "random":
        return random_transformer(cls, folder.config, dtype).eval().requires_grad_(False)
    extra = {"subfolder": folder.subfolder} if folder.subfolder else {}
    try:
        model = cls.from_pretrained(str(folder.root), torch_dtype=dtype, local_files_only=True, **extra)
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelFolderError(f"diffusers: the {cls.__name__} in {folder.where()} does not load: "
                               f"{' '.join(str(err).split())}") from None
    if any(p.dtype != dtype for p in model.parameters() if p.is_floating_point()):
        with quiet_diffusers():  # its note on modules kept in float32 (none of these classes has any)
            model = model.to(dtype)  # from_pretrained keeps a float32 file in float32 without accelerate
    return model.eval().requires_grad_(False)


def random_transformer(cls: type, config: dict[str, Any], dtype: torch.dtype) -> torch.nn.Module:
    """``cls`` from ``config`` with seeded random weights, made in ``dtype`` from the start (torch's default dtype
    while it is built: a float32 copy of a 12B model first would take 48 GB)."""
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(RANDOM_SEED)
        torch.set_default_dtype(dtype)
        try:
            model = cls.from_config(config)
        finally:
            torch.set_default_dtype(default)
    return model.to(dtype)  # buffers a module makes in float32 on purpose follow too


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """diffusers' logger at errors only, and no warnings, inside the block."""
    import diffusers

    logging = diffusers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"diffusers: dtype must be one of {', '.join(DTYPES)} (the transformer's weights), "
                         f"got {name!r}")
    return getattr(torch, name)


def folder_sha256(folder: Path) -> str:
    """SHA-256 over the relative names and bytes of the files under ``folder`` (its config and weights)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if not any(part.startswith(".") for part in relative.parts):
            digest.update(f"{relative.as_posix()}\t{file_sha256(path)}\n".encode())
    return digest.hexdigest()
