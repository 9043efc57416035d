"""What one NFE of the ``diffusers`` and ``diffusion`` backbones costs: wall milliseconds per call of the backbone
(the velocity of a batch, conditions looked up, the change of variables included), median over repeats, at
batch 1 and 8, on models with random weights built from configs in a temporary folder and loaded through the
backbones as a grid loads them.

    OMP_NUM_THREADS=1 python benchmarks/backbone_nfe_cost.py                      # the tiny test models, CPU
    OMP_NUM_THREADS=1 python benchmarks/backbone_nfe_cost.py --models ddpm-cifar10 --repeats 5
    python benchmarks/backbone_nfe_cost.py --models sd3-medium flux-dev sana-1600m --device cuda \
        --dtype bfloat16 --resolution 1024                                          # the real sizes, on a GPU

Models: ``sd3-tiny``, ``flux-tiny``, ``sana-tiny`` and ``ddpm-tiny`` are the sizes the tests build (a layer or
two, 8x8 latents; the table prints each one's sample shape): what the harness adds around a network, not what a
real model costs; ``ddpm-cifar10`` is the
architecture of google/ddpm-cifar10-32 (35.7M parameters, 32x32 pixels), whose cost per NFE is the real one;
``sd3-medium`` (2.03B parameters), ``flux-dev`` (11.9B) and ``sana-1600m`` (1.6B) are the published transformers'
configs, built with random weights straight in ``--dtype`` on ``--device`` (the ``diffusers`` backbone's
``weights: random``: no weights file), their prompt sets of the models' own token counts (SD3 77 + 256, Flux
512, Sana 300), at ``--resolution`` px.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

PROMPTS = ["a red cat", "a blue dog", "a photo of a cat"]
TOKENS = 8
SD3 = dict(sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
           joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4)
FLUX = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=16, pooled_projection_dim=8, axes_dims_rope=(4, 6, 6), guidance_embeds=True)
SANA = dict(in_channels=4, out_channels=8, num_attention_heads=2, attention_head_dim=8, num_layers=1,
            num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=16,
            sample_size=8, patch_size=1, timestep_scale=1.0)
DDPM_TINY = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                 norm_num_groups=4)
# google/ddpm-cifar10-32's unet/config.json
DDPM_CIFAR10 = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                    layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_eps=1e-6,
                    dropout=0.1)
# the published transformers' configs (their diffusers folders' transformer/config.json), and their prompt sets'
# token counts and widths
SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
SANA_1600M = dict(in_channels=32, out_channels=32, num_attention_heads=70, attention_head_dim=32, num_layers=20,
                  num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
                  caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1)
DDPM_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
                 "prediction_type": "epsilon"}


def prompt_set(folder: Path, **widths: tuple[int, ...]) -> Path:
    from backbones.diffusers_flow.prompt_set import write_prompt_set

    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, shape in widths.items():
        for key, rows in ((name, len(PROMPTS)), ("negative_" + name, 1)):
            mask = name.endswith("attention_mask")  # every token attended
            tensors[key] = torch.ones(rows, *shape, dtype=torch.long) if mask else torch.randn(rows, *shape, generator=g)
    return write_prompt_set(folder / "prompts.safetensors", PROMPTS, tensors, negative_prompt="")


def flow_transformer(kind: str, config: dict, conditions: dict, resolution: int | None = None
                     ) -> Callable[..., torch.nn.Module]:
    """A tiny transformer saved with its weights and loaded through the backbone, as a grid loads it."""
    def build(folder: Path, **_):
        import diffusers

        from backbones.diffusers_flow.backbone import DiffusersFlowBackbone

        torch.manual_seed(0)
        getattr(diffusers, kind)(**config).eval().save_pretrained(folder / "pipe" / "transformer")
        return DiffusersFlowBackbone(model=folder / "pipe", prompts=prompt_set(folder, **conditions),
                                     resolution=resolution)
    return build


def published_transformer(kind: str, config: dict, conditions: dict) -> Callable[..., torch.nn.Module]:
    """A published transformer's config alone, built with random weights in ``dtype`` on ``device``."""
    def build(folder: Path, device: str = "cpu", dtype: str = "float32", resolution: int | None = None):
        import json

        from backbones.diffusers_flow.backbone import DiffusersFlowBackbone

        (folder / "transformer").mkdir()
        (folder / "transformer" / "config.json").write_text(json.dumps({"_class_name": kind, **config}))
        with torch.device(device):
            return DiffusersFlowBackbone(model=folder / "transformer", prompts=prompt_set(folder, **conditions),
                                         dtype=dtype, weights="random", resolution=resolution)
    return build


