"""diffusers' U-Nets as the diffusion backbone takes them, and the local folders they are saved in.

A folder is a pipeline's (``unet/`` with ``config.json`` and its weights, and a
``scheduler/scheduler_config.json``), as ``DiffusionPipeline.save_pretrained`` writes it and the Hugging
Face hub holds it (e.g. google/ddpm-cifar10-32), or a model's own (``config.json`` and its weights, as
``UNet2DModel.save_pretrained`` writes it), whose schedule is then given apart.  Nothing is downloaded.

A U-Net is taken when its output is one prediction per input channel (or twice as many channels: a
learned-variance head, whose first half is the prediction), and its conditioning is a class label or
none: a ``UNet2DModel``, or a ``UNet2DConditionModel`` without cross-attention or added embeddings
(which would need prompt embeddings that nothing here makes).  Class labels go through its class
embedding table (``num_class_embeds``) only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from solverbench.hashing import file_sha256

UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class UNetLayout:
    """What the diffusion backbone reads from a U-Net's config."""

    class_name: str
    sample_shape: tuple[int, int, int]
    num_class_embeds: Optional[int]
    learned_variance: bool  # twice the input channels out: the prediction, then variance channels


def unet_layout(config: Mapping[str, Any], where: str, class_name: Optional[str] = None) -> UNetLayout:
    """The layout of a U-Net config (of the class ``class_name``; by default the one it names), or one line saying
    why the diffusion backbone cannot take it."""
    class_name = class_name or config.get("_class_name")
    if class_name not in UNET_CLASSES:
        raise ValueError(f"{where} holds a {class_name}; the diffusion backbone takes {' or '.join(UNET_CLASSES)}")
    if class_name == "UNet2DConditionModel":
        blocks = [*config.get("down_block_types", ()), *config.get("up_block_types", ()),
                  str(config.get("mid_block_type", "UNetMidBlock2DCrossAttn"))]
        needs = ("cross-attention blocks" if any("CrossAttn" in b for b in blocks) else
                 f"addition_embed_type {config['addition_embed_type']!r}" if config.get("addition_embed_type") else
                 f"encoder_hid_dim {config['encoder_hid_dim']!r}" if config.get("encoder_hid_dim") else None)
        if needs:
            raise ValueError(f"{where} holds a UNet2DConditionModel with {needs}, which take prompt embeddings; the "
                             "diffusion backbone conditions on class labels only")
    if config.get("class_embed_type") is not None:
        raise ValueError(f"{where} has class_embed_type {config['class_embed_type']!r}; the diffusion backbone passes "
                         "integer class labels, to a class table (num_class_embeds, class_embed_type null) only")
    channels, out = int(config.get("in_channels", 3)), int(config.get("out_channels", 3))
    if out not in (channels, 2 * channels):
        raise ValueError(f"{where} maps {channels} input channels to {out}; a prediction has {channels} (or "
                         f"{2 * channels} with learned variance)")
    size = config.get("sample_size")
    height, width = (size, size) if isinstance(size, int) else tuple(size or (None, None))
    if not (isinstance(height, int) and isinstance(width, int)):
        raise ValueError(f"{where} has sample_size {size!r}; the diffusion backbone needs the image size (an integer "
                         "or [height, width]) to know its samples' shape")
    classes = config.get("num_class_embeds")
    return UNetLayout(class_name, (channels, height, width), None if classes is None else int(classes), out != channels)


def is_unet(network: Any) -> bool:
    """A diffusers U-Net the backbone knows how to call (its config names one of ``UNET_CLASSES``)."""
    return isinstance(network, nn.Module) and type(network).__name__ in UNET_CLASSES and hasattr(network, "config")


def call_unet(unet: nn.Module, layout: UNetLayout, x: torch.Tensor, timestep: torch.Tensor,
              labels: Optional[torch.Tensor]) -> torch.Tensor:
    """The U-Net's prediction at ``x`` and (fractional) ``timestep``: its ``.sample`` (the prediction's channels)."""
    extra = {"encoder_hidden_states": None} if layout.class_name == "UNet2DConditionModel" else {}
    out = unet(x, timestep, class_labels=labels, **extra).sample
    return out[:, : layout.sample_shape[0]] if layout.learned_variance else out


@dataclass(frozen=True)
class ModelFolder:
    """Where a folder keeps its U-Net and, for a pipeline's, its scheduler config."""

    path: Path
    subfolder: Optional[str]  # "unet" for a pipeline's folder
    scheduler_config: Optional[Path]

    @property
    def unet_dir(self) -> Path:
        return self.path / self.subfolder if self.subfolder else self.path


def model_folder(folder: str | Path) -> ModelFolder:
    """The layout of a local model folder, or one line naming the path and what it lacks."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ValueError(f"diffusion: no such model folder {str(folder)!r}; give a local folder saved by diffusers "
                         "(a pipeline's, with unet/ and scheduler/, or a U-Net's own)")
    if not path.is_dir():
        raise ValueError(f"diffusion: model {str(folder)!r} is a file; give the folder diffusers saved the model in")
    if (path / "unet" / "config.json").is_file():
        scheduler = path / "scheduler" / "scheduler_config.json"
        return ModelFolder(path, "unet", scheduler if scheduler.is_file() else None)
    if (path / "config.json").is_file():
        return ModelFolder(path, None, None)
    raise ValueError(f"diffusion: model folder {str(folder)!r} holds neither unet/config.json (a pipeline's folder) "
                     "nor config.json (a U-Net's own, saved by save_pretrained)")


def load_unet(folder: ModelFolder, dtype: str) -> tuple[nn.Module, UNetLayout]:
    """The folder's U-Net in ``dtype`` (weights as stored, cast as ``from_pretrained(torch_dtype=...)`` casts),
    in eval mode, without gradients."""
    where = f"model folder {str(folder.path)!r}"
    if dtype not in DTYPES:
        raise ValueError(f"diffusion: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        config = json.loads((folder.unet_dir / "config.json").read_text())
    except ValueError as err:
        raise ValueError(f"{where}: its U-Net config.json cannot be read as JSON ({err})") from None
    layout = unet_layout(config, where)
    import diffusers  # imported here: only this backbone's folders need diffusers' models

    unet = getattr(diffusers, layout.class_name).from_pretrained(
        str(folder.path), subfolder=folder.subfolder, torch_dtype=DTYPES[dtype], local_files_only=True)
    return unet.eval().requires_grad_(False), layout


def folder_digest(folder: ModelFolder) -> str:
    """SHA-256 over the relative names and bytes of the U-Net's files and the scheduler config."""
    files = sorted(p for p in folder.unet_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if folder.scheduler_config is not None:
        files.append(folder.scheduler_config)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder.path)}\t{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def module_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state (names, dtypes, shapes and bytes): what identifies a network given in Python."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\t{data.dtype}\t{tuple(data.shape)}\n".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
