"""Decoding SiT latents with diffusers' AutoencoderKL (the SD-VAE), loaded from a local folder only.

Latents are the VAE's posterior samples times ``LATENT_SCALE`` (0.18215), as SiT, DiT and
REPA train on them; images come back in [-1, 1] and are quantised as DiT/REPA save their
samples, ``clamp(127.5 x + 128, 0, 255)`` truncated to uint8.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

LATENT_SCALE = 0.18215
DOWNSAMPLING = 8  # image pixels per latent pixel


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
