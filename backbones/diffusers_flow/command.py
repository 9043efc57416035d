"""``python -m solverbench encode-prompts PIPELINE_FOLDER PROMPTS.txt --out SET.safetensors``: a prompt set for the
``diffusers`` backbone, made by the pipeline's own text encoders (``encoding``).

This module imports no torch: ``solverbench --help`` reads it; the encoding is imported when the command runs.
"""
from __future__ import annotations

import argparse

from solverbench.cli import command


@command("encode-prompts", "a prompt set for the diffusers backbone, encoded by a pipeline's own text encoders")
def encode_prompts_command(parser: argparse.ArgumentParser):
    parser.description = (
        "Encode the prompts of a text file (one a line; blank lines are skipped) with the text encoders of a local "
        "diffusers pipeline folder (StableDiffusion3Pipeline, FluxPipeline, SanaPipeline), as its encode_prompt does, "
        "and write them with the negative prompt's as a prompt set: the conditions of the diffusers backbone, a "
        "sample's label its prompt's index. The transformer and VAE are not loaded. Needs transformers "
        "(pip install \"solverbench[prompts]\").")
    parser.add_argument("pipeline", help="a local pipeline folder (model_index.json, text_encoder/, tokenizer/, ...)")
    parser.add_argument("prompts", help="a text file, one prompt a line")
    parser.add_argument("--out", required=True, help="the prompt-set file to write (.safetensors)")
    parser.add_argument("--negative-prompt", default="",
                        help="the negative prompt, the null label of classifier-free guidance (default: the empty "
                             "prompt, as the pipelines use)")
    parser.add_argument("--no-negative-prompt", action="store_true",
                        help="write no negative prompt (a Flux set for guidance-distilled sampling only; the backbone "
                             "then has no null label)")
    parser.add_argument("--device", default="cpu", help="where the text encoders run (default: cpu)")
    parser.add_argument("--dtype", default="float32",
                        help="the text encoders' dtype: float32 (default), float64, bfloat16 or float16")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per encode_prompt call (default: 16)")
    parser.add_argument("--max-sequence-length", type=int, default=None,
                        help="encode_prompt's max_sequence_length (T5's or Gemma's tokens; default: the pipeline's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from backbones.diffusers_flow.encoding import encode_prompts

        print(encode_prompts(args.pipeline, args.prompts, args.out,
                             negative_prompt=None if args.no_negative_prompt else args.negative_prompt,
                             device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                             max_sequence_length=args.max_sequence_length, progress=not args.no_progress))
        print(f"use it with: backbones: [{{name: diffusers, params: {{model: {args.pipeline}, prompts: {args.out}}}}}]")
        return 0

    return run
