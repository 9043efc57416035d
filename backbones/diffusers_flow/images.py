"""Latents decoded into images by a pipeline's VAE, as its pipeline decodes them.

The VAE is diffusers' ``AutoencoderKL`` (SD3's, Flux's: ``scaling_factor`` and ``shift_factor`` in
its config) or ``AutoencoderDC`` (Sana's: ``scaling_factor``), from a local folder: the pipeline
folder's ``vae/`` or a folder given apart.  Latents ``z`` decode as ``vae.decode(z / scaling_factor
+ shift_factor)``, in float32 whatever the transformer's dtype, and images in [-1, 1] are quantised
as the pipelines' image processor does, ``round(clamp(x / 2 + 1/2, 0, 1) x 255)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from backbones.diffusers_flow.folders import ModelFolderError, quiet_diffusers, read_config

# VAE class -> the config key whose blocks set its downsampling (every block but the last halves the image)
VAE_BLOCKS = {"AutoencoderKL": "block_out_channels", "AutoencoderDC": "encoder_block_out_channels"}
DECODE_BATCH = 8  # latents per VAE call


@dataclass(frozen=True)
class VaeFolder:
    """A VAE folder, read from its config: its class, latent channels, downsampling, scaling and shift."""

    path: Path
    class_name: str
    latent_channels: int
    downsampling: int
    scaling_factor: float
    shift_factor: float


def read_vae(folder: str | Path) -> VaeFolder:
    """The VAE in ``folder`` as its config says; one line naming the folder where it holds none the backbone reads."""
    path = Path(folder).expanduser()
    where = f"diffusers: vae folder {str(path)!r}"
    if not (path / "config.json").is_file():
        raise ModelFolderError(f"{where} holds no VAE (no config.json): give the vae/ folder of the model's pipeline "
                               f"(a local {' or '.join(VAE_BLOCKS)} folder)")
    config = read_config(path / "config.json", "vae config")
    name = config.get("_class_name")
    if name not in VAE_BLOCKS:
        raise ModelFolderError(f"{where} holds a model of class {name or '(none named)'}; the VAEs the backbone "
                               f"decodes with: {', '.join(VAE_BLOCKS)}")
    try:
        blocks = len(config[VAE_BLOCKS[name]])
        shift = config.get("shift_factor")
        return VaeFolder(path, name, int(config["latent_channels"]), 2 ** (blocks - 1),
                         float(config.get("scaling_factor", 1.0)), 0.0 if shift is None else float(shift))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFolderError(f"{where}: its config.json lacks or mistypes {err} of a {name}") from None


@lru_cache(maxsize=2)
def load_vae(path: str, class_name: str) -> torch.nn.Module:
    import diffusers

    vae = getattr(diffusers, class_name).from_pretrained(path, torch_dtype=torch.float32, local_files_only=True)
    if any(p.dtype != torch.float32 for p in vae.parameters()):
        with quiet_diffusers():
            vae = vae.to(torch.float32)  # from_pretrained keeps a half-precision file's dtype without accelerate
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def decode(vae: VaeFolder, latents: torch.Tensor, batch_size: int = DECODE_BATCH) -> torch.Tensor:
    """Latents (N, C, h, w) -> uint8 RGB images (N, 3, h d, w d) on the CPU, d the VAE's downsampling."""
    model = load_vae(str(vae.path), vae.class_name).to(latents.device)
    images = []
    for start in range(0, len(latents), batch_size):
        z = latents[start:start + batch_size].float() / vae.scaling_factor + vae.shift_factor
        decoded = model.decode(z, return_dict=False)[0].float()
        images.append(torch.round((decoded / 2 + 0.5).clamp(0, 1) * 255).to(torch.uint8).cpu())
    return torch.cat(images)
