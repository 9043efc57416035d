"""SiT latents and diffusers' AutoencoderKL (the SD-VAE), loaded from a local folder only.

Latents are the VAE's posterior samples times ``LATENT_SCALE`` (0.18215), as SiT, DiT and
REPA train on them (``encode_posterior``: images in [-1, 1], ``z = (mean + std eps) x 0.18215``,
as the BA authors' train_BA_side.py takes ``posterior.sample().mul_(0.18215)``); decoded
images come back in [-1, 1] and are quantised as DiT/REPA save their samples,
``clamp(127.5 x + 128, 0, 255)`` truncated to uint8.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import torch

from solverbench.hashing import file_sha256

LATENT_SCALE = 0.18215
DOWNSAMPLING = 8  # image pixels per latent pixel


def check_vae_folder(folder: str | Path, latent_channels: int) -> None:
    """Refuse (ValueError, one line naming the folder) a folder whose AutoencoderKL cannot make or
    decode SiT's latents: no config.json, other latent channels, or a downsampling other than 8."""
    path = Path(folder)
    where = f"vae folder {str(folder)!r}"
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{where} holds no AutoencoderKL (no config.json): give a local folder written by "
                         "diffusers' AutoencoderKL.save_pretrained, e.g. a copy of stabilityai/sd-vae-ft-ema")
    try:
        config = json.loads(config_file.read_text())
        channels = int(config.get("latent_channels", 4))  # diffusers' default
        blocks = len(config.get("block_out_channels", (64,)))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: its config.json cannot be read as an AutoencoderKL config ({err})") from err
    if channels != latent_channels:
        raise ValueError(f"{where} holds an AutoencoderKL with {channels} latent channels; SiT's latents have "
                         f"{latent_channels} (the SD-VAE's, e.g. stabilityai/sd-vae-ft-ema)")
    factor = 2 ** (blocks - 1)  # every encoder block but the last halves the image
    if factor != DOWNSAMPLING:
        raise ValueError(f"{where} holds an AutoencoderKL that downsamples by {factor} ({blocks} blocks in "
                         f"block_out_channels); SiT's latents are {DOWNSAMPLING}x smaller than the image "
                         f"({DOWNSAMPLING.bit_length()} blocks, as the SD-VAE has)")


def vae_digest(folder: str | Path) -> str:
    """SHA-256 over the names and bytes of the files in ``folder`` (its config and weights)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            digest.update(f"{path.name}\t{file_sha256(path)}\n".encode())
    return digest.hexdigest()


@lru_cache(maxsize=2)
def load_vae(folder: str):
    """The AutoencoderKL saved (``save_pretrained``) in ``folder``; never downloads."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"VAE folder {str(path)!r} holds no AutoencoderKL (no config.json); give a local "
                                "folder written by diffusers' AutoencoderKL.save_pretrained, e.g. a copy of "
                                "stabilityai/sd-vae-ft-ema")
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)


@torch.no_grad()
def decode_latents(folder: str, latents: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Latents (N, 4, h, w) -> uint8 images (N, 3, 8h, 8w) on the CPU."""
    vae = load_vae(str(folder))
    device = latents.device
    vae.to(device)
    dtype = next(vae.parameters()).dtype
    images = []
    for start in range(0, len(latents), batch_size):
        decoded = vae.decode(latents[start:start + batch_size].to(dtype) / LATENT_SCALE).sample
        images.append(torch.clamp(127.5 * decoded.float() + 128.0, 0, 255).to(torch.uint8).cpu())
    return torch.cat(images)


@torch.no_grad()
def encode_posterior(vae, pixels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> latents ``(mean + std * noise) * LATENT_SCALE`` (N, 4, H/8, W/8),
    float32 on the CPU; ``noise`` (N, 4, H/8, W/8) is the posterior sample's standard normal draw."""
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    posterior = vae.encode((pixels.to(device).float() / 127.5 - 1).to(dtype)).latent_dist
    latents = posterior.mean.float() + posterior.std.float() * noise.to(device, torch.float32)
    return (latents * LATENT_SCALE).cpu()