def ddpm(config: dict) -> Callable[..., torch.nn.Module]:
    def build(folder: Path, device: str = "cpu", **_):
        import diffusers

        from backbones.diffusion.backbone import DiffusionBackbone

        torch.manual_seed(0)
        diffusers.UNet2DModel(**config).eval().save_pretrained(folder / "unet")
        return DiffusionBackbone(model=folder / "unet", schedule=DDPM_SCHEDULE).to(device)
    return build


MODELS = {
    "sd3-tiny": flow_transformer("SD3Transformer2DModel", SD3, {"prompt_embeds": (TOKENS, 16),
                                                                "pooled_prompt_embeds": (8,)}),
    # 8x8 latents as the others' (Flux has no sample size of its own: its pipeline's default is 1024 px)
    "flux-tiny": flow_transformer("FluxTransformer2DModel", FLUX, {"prompt_embeds": (TOKENS, 16),
                                                                   "pooled_prompt_embeds": (8,)}, resolution=64),
    "sana-tiny": flow_transformer("SanaTransformer2DModel", SANA, {"prompt_embeds": (TOKENS, 16),
                                                                   "prompt_attention_mask": (TOKENS,)}),
    "ddpm-tiny": ddpm(DDPM_TINY),
    "ddpm-cifar10": ddpm(DDPM_CIFAR10),
    "sd3-medium": published_transformer("SD3Transformer2DModel", SD3_MEDIUM, {"prompt_embeds": (77 + 256, 4096),
                                                                             "pooled_prompt_embeds": (2048,)}),
    "flux-dev": published_transformer("FluxTransformer2DModel", FLUX_DEV, {"prompt_embeds": (512, 4096),
                                                                          "pooled_prompt_embeds": (768,)}),
    "sana-1600m": published_transformer("SanaTransformer2DModel", SANA_1600M, {"prompt_embeds": (300, 2304),
                                                                              "prompt_attention_mask": (300,)}),
}


PUBLISHED = ("sd3-medium", "flux-dev", "sana-1600m")


def milliseconds_per_call(backbone: torch.nn.Module, batch: int, repeats: int, device: str = "cpu",
                          dtype: torch.dtype = torch.float32) -> float:
    """Median wall milliseconds of one backbone call on a batch (after one warm-up call; the device synchronised)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *backbone.sample_shape, generator=g).to(device, dtype)
    t = torch.full((batch,), 0.5, device=device)
    y = None if backbone.num_classes is None else (torch.arange(batch) % backbone.num_classes).to(device)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        backbone(x, t, y)
        for _ in range(repeats):
            synchronize()
            start = time.perf_counter()
            backbone(x, t, y)
            synchronize()
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sd3-tiny", "flux-tiny", "sana-tiny", "ddpm-tiny",
                                                        "ddpm-cifar10"], choices=sorted(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per model and batch (default 20)")
    parser.add_argument("--device", default="cpu", help="where the models run (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="the published transformers' weights and latents (default: float32)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="the published transformers' image size in px (default: each pipeline's)")
    args = parser.parse_args(argv)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # no advice about accelerate between the rows
    where = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else "CPU"
    print(f"machine: {platform.machine()}, torch {torch.__version__} with {torch.get_num_threads()} thread(s), {where}; "
          f"median of {args.repeats} calls after one warm-up; published transformers in {args.dtype}")
    print(f"{'model':<14} {'parameters':>12} {'sample shape':>14}"
          + "".join(f"{f'ms/NFE, batch {b}':>20}" for b in args.batch_sizes))
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            real = name in PUBLISHED
            backbone = MODELS[name](Path(folder), device=args.device, dtype=args.dtype, resolution=args.resolution) \
                if real else MODELS[name](Path(folder), device=args.device)
            parameters = sum(p.numel() for p in backbone.parameters())
            dtype = getattr(torch, args.dtype) if real else torch.float32
            cells = [milliseconds_per_call(backbone, b, args.repeats, args.device, dtype) for b in args.batch_sizes]
            shape = "x".join(map(str, backbone.sample_shape))
            del backbone  # the next model may need all of the device
        print(f"{name:<14} {parameters:>12,} {shape:>14}" + "".join(f"{ms:>20.2f}" for ms in cells), flush=True)


if __name__ == "__main__":
    main()
