"""What one NFE of the ``diffusers`` and ``diffusion`` backbones costs: wall milliseconds per call of the backbone
(the velocity of a batch, conditions looked up, the change of variables included), median over repeats, at
batch 1 and 8, on models with random weights built from configs in a temporary folder and loaded through the
backbones as a grid loads them.

    OMP_NUM_THREADS=1 python benchmarks/backbone_nfe_cost.py                      # the tiny test models, CPU
    OMP_NUM_THREADS=1 python benchmarks/backbone_nfe_cost.py --models ddpm-cifar10 --repeats 5

Models: ``sd3-tiny``, ``flux-tiny``, ``sana-tiny`` and ``ddpm-tiny`` are the sizes the tests build (a layer or
two, 8x8 latents; the table prints each one's sample shape): what the harness adds around a network, not what a
real model costs; ``ddpm-cifar10`` is the
architecture of google/ddpm-cifar10-32 (35.7M parameters, 32x32 pixels), whose cost per NFE is the real one.
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
                     ) -> Callable[[Path], torch.nn.Module]:
    def build(folder: Path):
        import diffusers

        from backbones.diffusers_flow.backbone import DiffusersFlowBackbone

        torch.manual_seed(0)
        getattr(diffusers, kind)(**config).eval().save_pretrained(folder / "pipe" / "transformer")
        return DiffusersFlowBackbone(model=folder / "pipe", prompts=prompt_set(folder, **conditions),
                                     resolution=resolution)
    return build


def ddpm(config: dict) -> Callable[[Path], torch.nn.Module]:
    def build(folder: Path):
        import diffusers

        from backbones.diffusion.backbone import DiffusionBackbone

        torch.manual_seed(0)
        diffusers.UNet2DModel(**config).eval().save_pretrained(folder / "unet")
        return DiffusionBackbone(model=folder / "unet", schedule=DDPM_SCHEDULE)
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
}


def milliseconds_per_call(backbone: torch.nn.Module, batch: int, repeats: int) -> float:
    """Median wall milliseconds of one backbone call on a batch (after one warm-up call)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *backbone.sample_shape, generator=g)
    t = torch.full((batch,), 0.5)
    y = None if backbone.num_classes is None else torch.arange(batch) % backbone.num_classes
    times = []
    with torch.no_grad():
        backbone(x, t, y)
        for _ in range(repeats):
            start = time.perf_counter()
            backbone(x, t, y)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sd3-tiny", "flux-tiny", "sana-tiny", "ddpm-tiny",
                                                        "ddpm-cifar10"], choices=sorted(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per model and batch (default 20)")
    args = parser.parse_args(argv)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # no advice about accelerate between the rows
    print(f"machine: {platform.machine()}, torch {torch.__version__} with {torch.get_num_threads()} thread(s), CPU; "
          f"median of {args.repeats} calls after one warm-up")
    print(f"{'model':<14} {'parameters':>12} {'sample shape':>14}"
          + "".join(f"{f'ms/NFE, batch {b}':>20}" for b in args.batch_sizes))
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            backbone = MODELS[name](Path(folder))
            parameters = sum(p.numel() for p in backbone.parameters())
            cells = [milliseconds_per_call(backbone, b, args.repeats) for b in args.batch_sizes]
        shape = "x".join(map(str, backbone.sample_shape))
        print(f"{name:<14} {parameters:>12,} {shape:>14}" + "".join(f"{ms:>20.2f}" for ms in cells), flush=True)


if __name__ == "__main__":
    main()
